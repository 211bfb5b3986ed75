-- Lifecycle hooks (on_start, on_stop, on_close), timers (core.every, core.after) and
-- shared dicts (core.shared), with workers and reloads.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

local function count(text, pattern)
  local n = 0
  for _ in text:gmatch(pattern) do n = n + 1 end
  return n
end

-- The lines of the log after the first match of pattern.
local function after(log, pattern)
  local _, stop = log:find(pattern)
  return stop and log:sub(stop + 1) or ""
end

local function ask(port, line)
  local c = assert(tcp.connect(port))
  c:send(line or "")
  local out = c:receive(4096, 5)
  c:close()
  return out
end

local HOOKS = [[
local core = require "netproxy.core"
server { on_start = function(w) core.log("notice", ("on_start %s id=%%d pid=%%d"):format(w.id, w.pid)) end,
         on_stop = function() core.log("notice", "on_stop %s") end }
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = %d },
        to = { type = "service", serve = function(c) c:write("%s\n") end } }
]]

describe("on_start and on_stop", function()
  after_each(h.stop_all)

  it("run once in each worker, again in the new workers after SIGHUP, on_stop before each exits", function()
    local np = h.netproxy_start(HOOKS:format("v1", "v1", 0, "v1"), { "-w", "2" })
    local port = np.ports.p   -- written into the config for the reload: port 0 would bind another
    h.wait_until(function() return count(np.log(), "on_start v1 id=%d") == 2 end, 10, "two on_start v1")
    local log = np.log()
    assert.truthy(log:find("on_start v1 id=0 pid=%d+"))
    assert.truthy(log:find("on_start v1 id=1 pid=%d+"))
    assert.not_equal(log:match("on_start v1 id=0 pid=(%d+)"), log:match("on_start v1 id=1 pid=(%d+)"))
    h.write(np.config, HOOKS:format("v2", "v2", port, "v2"))
    os.execute("kill -HUP " .. np.pid)
    h.wait_until(function() return count(np.log(), "on_start v2 id=%d") == 2 end, 10, "two on_start v2")
    h.wait_until(function() return count(np.log(), "on_stop v1") == 2 end, 10, "the old workers' on_stop")
    assert.equal("v2\n", ask(port))
    h.stop(np)
    assert.equal(2, count(np.log(), "on_stop v2"))
    assert.equal(2, count(np.log(), "on_start v1"))
  end)

  it("run in a single process, and on_start again for the new config after its SIGHUP", function()
    local np = h.netproxy_start(HOOKS:format("v1", "v1", 0, "v1"))
    local port = np.ports.p   -- written into the config for the reload: port 0 would bind another
    h.wait_log(np, "on_start v1 id=0")
    h.write(np.config, HOOKS:format("v2", "v2", port, "v2"))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "on_start v2 id=0 pid=" .. np.log():match("on_start v1 id=0 pid=(%d+)"))
    assert.equal("v2\n", ask(port))
    h.stop(np)
    assert.equal(1, count(np.log(), "on_start v1"))
    assert.equal(1, count(np.log(), "on_stop v2"))
  end)

  it("log an error and harm nothing", function()
    local np = h.netproxy_start([[
server { on_start = function() error("start failed") end, on_stop = function() error("stop failed") end }
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        on_close = function() error("close failed") end,
        to = { type = "service", serve = function(c) c:write("served\n") end } }
]])
    h.wait_log(np, "on_start: [^\n]*config%.lua:1: start failed")
    assert.equal("served\n", ask(np.ports.p))
    h.wait_log(np, "on_close: [^\n]*config%.lua:3: close failed")
    assert.equal("served\n", ask(np.ports.p))
    h.stop(np)
    assert.matches("on_stop: [^\n]*config%.lua:1: stop failed", np.log())
  end)
end)

