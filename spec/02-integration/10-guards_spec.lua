-- Guards at accept: allow/deny CIDR lists (per proxy and server-wide, IPv4 and IPv6), the
-- accept(conn) hook, max_clients per proxy and in total. Clients come from other loopback
-- addresses (socat's bind=127.0.0.N) to be told apart.
local h = require "spec.helpers"

-- Says "hi" from source address src (to host, 127.0.0.1 by default) and returns what came back.
local function hi(port, src, host)
  return (h.talk(port, "hi\n", { from = src, host = host }))
end

-- Waits until n connections of proxy `name` have ended (their counters are down by then).
local function ended(np, name, n)
  h.wait_until(function()
    local _, count = np.log():gsub(name .. ": [^\n]* end=", "")
    return count >= n
  end, 10, n .. " connections of " .. name .. " to end")
end

-- Holds a connection through port open, once an echo through it proves it is relayed.
local function hold(port)
  local c = assert(h.connect(port))
  c:send("held\n")
  assert.are.same({ "held\n", "want" }, { c:read(5) })
  return c
end

describe("guards", function()
  local echo, np

  -- Refusal lines are rate-limited (one a second per proxy): each test that waits for one
  -- refuses through a proxy of its own, all with the same lists.
  local function acl(name)
    return ([[
proxy { name = %q, allow = { "127.0.0.0/29", "::1" }, deny = { "127.0.0.2/32" },
        from = { type = "tcp", host = "0.0.0.0", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(name, echo.port)
  end

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start('server { deny = { "127.0.0.3" } }\n' .. acl("acl") .. acl("inside") .. acl("outside") ..
                          acl("wide") .. ([[
proxy { name = "six", deny = { "::1/128" },
        from = { type = "tcp", host = "::1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "hooked",
        accept = function(conn)
          if conn.client:match("^127%%.0%%.0%%.1:") then return true end
          return nil, "only 127.0.0.1 may talk here"
        end,
        from = { type = "tcp", host = "0.0.0.0", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "two", max_clients = 2,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port, echo.port))
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("serves what the allow list covers", function()
    assert.are.equal("hi\n", hi(np.ports.acl, "127.0.0.1"))
    assert.are.equal("hi\n", hi(np.ports.acl, "127.0.0.6"))
  end)

  it("refuses what deny covers, even inside allow, and says which rule", function()
    assert.are.equal("", hi(np.ports.inside, "127.0.0.2"))
    h.wait_log(np, "inside: refused 127%.0%.0%.2:%d+: deny 127%.0%.0%.2/32")
  end)

  it("refuses what the allow list does not cover", function()
    assert.are.equal("", hi(np.ports.outside, "127.0.0.9"))
    h.wait_log(np, "outside: refused 127%.0%.0%.9:%d+: not in allow")
  end)

  it("applies server-wide lists to every proxy", function()
    assert.are.equal("", hi(np.ports.wide, "127.0.0.3"))
    h.wait_log(np, "wide: refused 127%.0%.0%.3:%d+: deny 127%.0%.0%.3 %(server%)")
    assert.are.equal("", hi(np.ports.hooked, "127.0.0.3"))
  end)

  it("judges IPv6 clients too", function()
    assert.are.equal("", hi(np.ports.six, nil, "::1"))
    h.wait_log(np, "six: refused %[::1%]:%d+: deny ::1/128")
    assert.are.equal("hi\n", hi(np.ports.acl, nil, "127.0.0.1"))
  end)

  it("lets an accept(conn) hook refuse, with its reason", function()
    assert.are.equal("hi\n", hi(np.ports.hooked, "127.0.0.1"))
    assert.are.equal("", hi(np.ports.hooked, "127.0.0.4"))
    h.wait_log(np, "hooked: 127%.0%.0%.4:%d+ %-> %- [^\n]* end=refused: only 127%.0%.0%.1 may talk here")
  end)

  it("holds max_clients, refusing the next one once it has waited queue_timeout", function()
    local held = { hold(np.ports.two), hold(np.ports.two) }
    assert.are.equal("", hi(np.ports.two))
    h.wait_log(np, "two: refused 127%.0%.0%.1:%d+: max_clients")
    for _, c in ipairs(held) do c:close() end
    ended(np, "two", 2)
    assert.are.equal("hi\n", hi(np.ports.two))
  end)

  it("holds a server-wide max_clients over all proxies", function()
    local np2 = h.netproxy_start(([[
server { max_clients = 1 }
proxy { name = "p1", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "p2", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port))
    local held = hold(np2.ports.p1)
    assert.are.equal("", hi(np2.ports.p2))
    h.wait_log(np2, "p2: refused 127%.0%.0%.1:%d+: max_clients %(server%)")
    held:close()
    ended(np2, "p1", 1)
    assert.are.equal("hi\n", hi(np2.ports.p2))
  end)

  it("tells on_denied (server{} then the proxy's) of every client the guards turn away", function()
    -- each call counted (one process: hooks and the service share the config's Lua state)
    local np2 = h.netproxy_start(([[
local seen = {}
local function count(key) seen[key] = (seen[key] or 0) + 1 end
server { on_denied = function(info) count("server " .. info.proxy .. " " .. info.reason) end }
proxy { name = "d", deny = { "127.0.0.2" },
        on_denied = function(info)
          count("proxy " .. info.reason)
          seen.client = info.client:gsub(":%%d+$", "")
        end,
        from = { type = "tcp", host = "0.0.0.0", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "one", max_clients = 1, on_denied = function(info) error("boom in on_denied") end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "ask", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(client)
          client:write(("%%s|%%s|%%s|%%s\n"):format(seen["server d deny 127.0.0.2"], seen["proxy deny 127.0.0.2"],
                                              seen.client, seen["server one max_clients"]))
          return "closed"
        end } }
]]):format(echo.port, echo.port))
    for _ = 1, 5 do assert.are.equal("", hi(np2.ports.d, "127.0.0.2")) end
    assert.are.equal("hi\n", hi(np2.ports.d, "127.0.0.1"), "a client the guards let in is not told of")
    local held = hold(np2.ports.one)
    assert.are.equal("", hi(np2.ports.one))
    h.wait_log(np2, "one: on_denied: [^\n]*boom in on_denied")
    held:close()
    ended(np2, "one", 1)
    assert.are.equal("hi\n", hi(np2.ports.one), "an error in on_denied changes nothing else")
    h.wait_until(function() return hi(np2.ports.ask) == "5|5|127.0.0.2|1\n" end, 5, "the counts")
    h.stop(np2)
  end)

  it("looks the client's name up for accept(conn) with reverse_lookups (Net::Server's)", function()
    -- dnsmasq knows 127.0.0.1 as client.netproxy.test, and no name for 127.0.0.2
    local dns = h.dnsmasq({ "--ptr-record=1.0.0.127.in-addr.arpa,client.netproxy.test" })
    local dns_port = dns.port
    local np2 = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "named", reverse_lookups = true, connect_timeout = 2,
        accept = function(conn)
          if conn.host == "client.netproxy.test" then return true end
          return nil, "host " .. tostring(conn.host)
        end,
        from = { type = "tcp", host = "0.0.0.0", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "plain", accept = function(conn) return conn.host == nil or nil, "looked up" end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(dns_port, echo.port, echo.port))
    assert.are.equal("hi\n", hi(np2.ports.named, "127.0.0.1"))
    assert.are.equal("", hi(np2.ports.named, "127.0.0.2"))
    h.wait_log(np2, "named: 127%.0%.0%.2:%d+ %-> %- [^\n]* end=refused: host nil")
    assert.are.equal("hi\n", hi(np2.ports.plain, "127.0.0.1"), "no lookup unless asked")
    h.stop(np2)
    h.stop(dns)
  end)

  it("bounds reverse_lookups by connect_timeout, and a negotiation deadline cancels one", function()
    local silent_dns = h.silent_dns()
    local np2 = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "slow", reverse_lookups = true, connect_timeout = 0.5,
        accept = function(conn) return nil, "host " .. tostring(conn.host) end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "cut", reverse_lookups = true, connect_timeout = 10, negotiation_timeout = 0.5,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(silent_dns.port, echo.port, echo.port))
    assert.are.equal("", hi(np2.ports.slow))
    local took = h.wait_log(np2, "slow: 127%.0%.0%.1:%d+ %-> %- in=0 out=0 time=([%d%.]+)s end=refused: host nil")
    assert.is_true(h.about(took, 0.5), "refused after " .. took .. "s")
    for _ = 1, 3 do assert.are.equal("", hi(np2.ports.cut)) end
    h.wait_until(function() local _, n = np2.log():gsub("cut: [^\n]* end=negotiation timeout", "") return n == 3 end, 10,
                 "3 lookups cut by negotiation_timeout")
    assert.are.equal("", hi(np2.ports.slow), "the process goes on")
    h.wait_until(function() local _, n = np2.log():gsub("slow: [^\n]* end=refused: host nil", "") return n == 2 end, 10, "a second refusal")
    h.stop(np2)
  end)

  it("reports a bad address or CIDR at --check", function()
    local path = h.write(h.tmpfile("acl.lua"), 'server { deny = { "::1/129" } }\n' ..
      'proxy { allow = { "300.1.1.1/8" }, from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 } }\n')
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":1: server: deny: bad prefix in '::1/129' (at most /128)", 1, true), err)
    assert.truthy(err:find(path .. ":2: proxy 'proxy1': allow: bad address or CIDR '300.1.1.1/8'", 1, true), err)
  end)
end)

describe("running out of file descriptors", function()
  after_each(h.stop_all)

  it("pauses accepting, serves everybody in turn, logs at most once a second, never dies", function()
    local echo = h.peer_server("echo")
    local np = h.netproxy_start(h.tcp_proxy("tight", echo.port), nil, { ulimit = 64 })
    -- 300 clients, 150 at once: far more than 64 descriptors allow
    local burst = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.tight, "--conns", "300",
                            "--parallel", "150", "--bytes", "4K", "--timeout", "20" })
    -- a client already accepted waits for a descriptor rather than fail: all 300 get through
    assert.are.equal(0, h.exit_status(burst, 30), h.read(burst.err))
    assert.is_true(h.alive(np.pid), "netproxy died")
    local log = np.log()
    assert.truthy(log:find("pausing accepts for 100 ms", 1, true), "never ran out of descriptors?")
    -- one warning a second at most: count them against the seconds they span
    local stamps = {}
    for ts in log:gmatch("(%d%d:%d%d:%d%d)%.%d+Z warning [^\n]*pausing accepts") do stamps[#stamps + 1] = ts end
    local seen = {}
    for _, ts in ipairs(stamps) do
      assert.is_nil(seen[ts], "two warnings within the second " .. ts)
      seen[ts] = true
    end
    -- and it serves normally once the burst is over
    local r = h.client("127.0.0.1", np.ports.tight, { "--bytes", "64K", "--conns", "10", "--parallel", "5" })
    assert.are.equal(0, r.rc, r.err)
  end)

  it("never spins while it has no descriptor left, and serves the waiting client once one is free", function()
    local echo = h.peer_server("echo")
    local np = h.netproxy_start(h.tcp_proxy("tight", echo.port), nil, { ulimit = 64 })
    -- connections held open until one is not served once netproxy says it has no descriptor left
    -- (one merely slow to answer, under load, is held with the others)
    local held, waiting = {}, nil
    while not waiting do
      assert.is_true(#held < 64, "64 connections served under ulimit -n 64")
      local c = assert(h.connect(np.ports.tight))
      c:send("x")
      if c:read(1, 0.5) == "" and np.log():find("pausing accepts for 100 ms", 1, true) then waiting = c else held[#held + 1] = c end
    end
    -- and one more in the listen queue: the listener stays readable while accept() fails
    local queued = assert(h.connect(np.ports.tight))
    queued:send("y")
    local _, cpu_before = h.usage(np.pid)
    h.sleep(1)   -- the measuring window: one second out of descriptors (what is measured, not a wait)
    local _, cpu_after = h.usage(np.pid)
    -- a listener left readable (or a connect retried in a loop) takes all of that second
    assert.is_true(cpu_after - cpu_before < 0.1, ("%.2fs of CPU in 1 s out of descriptors"):format(cpu_after - cpu_before))
    for i = 1, 4 do held[i]:close() end
    assert.are.same({ "x", "want" }, { waiting:read(1, 5) })
    assert.are.same({ "y", "want" }, { queued:read(1, 5) })
  end)
end)
