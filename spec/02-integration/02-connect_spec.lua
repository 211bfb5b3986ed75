-- Reaching the server: refused and silent backends, host names, DNS that never answers.
local h = require "spec.helpers"

describe("connecting to the server", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  it("closes the client promptly when the backend refuses, and keeps serving", function()
    local dead_port = h.closed_port()
    local np = h.netproxy_start(h.tcp_proxy("dead", dead_port) .. h.tcp_proxy("live", echo.port))
    local r = h.client("127.0.0.1", np.ports.dead, { "--bytes", "1K", "--timeout", "5" })
    assert.are.equal(1, r.failed)
    -- (a client left open would wait for its own 5 s timeout: the bound leaves room for load)
    assert.is_true(r.seconds < 4, "the client waited " .. r.seconds .. "s")
    h.wait_log(np, "dead: %S+ %-> 127%.0%.0%.1:" .. dead_port .. " in=0 out=0 time=[%d%.]+s end=connect failed: refused")
    assert.are.equal(0, h.client("127.0.0.1", np.ports.live, { "--bytes", "1M" }).rc)
    h.stop(np)
  end)

  it("gives up on a backend that never answers after connect_timeout, costing only that client", function()
    local hole = h.peer_server("blackhole")
    local np = h.netproxy_start(h.tcp_proxy("hole", hole.port, "connect_timeout = 2,") ..
                                h.tcp_proxy("live", echo.port), { "-v" })
    local waiting = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.hole, "--bytes", "1K", "--timeout", "10" })
    h.wait_log(np, "#1 hole: accepted")
    -- while that client waits for its backend, others are served at once
    local r = h.client("127.0.0.1", np.ports.live, { "--conns", "50", "--parallel", "10", "--bytes", "64K" })
    assert.are.equal(0, r.rc, r.err)
    assert.falsy(np.log():find("end=connect failed: timeout", 1, true), "the silent backend was given up too early")
    local took = h.wait_log(np, "hole: %S+ %-> 127%.0%.0%.1:%d+ in=0 out=0 time=([%d%.]+)s end=connect failed: timeout")
    assert.is_true(h.about(took, 2), "gave up after " .. took .. "s")
    assert.are.equal(1, h.exit_status(waiting, 5))
    h.stop(np)
    h.stop(hole)
  end)

  it("resolves host names (localhost, trying each address in turn)", function()
    local np = h.netproxy_start([[
proxy { name = "byname", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "localhost", port = ]] .. echo.port .. [[ } }
]])
    local r = h.client("127.0.0.1", np.ports.byname, { "--bytes", "1M", "--half-close" })
    assert.are.equal(0, r.rc, r.err)
    h.wait_log(np, "byname: %S+ %-> localhost:%d+ in=1048576 out=1048576")
    h.stop(np)
  end)

  it("never blocks the loop on a DNS server that does not answer", function()
    -- a UDP "nameserver" that swallows every query
    local silent_dns = h.silent_dns()
    local np = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "slowdns", connect_timeout = 2,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "backend.netproxy.test", port = 80 } }
]]):format(silent_dns.port) .. h.tcp_proxy("live", echo.port), { "-v" })
    local waiting = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.slowdns, "--bytes", "1K", "--timeout", "10" })
    h.wait_log(np, "#1 slowdns: accepted")
    local r = h.client("127.0.0.1", np.ports.live, { "--conns", "20", "--bytes", "16K" })
    assert.are.equal(0, r.rc, r.err)
    -- served while the query still hangs: a loop held by DNS would have ended that one first
    assert.falsy(np.log():find("slowdns: [^\n]* end="), "served in " .. r.seconds .. "s, after the DNS wait ended")
    local took = h.wait_log(np, "slowdns: %S+ %-> backend%.netproxy%.test:80 in=0 out=0 time=([%d%.]+)s end=connect failed: timeout")
    assert.is_true(h.about(took, 2), "gave up after " .. took .. "s")
    assert.are.equal(1, h.exit_status(waiting, 5))
  end)
end)
