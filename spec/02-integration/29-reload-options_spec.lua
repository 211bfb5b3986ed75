-- A reload applies the server{} options a running process can change: log_file (or back to
-- standard error), stats (/metrics moves), resolvers, pipe_size and log_level; the ones only
-- a start can apply (daemon, pid_file, user, group, chroot) are named in a warning. In a
-- single process and with workers (the master reloads; its new workers inherit).
local h = require "spec.helpers"

local function metrics(port, host)
  return h.run({ "curl", "-s", "--max-time", "5", "http://" .. (host or "127.0.0.1") .. ":" .. port .. "/metrics" })
end

-- Rewrites the config at path to text and sends SIGHUP.
local function reload(np, text)
  h.write(np.config, text)
  os.execute("kill -HUP " .. np.pid)
end

local function wait_file(path, pattern)
  return h.wait_until(function() return (h.read(path) or ""):match(pattern) end, 10, pattern .. " in " .. path)
end

describe("a reload", function()
  local echo
  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  for _, model in ipairs({ { "-w", "1" }, { "-w", "2" } }) do
    it("moves the log and /metrics, and names what only a start applies (" .. table.concat(model, " ") .. ")", function()
      local log_file, pid_file = h.tmpfile("moved.log"), h.tmpfile("later.pid")
      local function proxy(port)
        return ('proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = %d }, ' ..
                'to = { type = "tcp", host = "127.0.0.1", port = %d } }\n'):format(port, echo.port)
      end
      local np = h.netproxy_start('server { stats = "127.0.0.1:0" }\n' .. proxy(0), model)
      local port, stats1 = np.ports.p, np.stats_port   -- the proxy's port: the reloads keep it
      assert.truthy(metrics(stats1):find('proxy="p"', 1, true))

      -- /metrics moves to another address (port 0 again: the port bound is in the log)
      reload(np, ('server { stats = "[::1]:0", log_file = %q, pid_file = %q }\n'):format(log_file, pid_file) .. proxy(port))
      h.wait_log(np, "reload: logging to " .. log_file:gsub("%p", "%%%0") .. " from now on")
      wait_file(log_file, "reloaded [^\n]*%(config generation 1%)")
      assert.truthy(h.read(log_file):find("reload: logging here (was standard error)", 1, true))
      local moved = h.read(log_file)
      local stats2 = tonumber(moved:match("stats: serving /metrics on %[::1%]:(%d+)"))
      assert.truthy(stats2 and stats2 > 0, moved)
      assert.truthy(moved:find("reload: server{} pid_file changed (not set -> " .. pid_file ..
                               "): it takes effect at the next start, not on a reload", 1, true), moved)
      assert.is_nil(h.read(pid_file), "no pid file written by a reload")
      assert.truthy(metrics(stats2, "[::1]"):find('proxy="p"', 1, true), "/metrics on the new address")
      assert.are.equal("", metrics(stats1), "the old address is closed")
      -- a connection after the reload is logged in the new file (with workers: by a new worker)
      h.wait_until(function()
        h.talk(port, "hello\n", { want = "hello\n" })
        return (h.read(log_file) or ""):find("p: 127%.0%.0%.1:%d+ %-> [^\n]* in=6 out=6")
      end, 10, "a connection logged in " .. log_file)

      reload(np, proxy(port))           -- log_file and stats left out: stderr, no /metrics
      h.wait_log(np, "reloaded [^\n]*%(config generation 2%)")
      wait_file(log_file, "reload: logging to standard error from now on")
      h.wait_log(np, "reload: logging here %(was " .. log_file:gsub("%p", "%%%0") .. "%)")
      assert.are.equal("", metrics(stats2, "[::1]"), "stats left out: /metrics no longer served")
      h.stop(np)
    end)
  end

  it("asks the resolvers it names from then on", function()
    local silent_dns = h.silent_dns()
    local dns = h.dnsmasq({ "--address=/backend.netproxy.test/127.0.0.1" })
    local dns_port = dns.port
    local function config(ns, port)
      return ([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "named", connect_timeout = 1, from = { type = "tcp", host = "127.0.0.1", port = %d },
        to = { type = "tcp", host = "backend.netproxy.test", port = %d } }
]]):format(ns, port, echo.port)
    end
    local np = h.netproxy_start(config(silent_dns.port, 0))
    local port = np.ports.named   -- the port bound: the reload keeps it
    assert.are.equal("", (h.talk(port, "hi\n", { timeout = 5 })))
    h.wait_log(np, "named: [^\n]* end=connect failed: timeout")
    np.mark()
    reload(np, config(dns_port, port))
    h.wait_log(np, "reload: nameservers now 127%.0%.0%.1:" .. dns_port)
    h.wait_log(np, "reloaded [^\n]*%(config generation 1%)")
    assert.are.same({ "hi\n", "eof" }, { h.talk(port, "hi\n", { timeout = 5 }) })
    h.wait_log(np, "named: [^\n]*%-> backend%.netproxy%.test:" .. echo.port .. " in=3 out=3")
    h.stop(np)
    h.stop(dns)
  end)
end)
