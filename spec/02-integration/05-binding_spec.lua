-- The cosocket binding seen through a connector written in Lua (spec/fixtures/connectors):
-- read, peek, write, sleep and timeouts, bytes read ahead reaching the server, and a Lua
-- error costing its own connection only.
local h = require "spec.helpers"

local CONFIG = [[
server { connector_path = "%s" }
proxy { name = "lt", from = { type = "linetarget", port = 0, timeout = 1 }, to = { type = "dummy" } }
]]

describe("a connector written on netproxy.core", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(CONFIG:format(h.root .. "/spec/fixtures/connectors"), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("reads the client's first line, answers it, and passes the bytes after it on", function()
    local out = h.talk(np.ports.lt, "TO " .. echo.port .. "\nhello after the line\n")
    assert.are.equal("OK\nhello after the line\n", out)
    h.wait_log(np, "lt: client asked for port " .. echo.port)
  end)

  it("answers \"closed\" from every call on a socket closed twice", function()
    h.talk(np.ports.lt, "CLOSED " .. echo.port .. "\n")
    h.wait_log(np, "lt: after close: closed,closed,closed,closed,closed; sock%(127%.0%.0%.1:" .. echo.port .. ", closed%)")
    h.wait_log(np, "end=refused: closed probe")
  end)

  it("can sleep without holding up other connections", function()
    local slow = assert(h.connect(np.ports.lt))
    slow:send("SLEEP 2\nTO " .. echo.port .. "\nslow\n")
    slow:shutdown()
    local id = h.wait_log(np, "#(%d+) lt: sleeping")
    -- served while the other connection's coroutine sleeps: before it wakes up
    assert.are.equal("OK\nfast\n", (h.talk(np.ports.lt, "TO " .. echo.port .. "\nfast\n")))
    assert.falsy(np.log():find("#" .. id .. " lt: slept", 1, true), "served only once the sleeper woke")
    assert.are.same({ "OK\nslow\n", "eof" }, { slow:read(nil, 5) })
  end)

  it("times out a client that says nothing, and says so", function()
    -- the client stays silent, its write side open, until netproxy gives up on it
    local out, how = h.talk(np.ports.lt, "", { keep_open = true })
    assert.are.same({ "", "eof" }, { out, how })
    local took = h.wait_log(np, "lt: %S+ %-> %- in=0 out=0 time=([%d%.]+)s end=refused: no target line: timeout")
    assert.is_true(h.about(took, 1), "timed out after " .. took .. "s")
  end)

  it("refuses a client that says too much without a newline", function()
    local out, how = h.talk(np.ports.lt, ("x"):rep(200), { keep_open = true })
    assert.are.equal("", out)
    assert.are_not.equal("timeout", how)    -- closed by netproxy (a reset: bytes left unread)
    h.wait_log(np, "end=refused: no target line: too long")
  end)

  it("closes only the connection whose connector raised an error, logging script and line", function()
    local victim = assert(h.connect(np.ports.lt))
    victim:send("SLEEP 2\nTO " .. echo.port .. "\nstill here\n")
    victim:shutdown()
    local id = h.wait_log(np, "#(%d+) lt: sleeping")
    h.talk(np.ports.lt, "BOOM\n")
    h.wait_log(np, "err %[%d+%] #%d+ lt: lua error: [^\n]*linetarget%.lua:%d+: boom requested")
    h.wait_log(np, "end=lua error: [^\n]*linetarget%.lua:%d+: boom requested")
    assert.falsy(np.log():find("#" .. id .. " lt: slept", 1, true), "the error came after the sleeper woke")
    assert.are.same({ "OK\nstill here\n", "eof" }, { victim:read(nil, 5) })
    assert.are.equal("OK\n" .. "again\n", (h.talk(np.ports.lt, "TO " .. echo.port .. "\nagain\n")))
  end)
end)