describe("on_log", function()
  after_each(h.stop_all)

  -- a config whose on_log appends each entry to a file (and fails on a line saying "boom")
  local function logging_config(path, extra)
    return ([[
local core = require "netproxy.core"
server { on_log = function(e)
  if e.message:find("boom") then error("cannot ship this line") end
  local f = assert(io.open(%q, "a"))
  f:write(("%%s|%%s|%%s\n"):format(e.level, tostring(e.conn), e.message))
  f:close()
  core.log("info", "shipped a line")   -- written as usual, never handed back to on_log
end }
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(c)
          local line = c:read("*l")
          core.log("notice", "said " .. tostring(line))
          c:write("ok\n")
        end } }
%s]]):format(path, extra or "")
  end

  for _, workers in ipairs({ "1", "2" }) do
    it("takes the serving processes' lines instead of the log, in order (-w " .. workers .. ")", function()
      local path = h.tmpfile("shipped.log")
      local np = h.netproxy_start(logging_config(path), { "-v", "-w", workers })
      for i = 1, 3 do assert.equal("ok\n", ask(np.ports.p, "line " .. i .. "\n")) end
      local shipped = h.wait_until(function()
        local text = h.read(path) or ""
        return count(text, "|p: 127%.0%.0%.1:%d+ %-> service [^\n]*end=") == 3 and text
      end, 10, "3 end lines shipped")
      -- each connection: accepted, said, the end, in that order, with its id
      assert.equal(3, count(shipped, "notice|%d+|said line %d\n"))
      for id in shipped:gmatch("notice|(%d+)|said line %d\n") do
        local accepted = shipped:find("info|" .. id .. "|p: accepted 127.0.0.1:", 1, true)
        local said = shipped:find("notice|" .. id .. "|said line", 1, true)
        local ended = shipped:find("notice|" .. id .. "|p: 127.0.0.1:", 1, true)
        assert.is_true(accepted ~= nil and accepted < said and said < ended, shipped)
      end
      assert.is_nil(np.log():find("said line", 1, true), "taken lines are not written")
      assert.truthy(np.log():find("shipped a line", 1, true), "on_log's own lines are written")
      h.stop(np)
    end)
  end

  it("is turned off by its first error, which writes that line and every later one as usual", function()
    local path = h.tmpfile("shipped.log")
    local np = h.netproxy_start(logging_config(path), { "-w", "1" })
    assert.equal("ok\n", ask(np.ports.p, "fine\n"))
    h.wait_until(function() return (h.read(path) or ""):find("said fine", 1, true) end, 10, "the first line shipped")
    assert.equal("ok\n", ask(np.ports.p, "boom\n"))
    h.wait_log(np, "on_log: [^\n]*cannot ship this line: the log is written as usual until a reload")
    h.wait_log(np, "#%d+ said boom")
    assert.equal("ok\n", ask(np.ports.p, "after\n"))
    h.wait_log(np, "#%d+ said after")
    assert.is_nil((h.read(path) or ""):find("said after", 1, true))
    h.stop(np)
  end)
end)

describe("on_close", function()
  after_each(h.stop_all)

  it("gets bytes_in, bytes_out, duration, reason and server for a 1000-byte exchange", function()
    local echo = h.peer_server("echo")
    local np = h.netproxy_start(([[
proxy { name = "e", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d },
        on_close = function(conn, info)
          conn:log("notice", "closed %%s in=%%d out=%%d reason=%%s server=%%s duration=%%s stash=%%s",
                   conn.client, info.bytes_in, info.bytes_out, info.reason, info.server,
                   type(info.duration) == "number" and info.duration >= 0.15 and "ok" or tostring(info.duration),
                   tostring(conn.stash.mark))
        end,
        accept = function(conn) conn.stash.mark = "kept" return true end }
]]):format(echo.port))
    local c = assert(tcp.connect(np.ports.e))
    local data = ("0123456789"):rep(100)
    assert.equal(data, c:exchange(data, data, 5))
    h.sleep(0.2)
    c:close()
    local line = h.wait_log(np, "closed [^\n]*")
    assert.matches("^closed 127%.0%.0%.1:%d+ in=1000 out=1000 reason=eof server=127%.0%.0%.1:" .. echo.port ..
                   " duration=ok stash=kept$", line)
  end)
end)

