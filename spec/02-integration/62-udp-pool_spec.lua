-- Upstream pools for UDP: a udp `to` with servers chooses a server once per flow. The
-- backends are real dnsmasq instances, each answering *.test.example with an address of
-- its own (192.0.2.1 for a, .2 for b...), so every query knows which server answered it.
-- A query is one flow when it comes from a source port of its own: dig picks a random one
-- for each run, and may pick one an earlier run had (then it meets that run's flow), so the
-- specs that count flows send their queries from sockets held open until the last answer.
local h = require "spec.helpers"
local udp = require "spec.support.udp"
local now = h.now

local USER = io.popen("id -un"):read("*l")

-- dnsmasq on 127.0.0.1:port (a free one unless given: started again elsewhere when another
-- process took it first) answering *.test.example with answer, plus the extra arguments;
-- ready once dig gets an answer straight from it.
local function dnsmasq(answer, port, extra)
  local function start(at)
    local argv = { "dnsmasq", "--no-daemon", "--port=" .. at, "--listen-address=127.0.0.1",
                   "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                   "--user=" .. USER, "--address=/test.example/" .. answer, "--pid-file=" }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    return h.spawn(argv)
  end
  local p
  if port then
    p = start(port)
    p.port = port
  else
    p = h.on_free_port("dnsmasq", start, { udp = true })
  end
  port = p.port
  h.wait_until(function()
    local out = h.run({ "dig", "@127.0.0.1", "-p", tostring(port), "+short", "+tries=1", "+time=1", "ready.test.example" })
    return out:find(answer, 1, true)
  end, 10, "dnsmasq on " .. port)
  return p
end

-- Servers a, b, c...: dnsmasq answering 192.0.2.1, .2, .3...
local function backends(n)
  local list = {}
  for i = 1, n do
    local name = string.char(96 + i)
    list[name] = dnsmasq("192.0.2." .. i)
    list[i] = list[name]
  end
  return list
end

-- A UDP port nobody listens on: a datagram to it gets ICMP port unreachable.
local function closed_udp_port()
  local c = udp.new()
  local port = c.port
  c:close()
  return port
end

-- One dig through port (from source address `from` when given), tried once: the letter of
-- the server that answered, or nil and dig's output.
local function ask(port, from, timeout)
  local argv = { "dig", "@127.0.0.1", "-p", tostring(port), "+short", "+tries=1", "+time=" .. (timeout or 3) }
  if from then argv[#argv + 1] = "-b"; argv[#argv + 1] = from end
  argv[#argv + 1] = "q.test.example"
  local out, err = h.run(argv)
  local n = out:match("^192%.0%.2%.(%d+)\n$")
  if not n then return nil, out .. err end
  return string.char(96 + tonumber(n))
end

-- A DNS query for q.test.example A (id 0x1234) as bytes, and as Lua source for a config;
-- a pattern its answer matches (the same id, the QR bit set).
local QUERY_BYTES = "\18\52\1\0\0\1\0\0\0\0\0\0\1q\4test\7example\0\0\1\0\1"
local QUERY = [["\18\52\1\0\0\1\0\0\0\0\0\0\1q\4test\7example\0\0\1\0\1"]]
local ANSWER = [["^\18\52[\128-\255]"]]

-- n queries through port, one after the other, each from a socket of its own, all held open
-- until the last is answered: n flows. The letters of the servers that answered.
local function flows(np, n)
  local socks, seen = {}, {}
  for i = 1, n do
    socks[i] = udp.new()
    local reply = socks[i]:ask(np.ports.pool, QUERY_BYTES, 3)
    local n4 = reply and reply:sub(1, 2) == "\18\52" and reply:byte(-1)
    seen[i] = n4 and string.char(96 + n4) or error(("query %d: %s\n--- the log:\n%s"):format(i, tostring(reply), np.log():sub(-3000)))
  end
  for _, c in ipairs(socks) do c:close() end
  return table.concat(seen)
end

local function flow_ends(np)
  local n = 0
  for _ in np.log():gmatch("pool: udp [^\n]*end=") do n = n + 1 end
  return n
end

-- n digs one after the other: the letters of the servers that answered.
local function digs(np, n, from)
  local seen = {}
  for i = 1, n do
    local got, err = ask(np.ports.pool, from)
    seen[i] = got or error(("dig %d: %s\n--- the log:\n%s"):format(i, err, np.log():sub(-3000)))
  end
  return table.concat(seen)
end

local function count(s, letter)
  return select(2, s:gsub(letter, ""))
end

-- A config with the udp proxy "pool" on 127.0.0.1:0 to `to` (a Lua table's text).
local function proxy(to, extra, server)
  return ([[
%s
proxy { name = "pool", from = { type = "udp", host = "127.0.0.1", port = 0 }, %s
        to = %s }
]]):format(server or "", extra or "", to)
end

local function servers(...)
  local out = {}
  for i, p in ipairs({ ... }) do out[i] = ("%q"):format("127.0.0.1:" .. (type(p) == "table" and p.port or p)) end
  return "{ " .. table.concat(out, ", ") .. " }"
end


describe("udp pools", function()
  after_each(h.stop_all)

  it("round robin spreads flows exactly over three servers (one worker)", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "udp", servers = %s }]]):format(servers(b.a, b.b, b.c))), { "-v" })
    assert.are.equal("abcabcabc", flows(np, 9), np.log())
    h.stop(np)
    assert.matches("pool: udp 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:" .. b.a.port .. " in=", np.log())
    assert.are.equal(9, flow_ends(np))
  end)

  it("honours weights 1:3 (smooth: never four of the heavy one in a row)", function()
    local b = backends(2)
    local np = h.netproxy_start(proxy(([[{ type = "udp",
      servers = { "127.0.0.1:%d", { host = "127.0.0.1", port = %d, weight = 3 } } }]]):format(b.a.port, b.b.port)))
    local seq = flows(np, 12)
    assert.are.equal(3, count(seq, "a"), seq)
    assert.are.equal(9, count(seq, "b"), seq)
    assert.is_nil(seq:find("bbbb"), seq)
  end)

  it("source: a client address keeps its server, whatever its source port", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "udp", balance = "source", servers = %s }]])
      :format(servers(b.a, b.b, b.c))))
    local first = {}
    for i = 1, 24 do first[i] = assert(ask(np.ports.pool, "127.0.0." .. (i + 1))) end
    local spread = table.concat(first)
    assert.is_true(count(spread, "a") > 0 and count(spread, "b") > 0 and count(spread, "c") > 0, spread)
    for round = 1, 2 do
      for i = 1, 24 do
        assert.are.equal(first[i], ask(np.ports.pool, "127.0.0." .. (i + 1)), "client " .. i .. ", round " .. round)
      end
    end
  end)

  it("skips a server that refuses (ICMP port unreachable): every dig answered on its first try", function()
    local b = backends(2)
    local closed = closed_udp_port()
    -- max_fails = 0: never marked down, so every other flow meets the closed port first
    local np = h.netproxy_start(proxy(([[{ type = "udp", max_fails = 0, servers = %s }]]):format(servers(closed, b.a, b.b))))
    local seq = digs(np, 12)
    assert.is_nil(seq:find("[^ab]"), seq)
    h.stop(np)
    local log = np.log()
    local failed_over = select(2, log:gsub(("pool: udp [^\n]* %%-> 127%%.0%%.0%%.1:%%d+ failed=127%%.0%%.0%%.1:%d in="):format(closed), ""))
    assert.is_true(failed_over >= 2, log)       -- (4 of 12 when dig reuses no source port)
    -- the failed server's datagram went to the next server whole, counted once
    assert.matches(("failed=127%%.0%%.0%%.1:%d in=%%d+ out=%%d+ datagrams_in=1 datagrams_out=1 dropped=0"):format(closed), log)
  end)

  it("marks a refusing server down after max_fails (passive health), for fail_timeout", function()
    local b = backends(1)
    local closed = closed_udp_port()
    local np = h.netproxy_start(proxy(([[{ type = "udp", max_fails = 2, fail_timeout = 30, servers = %s }]])
      :format(servers(closed, b.a))))
    assert.are.equal("aaaaaa", flows(np, 6))
    h.wait_log(np, "server 127%.0%.0%.1:" .. closed .. " down for 30s after 2 failures %(refused%)")
    h.stop(np)
    assert.are.equal(2, select(2, np.log():gsub("failed=127%.0%.0%.1:" .. closed, "")), np.log())
  end)

  it("fails over past a server whose name does not resolve", function()
    local a = dnsmasq("192.0.2.1")
    -- the resolver: names under test.example are 127.0.0.1, under invalid do not exist
    local ns = dnsmasq("127.0.0.1", nil, { "--address=/invalid/" })
    local np = h.netproxy_start(proxy(([[{ type = "udp", servers = { "gone.invalid:%d", "a.test.example:%d" } }]])
      :format(a.port, a.port), nil, ('server { resolvers = { "127.0.0.1:%d" } }'):format(ns.port)))
    assert.are.equal("aaa", digs(np, 3))
    h.stop(np)
    assert.matches("%-> a%.test%.example:" .. a.port .. " failed=gone%.invalid:" .. a.port .. " in=", np.log())
    assert.matches("server gone%.invalid:" .. a.port .. " down for 10s after 1 failure", np.log())
  end)

  it("uses backup servers only when every normal server is down", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "udp",
      servers = { "127.0.0.1:%d", "127.0.0.1:%d", { host = "127.0.0.1", port = %d, backup = true } } }]])
      :format(b.a.port, b.b.port, b.c.port)))
    assert.are.equal("abababab", flows(np, 8))
    h.stop(b.a)
    assert.are.equal("bbbb", flows(np, 4))
    h.stop(b.b)
    assert.are.equal("cccc", flows(np, 4))
  end)

  it("ends a flow at once when every server is down, with a log line, counted", function()
    local r1, r2 = closed_udp_port(), closed_udp_port()
    local np = h.netproxy_start(proxy(([[{ type = "udp", servers = %s }]]):format(servers(r1, r2)), nil,
                                      'server { stats = "127.0.0.1:0" }'))
    local c = udp.new()
    -- the first flow tries both: refused, refused
    c:send(np.ports.pool, "query 1")
    local line = h.wait_log(np, "pool: udp [^\n]*end=connect failed[^\n]*")
    -- (the datagram went out, to each in turn: carried once, answered by nobody)
    assert.matches(("%%-> none failed=127%%.0%%.0%%.1:%d,127%%.0%%.0%%.1:%d in=7 out=0 datagrams_in=1 "):format(r1, r2), line)
    assert.matches("end=connect failed: no server: 127%.0%.0%.1:%d+: refused", line)
    -- the next ones find both down: nothing is sent, the flow ends as it starts
    for i = 2, 3 do c:send(np.ports.pool, "query " .. i) end
    h.wait_until(function() return flow_ends(np) == 3 end, 5, "three flow ends")
    local log = np.log()
    for time in log:gmatch("%-> none in=0 [^\n]* time=([%d.]+)s end=connect failed: no server: every server is down") do
      assert.is_true(tonumber(time) < 0.1, time)
    end
    assert.are.equal(2, select(2, log:gsub("%-> none in=0 [^\n]*end=connect failed: no server: every server is down", "")), log)
    assert.matches("warning [^\n]*pool: no server: every server is down", log)
    c:close()
    local body = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
    assert.matches('netproxy_udp_flows_errors_total{proxy="pool"} 3', body, 1, true)
    assert.matches('netproxy_udp_flows_closed_total{proxy="pool"} 3', body, 1, true)
    assert.matches(('netproxy_server_up{proxy="pool",server="127.0.0.1:%d"} 0'):format(r1), body, 1, true)
    assert.matches(('netproxy_server_failures_total{proxy="pool",server="127.0.0.1:%d"} 1'):format(r2), body, 1, true)
  end)

  it("shows each server in /metrics and core.stats(): up, active flows, flows reached, failures", function()
    local b = backends(2)
    local closed = closed_udp_port()
    local np = h.netproxy_start(proxy(([[{ type = "udp", servers = %s }]]):format(servers(b.a, b.b, closed)), [[
        accept = function(conn)
          local s = require("netproxy.core").stats().servers.pool
          for name, v in pairs(s) do
            conn:log("notice", "stats %s up=%s active=%d connections=%d failures=%d", name, tostring(v.up), v.active, v.connections, v.failures)
          end
          return true
        end,]], 'server { stats = "127.0.0.1:0" }'))
    -- a, b, then the closed one refuses and a answers: flows stay open (udp_idle_timeout)
    assert.are.equal("aba", flows(np, 3))
    local body = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
    local function series(name, port) return ('%s{proxy="pool",server="127.0.0.1:%d"}'):format(name, port) end
    for _, want in ipairs({
      series("netproxy_server_up", b.a.port) .. " 1",
      series("netproxy_server_up", closed) .. " 0",
      series("netproxy_server_active", b.a.port) .. " 2",
      series("netproxy_server_active", b.b.port) .. " 1",
      series("netproxy_server_active", closed) .. " 0",
      series("netproxy_server_connections_total", b.a.port) .. " 2",
      series("netproxy_server_connections_total", b.b.port) .. " 1",
      series("netproxy_server_connections_total", closed) .. " 0",
      series("netproxy_server_failures_total", closed) .. " 1",
      series("netproxy_server_failures_total", b.a.port) .. " 0",
    }) do
      assert.matches(want, body, 1, true)
    end
    assert.are.equal("b", flows(np, 1))     -- its accept() logs the state before it
    local log = np.log()
    assert.matches(("stats 127.0.0.1:%d up=true active=2 connections=2 failures=0"):format(b.a.port), log, 1, true)
    assert.matches(("stats 127.0.0.1:%d up=false active=0 connections=0 failures=1"):format(closed), log, 1, true)
    h.stop(np)
    assert.matches(("%%-> 127%%.0%%.0%%.1:%d failed=127%%.0%%.0%%.1:%d in="):format(b.a.port, closed), np.log())
  end)

  it("a Lua balance function sees each server's state and the flow's client", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "udp", servers = %s,
      -- the last octet of the client's address picks the server; a server down is passed over
      balance = function(servers, conn)
        local n = tonumber(conn.client:match("^127%%.0%%.0%%.(%%d+):"))
        for k = 0, #servers - 1 do
          local s = servers[(n + k - 1) %% #servers + 1]
          if s.up then return s end
        end
      end }]]):format(servers(b.a, b.b, b.c))))
    assert.are.equal("a", ask(np.ports.pool, "127.0.0.1"))
    assert.are.equal("b", ask(np.ports.pool, "127.0.0.2"))
    assert.are.equal("c", ask(np.ports.pool, "127.0.0.3"))
    assert.are.equal("a", ask(np.ports.pool, "127.0.0.4"))
    h.stop(b.b)
    assert.are.equal("c", ask(np.ports.pool, "127.0.0.8"))   -- b refused: retried, up = false
    assert.are.equal("c", ask(np.ports.pool, "127.0.0.5"))   -- b down: passed over at once
    h.stop(np)
    assert.matches("127%.0%.0%.8:%d+ %-> 127%.0%.0%.1:" .. b.c.port .. " failed=127%.0%.0%.1:" .. b.b.port, np.log())
  end)

  it("gives the hooks the flow's conn with the server chosen as conn.target", function()
    local b = backends(2)
    local np = h.netproxy_start(proxy(([[{ type = "udp", servers = %s,
      hook = function(d, conn) conn:log("notice", "reply from %%s", conn.target) end }]]):format(servers(b.a, b.b))))
    assert.are.equal("ab", flows(np, 2), np.log())
    assert.matches("reply from 127%.0%.0%.1:" .. b.a.port, np.log())
    assert.matches("reply from 127%.0%.0%.1:" .. b.b.port, np.log())
  end)
