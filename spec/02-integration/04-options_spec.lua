-- server{} options, the command line over them, and the log lines.
local h = require "spec.helpers"

describe("options", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

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
    local config = h.write(h.tmpfile("c.lua"), h.tcp_proxy("echo", echo.port) ..
                           h.tcp_proxy("faulty", echo.port):gsub("port = (%d+) }", "port = %1, hook = function() error('shown under -q') end }"))
    local np = h.spawn({ h.netproxy, "-q", "-w", "1", "-m", "2", config })
    -- -q hides the "listening on" lines: the ports are read from the socket table instead
    local ports = h.wait_until(function()
      local set, list = h.listening_ports(np.pid), {}
      for port in pairs(set) do list[#list + 1] = port end
      table.sort(list)
      return #list == 2 and list
    end, 10, "netproxy to listen on 2 ports")
    -- one connection through each proxy: a served one (a notice line), one whose hook fails (an error)
    for _, port in ipairs(ports) do h.talk(port, "x") end
    assert.are.equal(0, h.exit_status(np, 10))   -- -m 2: both connections are done, all is logged
    local log = h.read(np.err)
    assert.truthy(log:find(" err %[%d+%] #%d+ faulty: [^\n]*shown under %-q"), log)
    for line in log:gmatch("[^\n]+") do
      assert.truthy(line:match("^%S+ err ") or line:match("^%S+ warning "), "a line below warning: " .. line)
    end
  end)
end)

-- A client that sends "tick\n" n times, gap seconds apart, then half-closes; returns what came
-- back by the close (or 5 s), and how it ended. The sleeps pace the client: the behaviour under
-- test (a connection that moves bytes, never idle for long).
local function ticking(port, n, gap)
  local c = assert(h.connect(port))
  for _ = 1, n do
    if not c:send("tick\n") then break end   -- closed by netproxy
    h.sleep(gap)
  end
  c:shutdown()
  local out, how = c:read(nil, 5)
  c:close()
  return out, how
end

describe("timeouts", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  it("closes a relayed connection idle for idle_timeout seconds", function()
    local np = h.netproxy_start(h.tcp_proxy("idle", echo.port, "idle_timeout = 1,"))
    -- a client that stays silent, its write side open, until netproxy closes
    local out, how = h.talk(np.ports.idle, "", { keep_open = true, timeout = 5 })
    assert.are.same({ "", "eof" }, { out, how })
    local took = h.wait_log(np, "idle: %S+ %-> %S+ in=0 out=0 time=([%d%.]+)s end=idle timeout")
    assert.is_true(h.about(took, 1), "closed after " .. took .. "s")
  end)

  it("keeps a connection that moves bytes past idle_timeout", function()
    local np = h.netproxy_start(h.tcp_proxy("busy", echo.port, "idle_timeout = 1,"))
    -- a tick every 0.5 s for 2 s
    local out, how = ticking(np.ports.busy, 4, 0.5)
    assert.are.same({ ("tick\n"):rep(4), "eof" }, { out, how })
    h.wait_log(np, "busy: [^\n]* in=20 out=20 time=[%d%.]+s end=eof")
  end)

  it("closes a busy connection open for total_timeout seconds: relayed, through the session, served", function()
    local np = h.netproxy_start("server { total_timeout = 1 }\n" ..
      h.tcp_proxy("routed", echo.port, "idle_timeout = 10,") ..
      h.tcp_proxy("session", echo.port, "accept = function() return true end,") ..
      h.tcp_proxy("unbounded", echo.port, "total_timeout = 0,") ..
      [[proxy { name = "served", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(client)
          while true do
            local line = client:read("*l")
            if not line then return "eof" end
            client:write(line .. "\n")
          end
        end } }
]])
    -- a tick every 0.3 s for 3 s: never idle, cut at 1 s
    for _, name in ipairs({ "routed", "session", "served" }) do
      local out, how = ticking(np.ports[name], 10, 0.3)
      assert.is_true(#out >= 5 and #out < 50, name .. " got " .. #out .. " bytes")
      assert.are_not.equal("timeout", how)
      local took = h.wait_log(np, name .. ": %S+ %-> %S+ in=%d+ out=%d+ time=([%d%.]+)s end=total timeout: 1s")
      assert.is_true(h.about(took, 1), name .. " closed after " .. took .. "s")
    end
    local out = ticking(np.ports.unbounded, 5, 0.3)
    assert.are.equal(("tick\n"):rep(5), out, "total_timeout = 0 on the proxy: no bound")
    h.wait_log(np, "unbounded: [^\n]* in=25 out=25 time=[%d%.]+s end=eof")
  end)

  it("ends a negotiation that takes longer than negotiation_timeout", function()
    local np = h.netproxy_start(([[
server { connector_path = "%s/spec/fixtures/connectors" }
proxy { name = "slow", negotiation_timeout = 1, from = { type = "linetarget", port = 0, timeout = 10 }, to = { type = "dummy" } }
]]):format(h.root))
    local out, how = h.talk(np.ports.slow, "", { keep_open = true, timeout = 5 })
    assert.are.same({ "", "eof" }, { out, how })
    local took = h.wait_log(np, "slow: %S+ %-> %- in=0 out=0 time=([%d%.]+)s end=negotiation timeout")
    assert.is_true(h.about(took, 1), "ended after " .. took .. "s")
  end)
end)
