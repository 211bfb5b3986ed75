-- server{} options, the command line over them, and the log lines.
local h = require "spec.helpers"

describe("options", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)

  it("lets the command line win over server{}", function()
    local config = 'server { log_level = "err", max_connections = 1 }\n' .. h.tcp_proxy("echo", echo.port)
    local np = h.netproxy_start(config, { "--log-level", "info", "-m", "2" })
    for _ = 1, 2 do
      assert.are.equal(0, h.client("127.0.0.1", np.ports.echo, { "--bytes", "1K" }).rc)
    end
    assert.are.equal(0, h.exit_status(np, 10))
    local _, accepted = np.log():gsub("echo: accepted", "")
    assert.are.equal(2, accepted)
  end)

  it("logs one line per finished connection, with its id, addresses, bytes, time and end", function()
    local np = h.netproxy_start(h.tcp_proxy("echo", echo.port))
    assert.are.equal(0, h.client("127.0.0.1", np.ports.echo, { "--bytes", "1000", "--half-close" }).rc)
    local line = h.wait_log(np, "[^\n]*#1 echo: [^\n]*")
    assert.truthy(line:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ notice %[%d+%] #1 echo: " ..
                             "127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:" .. echo.port ..
                             " in=1000 out=1000 time=%d+%.%d%d%ds end=eof$"), line)
    h.stop(np)
  end)

  it("is quiet with -q: warnings and errors only", function()
    local np = h.spawn({ h.netproxy, "-q", "-m", "1", h.write(h.tmpfile("c.lua"), h.tcp_proxy("echo", echo.port)) })
    h.sleep(0.3)
    h.stop(np)
    assert.are.equal("", h.read(np.err))
  end)
end)

describe("timeouts", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)

  it("closes a relayed connection idle for idle_timeout seconds", function()
    local np = h.netproxy_start(h.tcp_proxy("idle", echo.port, "idle_timeout = 1,"))
    local quiet = h.spawn({ "sh", "-c", "sleep 4 | socat -t 5 - TCP:127.0.0.1:" .. np.ports.idle })
    h.wait_log(np, "idle: %S+ %-> %S+ in=0 out=0 time=1%.%d+s end=idle timeout", 5)
    assert.are.equal(0, h.exit_status(quiet, 6))
    h.stop(np)
  end)

  it("keeps a connection that moves bytes past idle_timeout", function()
    local np = h.netproxy_start(h.tcp_proxy("busy", echo.port, "idle_timeout = 1,"))
    local out = h.run({ "sh", "-c", "(for i in 1 2 3 4; do echo tick; sleep 0.5; done) | socat -t 1 - TCP:127.0.0.1:" .. np.ports.busy })
    assert.are.equal(("tick\n"):rep(4), out)
    h.wait_log(np, "busy: [^\n]* in=20 out=20 time=[%d%.]+s end=eof")
    h.stop(np)
  end)

  it("ends a negotiation that takes longer than negotiation_timeout", function()
    local np = h.netproxy_start(([[
server { connector_path = "%s/spec/fixtures/connectors" }
proxy { name = "slow", negotiation_timeout = 1, from = { type = "linetarget", port = 0, timeout = 10 }, to = { type = "dummy" } }
]]):format(h.root))
    local quiet = h.spawn({ "sh", "-c", "sleep 3 | socat -t 4 - TCP:127.0.0.1:" .. np.ports.slow })
    h.wait_log(np, "slow: %S+ %-> %- in=0 out=0 time=1%.%d+s end=negotiation timeout", 5)
    h.exit_status(quiet, 5)
    h.stop(np)
  end)
end)