end)

describe("udp pools: active checks", function()
  after_each(h.stop_all)

  -- the flow end lines after position `from` of the log
  local function served(log, from)
    local lines = {}
    for line in log:sub(from):gmatch("pool: udp [^\n]*end=[^\n]*") do lines[#lines + 1] = line end
    return lines
  end

  it("send/expect: a killed server gets no more flows within interval x fall, and is back after rise", function()
    local b = backends(3)
    local b_port = b.b.port
    -- max_fails = 0: passive health off, only the checks mark down; two workers, one checker
    local np = h.netproxy_start(proxy(([[{ type = "udp", max_fails = 0, servers = %s,
      check = { interval = 0.2, timeout = 0.5, fall = 2, rise = 2, send = %s, expect = %s } }]])
      :format(servers(b.a, b.b, b.c), QUERY, ANSWER), "udp_idle_timeout = 1,"), { "-w", "2" })
    h.wait_workers(np.pid, 2)
    h.stop(b.b)
    local t0 = now()
    h.wait_log(np, "server 127%.0%.0%.1:" .. b_port .. " down: check failed 2 times: refused", 0.2 * 2 + 1)
    assert.is_true(now() - t0 < 1.4)
    local mark = #np.log()
    local seq = digs(np, 12)
    assert.is_nil(seq:find("b"), seq)
    h.wait_until(function() return #served(np.log(), mark) >= 12 end, 5, "12 flow ends")
    for _, line in ipairs(served(np.log(), mark)) do
      assert.is_nil(line:find("failed=", 1, true), line)      -- nobody even tried b
    end
    assert.are.equal(1, select(2, np.log():gsub("server 127%.0%.0%.1:" .. b_port .. " down", "")))
    -- back on its port: up after rise checks, and flows reach it again
    dnsmasq("192.0.2.2", b_port)
    h.wait_log(np, "server 127%.0%.0%.1:" .. b_port .. " up: check passed 2 times", 0.2 * 2 + 2)
    assert.truthy(digs(np, 6):find("b"))
  end)

  it("a reply that does not match expect marks the server down", function()
    local good = dnsmasq("192.0.2.1")
    local other = dnsmasq("192.0.2.2", nil, { "--address=/q.test.example/" })  -- NXDOMAIN: flags 0x8183, not 0x8580
    local np = h.netproxy_start(proxy(([[{ type = "udp", max_fails = 0, servers = %s,
      check = { interval = 0.2, timeout = 0.5, fall = 1, rise = 1, send = %s, expect = "^\18\52\133\128" } }]])
      :format(servers(good, other), QUERY)))
    h.wait_log(np, "server 127%.0%.0%.1:" .. other.port .. " down: check failed 1 times: expected", 3)
    assert.is_nil(np.log():find("server 127.0.0.1:" .. good.port .. " down", 1, true))
    assert.are.equal("aaaa", digs(np, 4))
  end)

  it("a check function gets a connected UDP cosocket (core.connect_udp)", function()
    local b = backends(2)
    local np = h.netproxy_start(proxy(([[{ type = "udp", max_fails = 0, servers = %s,
      check = { interval = 0.2, timeout = 0.5, fall = 1, rise = 1,
                fn = function(sock, server)
                  assert(sock:write(%s))
                  local answer, err = sock:read(512, 0.5)
                  if not answer then return false, err end
                  -- the last 4 bytes are the A record's address: only 192.0.2.1 will do
                  local ip = table.concat({ answer:byte(-4, -1) }, ".")
                  return ip == "192.0.2.1", "answered " .. ip .. " from " .. sock:peer()
                end } }]]):format(servers(b.a, b.b), QUERY)))
    h.wait_log(np, "server 127%.0%.0%.1:" .. b.b.port .. " down: check failed 1 times: answered 192%.0%.2%.2 from 127%.0%.0%.1:" .. b.b.port, 3)
    assert.are.equal("aaaa", digs(np, 4))
  end)
end)

describe("core.connect_udp", function()
  after_each(h.stop_all)

  it("reads and writes whole datagrams, empty ones too, and reads ICMP port unreachable as refused", function()
    local portfile = h.tmpfile("udp-port")
    local echo = h.spawn({ "python3", h.root .. "/spec/support/udp_peer.py", "echo", "127.0.0.1", portfile })
    local port = tonumber(h.wait_until(function() return h.read(portfile) end, 10, "the udp echo server"))
    local closed = closed_udp_port()
    local np = h.netproxy_start(([[
local core = require "netproxy.core"
server { on_start = function()
  core.after(0, function()
    local sock = assert(core.connect_udp("127.0.0.1", %d, { timeout = 1 }))
    local big = ("x"):rep(60000)
    sock:write("one"); sock:write(big); sock:write("")
    local a, b, c = sock:read(65536, 1), sock:read(65536, 1), sock:read(65536, 1)
    core.log("notice", ("echo: %%s %%d [%%s]"):format(a, #b, c))
    sock:write("truncated")
    core.log("notice", "short read: " .. tostring(sock:read(5, 1)))
    core.log("notice", "nothing more: " .. select(2, sock:read(10, 0.2)))
    local ok, err = pcall(sock.peek, sock, 1)
    core.log("notice", "peek: " .. tostring(err))
    sock:close()
    local dead = assert(core.connect_udp("127.0.0.1", %d))
    dead:write("anyone?")
    core.log("notice", "closed port: " .. select(2, dead:read(10, 1)))
    core.log("notice", "no name: " .. select(2, core.connect_udp("no-such-name.invalid", 53, 1)))
  end)
end }
proxy { name = "p", from = { type = "udp", host = "127.0.0.1", port = 0 },
        to = { type = "udp", host = "127.0.0.1", port = %d } }
]]):format(port, closed, port))
    h.wait_log(np, "no name: [^\n]+")
    local log = np.log()
    assert.matches("echo: one 60000 %[%]", log)
    assert.matches("short read: trunc\n", log)
    assert.matches("nothing more: timeout", log)
    assert.matches("peek: [^\n]*a udp socket reads whole datagrams", log)
    assert.matches("closed port: refused", log)
    h.stop(echo)
  end)
end)

describe("udp pools: --check", function()
  it("names file:line for bad entries, a check without send, servers on a datagram service", function()
    local path = h.write(h.tmpfile("bad-udp-pool.lua"), [[
proxy { name = "a", from = { type = "udp", port = 1 }, to = { type = "udp", servers = {} } }
proxy { name = "b", from = { type = "udp", port = 2 },
        to = { type = "udp", servers = { "127.0.0.1:1", "nohostport", { host = "127.0.0.1", port = 3, weight = 300 } },
               balance = "fastest" } }
proxy { name = "c", from = { type = "udp", port = 3 }, to = { type = "udp", servers = { "127.0.0.1:1" }, check = { interval = 1 } } }
proxy { name = "d", from = { type = "udp", port = 4 }, to = { type = "udp", servers = { "127.0.0.1:1" }, check = { expect = "x" } } }
proxy { name = "e", from = { type = "udp", port = 5 }, to = { type = "service", servers = { "127.0.0.1:1" } } }
proxy { name = "f", from = { type = "udp", port = 6 }, to = { type = "udp", host = "127.0.0.1", servers = { "127.0.0.1:1" } } }
proxy { name = "g", from = { type = "udp", port = 7 }, to = { type = "udp", servers = { "127.0.0.1:0" } } }
proxy { name = "ok", from = { type = "udp", port = 8 },
        to = { type = "udp", servers = { "127.0.0.1:53", { host = "::1", port = 53, backup = true } }, balance = "source",
               check = { send = "ping", expect = "^pong" } } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.matches(":1: proxy 'a': to: servers: empty list", err, 1, true)
    assert.matches(":2: proxy 'b': to: servers[2]: 'nohostport': want HOST:PORT", err, 1, true)
    assert.matches(":2: proxy 'b': to: servers[3]: weight 300 out of range (want 1..256)", err, 1, true)
    assert.matches(":2: proxy 'b': to: balance: unknown 'fastest'", err, 1, true)
    assert.matches(":5: proxy 'c': to: check: send: required for udp", err, 1, true)
    assert.matches(":6: proxy 'd': to: check: send: required for udp (a check sends one datagram and waits for a reply matching expect)", err, 1, true)
    assert.matches(":7: proxy 'e': to: servers: a datagram service answers itself", err, 1, true)
    assert.matches(":8: proxy 'f': to: host and servers: give one or the other", err, 1, true)
    assert.matches(":9: proxy 'g': to: servers[1]: port 0 is not a port to connect to", err, 1, true)
    assert.is_nil(err:find("proxy 'ok'", 1, true), err)
  end)
end)

describe("examples/dns-pool.lua, a DNS forwarder over three resolvers", function()
  after_each(h.stop_all)

  it("spreads flows 1:2, skips resolvers that refuse, and falls back to the backup", function()
    local b = backends(3)
    local config = h.read(h.root .. "/examples/dns-pool.lua"):gsub("port = 5353", "port = 0")
        :gsub("127%.0%.0%.1:5301", "127.0.0.1:" .. b.a.port):gsub("port = 5302", "port = " .. b.b.port)
        :gsub("port = 5303", "port = " .. b.c.port)
    local np = h.netproxy_start((config:gsub('name = "dns"', 'name = "pool"')))
    local seq = flows(np, 6)
    assert.are.equal(2, count(seq, "a"), seq)
    assert.are.equal(4, count(seq, "b"), seq)
    h.stop(b.a)
    h.stop(b.b)
    assert.are.equal("cccc", flows(np, 4))     -- answered first time, past the refusals
    h.stop(np)
    assert.matches("%-> 127%.0%.0%.1:" .. b.c.port .. " failed=127%.0%.0%.1:%d+,127%.0%.0%.1:%d+ in=", np.log())
  end)
end)
