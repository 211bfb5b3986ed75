-- The cosocket binding seen through a connector written in Lua (spec/fixtures/connectors):
-- read, peek, write, sleep and timeouts, bytes read ahead reaching the server, and a Lua
-- error costing its own connection only.
local h = require "spec.helpers"

local CONFIG = [[
server { connector_path = "%s" }
proxy { name = "lt", from = { type = "linetarget", port = 0, timeout = 1 }, to = { type = "dummy" } }
]]

-- Sends `text` through netproxy with socat and returns what came back.
local function talk(port, text, wait)
  local input = h.write(h.tmpfile("in"), text)
  local out = h.run({ "sh", "-c", ("(cat %s; sleep %s) | socat -t 2 - TCP:127.0.0.1:%d")
                         :format(h.quote(input), wait or "0.5", port) })
  return out
end

describe("a connector written on netproxy.core", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(CONFIG:format(h.root .. "/spec/fixtures/connectors"), { "-v" })
  end)
  teardown(h.stop_all)

  it("reads the client's first line, answers it, and passes the bytes after it on", function()
    local out = talk(np.ports.lt, "TO " .. echo.port .. "\nhello after the line\n")
    assert.are.equal("OK\nhello after the line\n", out)
    h.wait_log(np, "lt: client asked for port " .. echo.port)
  end)

  it("can sleep without holding up other connections", function()
    local slow = h.spawn({ "sh", "-c", ("(printf 'SLEEP\\n'; sleep 0.2; printf 'TO %d\\nslow\\n'; sleep 1) | socat -t 2 - TCP:127.0.0.1:%d")
                                         :format(echo.port, np.ports.lt) })
    local out = talk(np.ports.lt, "TO " .. echo.port .. "\nfast\n", "0.1")
    assert.are.equal("OK\nfast\n", out)
    assert.are.equal(0, h.exit_status(slow, 5))
    assert.are.equal("OK\nslow\n", h.read(slow.out))
  end)

  it("times out a client that says nothing, and says so", function()
    local out = talk(np.ports.lt, "", "2")
    assert.are.equal("", out)
    h.wait_log(np, "lt: %S+ %-> %- in=0 out=0 time=1%.%d+s end=refused: no target line: timeout")
  end)

  it("refuses a client that says too much without a newline", function()
    talk(np.ports.lt, ("x"):rep(200))
    h.wait_log(np, "end=refused: no target line: too long")
  end)

  it("closes only the connection whose connector raised an error, logging script and line", function()
    local victims = h.spawn({ "sh", "-c", ("(printf 'SLEEP\\n'; sleep 0.2; printf 'TO %d\\nstill here\\n'; sleep 1) | socat -t 2 - TCP:127.0.0.1:%d")
                                            :format(echo.port, np.ports.lt) })
    talk(np.ports.lt, "BOOM\n", "0.2")
    h.wait_log(np, "err %[%d+%] #%d+ lt: lua error: [^\n]*linetarget%.lua:%d+: boom requested")
    h.wait_log(np, "end=lua error: [^\n]*linetarget%.lua:%d+: boom requested")
    assert.are.equal(0, h.exit_status(victims, 5))
    assert.are.equal("OK\nstill here\n", h.read(victims.out))
    assert.are.equal("OK\n" .. "again\n", talk(np.ports.lt, "TO " .. echo.port .. "\nagain\n"))
  end)
end)
