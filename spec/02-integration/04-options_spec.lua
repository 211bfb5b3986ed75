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
