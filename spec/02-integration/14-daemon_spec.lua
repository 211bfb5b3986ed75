-- Daemon life: -D, --pid-file, --log-file and SIGUSR1, --user/--group, --chroot.
local h = require "spec.helpers"

local function is_root() return os.execute("test $(id -u) -eq 0") == 0 end

local function uid_of(pid)
  local status = h.read("/proc/" .. pid .. "/status") or ""
  return tonumber(status:match("Uid:%s+(%d+)"))
end

local function hi(port)
  return (h.talk(port, "hi\n"))
end

-- True once no process of pid's family (the master, its workers) writes to `old` any more.
local function none_writes_to(pid, old)
  local pids = { pid }
  for line in h.lines("pgrep -P " .. pid) do pids[#pids + 1] = line end
  for _, p in ipairs(pids) do
    for line in h.lines("ls -l /proc/" .. p .. "/fd 2>/dev/null") do
      if line:sub(-#old - 4) == " -> " .. old then return false end
    end
  end
  return true
end

describe("daemon life", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  it("goes to the background with a pid file and a log file; SIGUSR1 reopens it; SIGTERM cleans up", function()
    local dir = h.tmp() .. "/daemon"
    os.execute("mkdir -p " .. dir)
    local config = h.write(dir .. "/d.lua", h.tcp_proxy("bg", echo.port))
    local out, err, rc = h.run({ h.netproxy, "-D", "-w", "2", "--pid-file", dir .. "/np.pid", "--log-file", dir .. "/np.log", config })
    local pid = tonumber(h.wait_until(function() return h.read(dir .. "/np.pid") end, 5, "the pid file"):match("%d+"))
    local daemon = h.adopt(pid)                  -- stopped by test_end even if a check fails
    assert.are.equal(0, rc, err)
    assert.are.equal("", out .. err)             -- nothing on the terminal once in the background
    local port = tonumber(h.wait_until(function()
      return (h.read(dir .. "/np.log") or ""):match("bg: listening on 127%.0%.0%.1:(%d+)")
    end, 5, "the daemon's port in its log"))
    assert.are.equal("hi\n", hi(port))
    h.wait_until(function() return (h.read(dir .. "/np.log") or ""):find("bg: [^\n]* end=eof") end, 5, "a log line")
    -- logrotate moves the file, then SIGUSR1: the lines go to a new file
    os.rename(dir .. "/np.log", dir .. "/np.log.1")
    h.wait_signals(pid)
    os.execute("kill -USR1 " .. pid)
    h.wait_until(function() return none_writes_to(pid, dir .. "/np.log.1") end, 5, "every process to reopen the log")
    assert.are.equal("hi\n", hi(port))
    h.wait_until(function() return (h.read(dir .. "/np.log") or ""):find("bg: [^\n]* end=eof") end, 5, "a line in the new file")
    os.execute("kill -TERM " .. pid)
    h.wait_until(function() return not h.alive(pid) end, 10, "the daemon to stop")
    assert.is_nil(h.read(dir .. "/np.pid"))
    h.stop(daemon)
  end)

  it("refuses to start over the pid file of a running process, saying so on the terminal", function()
    local path = h.write(h.tmpfile("busy.pid"), tostring(echo.pid) .. "\n")
    local _, err, rc = h.run({ h.netproxy, "-D", "--pid-file", path, h.write(h.tmpfile("c.lua"), h.tcp_proxy("x", echo.port)) })
    assert.are.equal(1, rc)
    assert.truthy(err:find("pid file " .. path .. ": process " .. echo.pid .. " is running", 1, true), err)
  end)

  it("runs the workers as --user/--group once bound, the master stays to reload", function()
    if not is_root() then pending("needs root") return end
    local np = h.netproxy_start(h.tcp_proxy("dropped", echo.port), { "-w", "2", "--user", "nobody", "--group", "nogroup" })
    local nobody = tonumber(h.lines("id -u nobody")())
    h.wait_until(function()
      local kids = {}
      for line in h.lines("pgrep -P " .. np.pid) do kids[#kids + 1] = tonumber(line) end
      return #kids == 2 and uid_of(kids[1]) == nobody and uid_of(kids[2]) == nobody
    end, 5, "2 workers running as nobody")
    assert.are.equal(0, uid_of(np.pid))
    assert.are.equal("hi\n", hi(np.ports.dropped))
    h.stop(np)
  end)

  it("runs on_bound once bound, before the privilege drop; on_start after it", function()
    if not is_root() then pending("needs root") return end
    local dir = h.tmp() .. "/root-only"
    os.execute("mkdir -p " .. dir .. " && chmod 700 " .. dir)
    for _, workers in ipairs({ "1", "2" }) do
      local config = ([[
local function try(what)
  local f, err = io.open(%q .. "/" .. what, "w")
  if f then f:write(what) f:close() end
  require("netproxy.core").log("notice", ("%%s wrote: %%s"):format(what, f and "yes" or tostring(err)))
end
server { on_bound = function() try("bound") end, on_start = function() try("started") end }
]]):format(dir) .. h.tcp_proxy("p", echo.port)
      local np = h.netproxy_start(config, { "-w", workers, "--user", "nobody", "--group", "nogroup" })
      h.wait_log(np, "bound wrote: yes")
      h.wait_log(np, "started wrote: [^\n]*Permission denied")
      assert.are.equal("bound", h.read(dir .. "/bound"))
      assert.is_nil(h.read(dir .. "/started"))
      assert.are.equal("hi\n", hi(np.ports.p))
      h.stop(np)
      os.remove(dir .. "/bound")
    end
  end)

  it("serves from inside --chroot", function()
    if not is_root() then pending("needs root") return end
    local jail = h.tmp() .. "/jail"
    os.execute("mkdir -p " .. jail)
    local np = h.netproxy_start(h.tcp_proxy("jailed", echo.port), { "--chroot", jail, "--user", "nobody" })
    assert.are.equal("hi\n", hi(np.ports.jailed))
    local root = h.lines("readlink /proc/" .. np.pid .. "/root")()
    assert.are.equal(jail, root)
    h.stop(np)
  end)
end)
