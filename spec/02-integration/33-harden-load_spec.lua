-- A config that loops while loading gives up within the loading bound with a clear error
-- ("file:line: config took longer than N s to load"), JIT-compiled loops included: for
-- --check, at start, and on a reload (the master keeps the running config and keeps obeying).
local h = require "spec.helpers"
local tcp = require "spec.rawtcp"
local ffi = require "ffi"

pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite);")
pcall(ffi.cdef, "int unsetenv(const char *name);")

local GOOD = 'proxy { from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = 9 } }\n'
local SPIN = [[
local function spin()             -- line 1: compiled by the JIT unless it is off
  local n = 0
  while true do n = n + 1 end     -- line 3
end
spin()
]]

local function config(text)
  return h.write(h.tmpfile("config.lua"), text)
end

describe("a config that loops while loading", function()
  after_each(function() ffi.C.unsetenv("NETPROXY_LOAD_BUDGET") end)
  teardown(h.stop_all)

  it("fails --check after the default 5 s, naming file:line", function()
    local path = config(GOOD .. "while true do end\n")
    local t0 = tcp.now()
    local out, err, rc = h.run({ h.netproxy, "--check", path })
    local took = tcp.now() - t0
    assert.are.equal(1, rc, out)
    assert.truthy(err:find(path .. ":2: config took longer than 5 s to load", 1, true), err)
    assert.is_true(took >= 5 and took < 9, ("took %.1f s"):format(took))
  end)

  it("catches a JIT-compiled loop in a helper function (NETPROXY_LOAD_BUDGET=1)", function()
    ffi.C.setenv("NETPROXY_LOAD_BUDGET", "1", 1)
    local path = config(SPIN)
    local t0 = tcp.now()
    local out, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are.equal(1, rc, out)
    assert.truthy(err:find(path .. ":3: config took longer than 1 s to load", 1, true), err)
    assert.is_true(tcp.now() - t0 < 5)
  end)

  it("does not start: exit 1 with the error, nothing bound", function()
    ffi.C.setenv("NETPROXY_LOAD_BUDGET", "1", 1)
    local path = config(GOOD .. SPIN)
    local out, err, rc = h.run({ h.netproxy, "-w", "1", path })
    assert.are.equal(1, rc, out)
    assert.truthy(err:find(path .. ":4: config took longer than 1 s to load", 1, true), err)
    assert.falsy(err:find("listening on", 1, true), err)
  end)

  for _, workers in ipairs({ "1", "2" }) do
    it("fails a reload (-w " .. workers .. "): the running config stays, serves and stops on SIGTERM", function()
      ffi.C.setenv("NETPROXY_LOAD_BUDGET", "1", 1)
      local echo = h.peer_server("echo")
      local np = h.netproxy_start(h.tcp_proxy("web", echo.port), { "-w", workers })
      h.write(np.config, h.tcp_proxy("web", echo.port) .. SPIN)
      os.execute("kill -HUP " .. np.pid)
      h.wait_log(np, "config took longer than 1 s to load", 10)
      h.wait_log(np, "reload failed")
      local r = h.client("127.0.0.1", np.ports.web, { "--bytes", "64K", "--timeout", "5" })
      assert.are.equal(0, r.rc, r.err)
      os.execute("kill -TERM " .. np.pid)
      assert.are.equal(0, h.exit_status(np, 15))
      h.stop(echo)
    end)
  end

  it("a bad NETPROXY_LOAD_BUDGET is an error", function()
    ffi.C.setenv("NETPROXY_LOAD_BUDGET", "forever", 1)
    local _, err, rc = h.run({ h.netproxy, "--check", config(GOOD) })
    assert.are.equal(1, rc)
    assert.truthy(err:find("NETPROXY_LOAD_BUDGET: bad value 'forever' (want seconds, 0.1..3600)", 1, true), err)
  end)
end)