describe("timers", function()
  after_each(h.stop_all)

  it("core.every keeps ticking after an error (logged with script:line); core.after runs once; :cancel() stops both", function()
    local np = h.netproxy_start([[
local core = require "netproxy.core"
server { on_start = function()
  local n, t = 0
  t = core.every(0.05, function()
    n = n + 1
    core.sleep(0.01)                       -- a timer runs in a coroutine: it may wait
    if n == 2 then error("tick two fails") end
    core.log("notice", "tick " .. n)
    if n == 5 then t:cancel() core.log("notice", "cancelled") end
  end)
  core.after(0.01, function() core.log("notice", "after ran") end)
  core.after(0.01, function() core.log("notice", "never") end):cancel()
end }
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function() end } }
]])
    h.wait_log(np, "cancelled")
    h.sleep(0.3)                                -- room for a tick that should not come
    local log = np.log()
    assert.matches("timer: lua error: [^\n]*config%.lua:7: tick two fails", log)
    for _, n in ipairs({ 1, 3, 4, 5 }) do assert.equal(1, count(log, "tick " .. n .. "\n")) end
    assert.equal(0, count(log, "tick 6"))
    assert.equal(1, count(log, "after ran"))
    assert.equal(0, count(log, "never"))
  end)

  it("are refused while the config loads (the master and --check load it too)", function()
    local path = h.write(h.tmpfile("config.lua"), [[
local core = require "netproxy.core"
core.every(1, function() end)
proxy { name = "p", from = { type = "tcp", port = 0 }, to = { type = "service", serve = function() end } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.equal(1, rc)
    assert.matches("config%.lua:2: every: not while the config loads: start timers in server{ on_start }", err)
  end)

  it("of a config generation stop when a reload replaces it; the new config starts its own", function()
    local config = [[
local core = require "netproxy.core"
server { on_start = function() core.every(0.05, function() core.log("notice", "tick %s") end) end }
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = %d },
        to = { type = "service", serve = function() end } }
]]
    local np = h.netproxy_start(config:format("gen1", 0))
    h.wait_log(np, "tick gen1")
    h.write(np.config, config:format("gen2", np.ports.p))   -- the port bound: the reload keeps it
    os.execute("kill -HUP " .. np.pid)
    h.wait_until(function() return count(after(np.log(), "reloaded"), "tick gen2") >= 3 end, 10, "gen2 ticks")
    assert.equal(0, count(after(np.log(), "reloaded"), "tick gen1"))
  end)
end)

describe("shared dicts", function()
  after_each(h.stop_all)

  it("count exactly from 2 workers' timers with incr (atomic across workers)", function()
    local np = h.netproxy_start([[
local core = require "netproxy.core"
server { shared = { counts = "64k" }, on_start = function(w)
  local d, n, t = core.shared("counts"), 0
  t = core.every(0.001, function()
    for _ = 1, 100 do d:incr("total", 1, 0) end
    n = n + 1
    if n == 50 then t:cancel() d:incr("done", 1, 0) core.log("notice", "worker " .. w.id .. " done") end
  end)
end }
proxy { name = "total", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(c)
          local d = core.shared("counts")
          c:write(("done=%s total=%s\n"):format(tostring(d:get("done")), tostring(d:get("total"))))
        end } }
]], { "-w", "2" })
    h.wait_log(np, "worker 0 done")
    h.wait_log(np, "worker 1 done")
    assert.equal("done=2 total=10000\n", ask(np.ports.total))
  end)

  it("keep strings, numbers and booleans with ttl, evict the least recently used when full, and survive a reload", function()
    local config = [[
local core = require "netproxy.core"
server { shared = { d = "64k" } }
proxy { name = "q", from = { type = "tcp", host = "127.0.0.1", port = %d },
        to = { type = "service", serve = function(c)
          local d = core.shared("d")
          local cmd = c:read("*l")
          if cmd == "fill" then
            d:set("s", "text") d:set("n", 42) d:set("b", false) d:set("t", "short", 0.2)
            d:set("old", 1) d:set("kept", 1)
            local cap = d:capacity()
            for i = 1, cap - 6 do d:set("k" .. i, i) end   -- full now
            d:get("kept")                                  -- used recently
            d:set("one more", 1)                           -- evicts the least recently used: s
            c:write(("s=%%s old=%%s kept=%%s big=%%s\n"):format(tostring(d:get("s")), tostring(d:get("old")),
              tostring(d:get("kept")), tostring(d:set("big", ("x"):rep(1000)))))
          else
            c:write(("%s n=%%s b=%%s t=%%s kept=%%s incr=%%s\n"):format(tostring(d:get("n")), tostring(d:get("b")),
              tostring(d:get("t")), tostring(d:get("kept")), tostring(select(2, d:incr("n2", 1)))))
          end
        end } }
]]
    local np = h.netproxy_start(config:format(0, "v1"))
    local port = np.ports.q   -- written into the config for the reload: port 0 would bind another
    assert.equal("s=nil old=1 kept=1 big=nil\n", ask(port, "fill\n"))
    h.write(np.config, config:format(port, "v2"))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reloaded")
    h.sleep(0.25)                               -- past t's ttl
    assert.equal("v2 n=42 b=false t=nil kept=1 incr=not found\n", ask(port, "get\n"))
  end)

  it("examples/ratelimit.lua refuses an address past 10 connections a second across 2 workers", function()
    local echo = h.peer_server("echo")
    -- reuseport: a socket per worker, the kernel spreads clients by address (a fixed port,
    -- tried until one is free: each copy binds the same one)
    local config = h.read(h.root .. "/examples/ratelimit.lua"):gsub("port = 9876", "port = " .. echo.port)
        :gsub("workers = 2,", "workers = 2, reuseport = true,")
    local np = h.on_free_port("netproxy with reuseport", function(port)
      return h.netproxy_start((config:gsub("port = 6790", "port = " .. port)), { "-w", "2" })
    end)
    local port = np.port
    -- 20 connections within one second (started early in a second)
    local out = h.run({ "python3", "-c", ([[
import socket, time
while time.time() %% 1 > 0.3: time.sleep(0.01)
ok = 0
for i in range(20):
    s = socket.create_connection(("127.0.0.1", %d))
    s.sendall(b"x")
    s.settimeout(2)
    try:
        ok += s.recv(1) == b"x"
    except OSError:
        pass
    s.close()
print(ok)
]]):format(port) })
    assert.equal("10\n", out)
    h.wait_until(function() return count(np.log(), "end=refused: rate limit") == 10 end, 10, "10 refusals")
    local pids = {}
    for pid in np.log():gmatch("%[(%d+)%] #%d+ limited: [^\n]*end=") do pids[pid] = true end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.equal(2, n)                          -- both workers took some
  end)
end)
