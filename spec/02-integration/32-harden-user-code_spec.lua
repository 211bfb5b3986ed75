-- User code cannot end or wreck the process: os.exit, debug.sethook, debug.debug, jit.on and
-- collectgarbage("stop") raise a clear error wherever they are called from (a hook, route,
-- accept, a connector, the config itself); the error closes that connection only, and the
-- single process serves the next client.
local h = require "spec.helpers"

local function config(text)
  return h.write(h.tmpfile("config.lua"), text)
end

describe("forbidden calls in user code", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
local function misbehave(what)
  if what == "exit" then os.exit(3) end
  if what == "sethook" then debug.sethook() end
  if what == "gc" then collectgarbage("stop") end
  if what == "jit" then jit.on() end
  if what == "debug" then debug.debug() end
end
proxy { name = "hook", from = { type = "tcp", host = "127.0.0.1", port = 0,
                                hook = function(data) misbehave(data:match("^(%%w+)")) end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "route", from = { type = "connect", host = "127.0.0.1", port = 0,
                                 route = function(host, port) misbehave(host:match("^(%%w+)")) end } }
proxy { name = "accept", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d },
        accept = function(conn) os.exit(4) end }
proxy { name = "echo", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port, echo.port), { "-w", "1" })
  end)
  teardown(h.stop_all)

  -- The process still serves: an echo through it comes back whole.
  local function still_serving()
    local r = h.client("127.0.0.1", np.ports.echo, { "--bytes", "4K", "--timeout", "5" })
    assert.are.equal(0, r.rc, r.err)
    assert.is_true(h.alive(np.pid))
  end

  -- text to port, the connection held open until netproxy closes it; what came back
  local function send(port, text)
    local out, how = h.talk(port, text, { keep_open = true })
    assert.truthy(how == "eof" or how == "reset", "the connection was not closed: " .. how)
    return out
  end

  for _, case in ipairs({
    { "exit", "os%.exit is not allowed in netproxy scripts: it would end the process" },
    { "sethook", "debug%.sethook is not allowed in netproxy scripts" },
    { "gc", "collectgarbage%(\"stop\"%) is not allowed in netproxy scripts" },
    { "jit", "jit%.on is not allowed in netproxy scripts" },
    { "debug", "debug%.debug is not allowed in netproxy scripts" },
  }) do
    it("a hook calling " .. case[1] .. " closes its connection with the error; the server carries on", function()
      send(np.ports.hook, case[1] .. "\n")
      h.wait_log(np, "hook: [^\n]*end=lua error: [^\n]*config%.lua:%d+: " .. case[2])
      still_serving()
    end)
  end

  it("route calling os.exit refuses that client only (502: an error in route)", function()
    local out = send(np.ports.route, "CONNECT exit.example:443 HTTP/1.1\r\n\r\n")
    assert.matches("^HTTP/1%.1 502 ", out)
    h.wait_log(np, "route: [^\n]*end=lua error: [^\n]*config%.lua:%d+: os%.exit is not allowed")
    still_serving()
  end)

  it("accept calling os.exit refuses that client only", function()
    send(np.ports.accept, "hello\n")
    h.wait_log(np, "accept: [^\n]*end=lua error: [^\n]*config%.lua:%d+: os%.exit is not allowed")
    still_serving()
  end)
end)

describe("forbidden calls while loading", function()
  it("os.exit in the config is a --check error with file:line", function()
    local path = config('proxy { from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 } }\n' ..
                        'os.exit(0)\n')
    local out, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are.equal(1, rc, out)
    assert.truthy(err:find(path .. ":2: os.exit is not allowed in netproxy scripts", 1, true), err)
  end)

  it("os.exit in a connector script is a --check error", function()
    local dir = h.tmp() .. "/exit-connectors"
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/quitter.lua", 'os.exit(0)\nreturn { positions = { to = true }, params = {} }\n')
    local path = config('proxy { from = { type = "tcp", port = 1 }, to = { type = "quitter" } }\n')
    local out, err, rc = h.run({ h.netproxy, "--check", "-I", dir, path })
    assert.are.equal(1, rc, out)
    assert.truthy(err:find("quitter.lua:1: os.exit is not allowed", 1, true), err)
  end)
end)
