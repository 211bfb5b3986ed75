-- Limits per client (issue 28): per_source = { max_conns, rate } by client address, shared by
-- the workers (limits.c's table in shared memory), by the PROXY header's client when the
-- listener takes one, IPv6 grouped by /64; per_user for authenticated SOCKS5 and CONNECT /
-- plain http users. A client over a limit is closed at once (a plain tcp `from`), answered
-- 429 (connect) or 0x02 (socks5), counted by reason in /metrics, told to on_denied. A full
-- table refuses new keys while every entry holds live connections, and takes an idle entry
-- over once one is free. Clients come from other loopback addresses (127.0.0.N) to be told
-- apart.
local h = require "spec.helpers"

-- Holds a connection through port open, once an echo through it proves it is relayed.
local function hold(port, from, host)
  local c = assert(h.connect(port, { from = from, host = host }))
  c:send("held\n")
  assert.are.same({ "held\n", "want" }, { c:read(5) })
  return c
end

-- What a client from `from` gets back for "hi\n": "hi\n" through, "" when refused.
local function hi(port, from, host)
  return (h.talk(port, "hi\n", { from = from, host = host, want = 3, timeout = 5 }))
end

-- The value of a /metrics series (its full text with labels), 0 when absent.
local function metric(np, series)
  local body = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
  for line in body:gmatch("[^\n]+") do
    if line:sub(1, #series + 1) == series .. " " then return tonumber(line:sub(#series + 2)) end
  end
  return 0
end

-- Waits until n connections of proxy `name` have ended (their counts are given back then).
local function ended(np, name, n)
  h.wait_until(function()
    local _, count = np.log():gsub(name .. ": [^\n]* end=", "")
    return count >= n
  end, 10, n .. " connections of " .. name .. " to end")
end

local function closes(c)
  local _, how = c:read(nil, 5)
  return how == "eof" or how == "reset"
end

describe("per_source", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  it("counts a client's connections across 2 workers (max_conns), others unaffected", function()
    local np = h.netproxy_start(([[
server { stats = "127.0.0.1:0" }
proxy { name = "p", per_source = { max_conns = 3 },
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port), { "-w", "2" })
    local held = { hold(np.ports.p), hold(np.ports.p), hold(np.ports.p) }
    -- 3 held between two workers: a count per worker would let the next ones in on one of them
    for _ = 1, 10 do assert.are.equal("", hi(np.ports.p)) end
    h.wait_log(np, "p: refused 127%.0%.0%.1:%d+: per_source: max_conns 3")
    assert.are.equal("hi\n", hi(np.ports.p, "127.0.0.2"), "another client has a count of its own")
    assert.are.equal(10, metric(np, 'netproxy_refusals_total{proxy="p",reason="per_source_conns"}'))
    assert.is_true(metric(np, 'netproxy_connections_refused_total{proxy="p"}') >= 10)
    held[1]:close()
    ended(np, "p", 2)
    assert.are.equal("hi\n", hi(np.ports.p), "a connection ended gives its place back")
    for _, c in ipairs(held) do c:close() end
    h.stop(np)
  end)

  it("stops counting the connections of a worker that died", function()
    local np = h.netproxy_start(([[
proxy { name = "k", per_source = { max_conns = 1 },
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port), { "-w", "2" })
    local held = hold(np.ports.k)
    assert.are.equal("", hi(np.ports.k))
    local workers, pid = {}, nil        -- the worker that holds it: ss names its pid
    for line in h.lines("pgrep -P " .. np.pid) do workers[line] = true end
    for line in h.lines("ss -tnpH state established") do
      local lport = line:match("^%d+%s+%d+%s+%S-:(%d+)%s")
      local owner = line:match("pid=(%d+)")
      if tonumber(lport) == np.ports.k and workers[owner] then pid = owner end
    end
    assert.truthy(pid, "a worker holds the connection")
    os.execute("kill -9 " .. pid)
    h.wait_log(np, "master: worker " .. pid .. " killed by signal 9: replacing it")
    assert.are.equal("eof", select(2, held:read(nil, 5)), "its connection died with it")
    assert.are.equal("hi\n", hi(np.ports.k), "and no longer counts")
    h.stop(np)
  end)

  it("refuses past rate = \"N/S\" until the bucket refills", function()
    local np = h.netproxy_start(([[
proxy { name = "r", per_source = { rate = "3/2" },
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local t0 = h.now()
    for _ = 1, 3 do assert.are.equal("hi\n", hi(np.ports.r)) end
    assert.are.equal("", hi(np.ports.r))
    h.wait_log(np, "r: refused 127%.0%.0%.1:%d+: per_source: rate 3/2s")
    assert.are.equal("hi\n", hi(np.ports.r, "127.0.0.2"))
    -- one token comes back every 2/3 s: polled, never slept
    h.wait_until(function() return hi(np.ports.r) == "hi\n" end, 5, "a token back")
    assert.is_true(h.now() - t0 >= 0.6, "refilled after " .. (h.now() - t0) .. " s")
    h.stop(np)
  end)

  it("counts ::1 end to end (IPv6, by /64)", function()
    local np = h.netproxy_start(([[
proxy { name = "six", per_source = { max_conns = 1 },
        from = { type = "tcp", host = "::1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local held = hold(np.ports.six, nil, "::1")
    assert.are.equal("", hi(np.ports.six, nil, "::1"))
    h.wait_log(np, "six: refused %[::1%]:%d+: per_source: max_conns 1")
    held:close()
    ended(np, "six", 1)
    assert.are.equal("hi\n", hi(np.ports.six, nil, "::1"))
    h.stop(np)
  end)

  it("counts the PROXY header's client, not the balancer's address", function()
    local np = h.netproxy_start(([[
proxy { name = "pp", per_source = { max_conns = 1 },
        from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v1" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local function via(src) return "PROXY TCP4 " .. src .. " 127.0.0.1 4444 80\r\n" end
    local held = assert(h.connect(np.ports.pp))
    held:send(via("192.0.2.7") .. "held\n")
    assert.are.same({ "held\n", "want" }, { held:read(5) })
    assert.are.equal("", (h.talk(np.ports.pp, via("192.0.2.7") .. "hi\n", { want = 3 })))
    h.wait_log(np, "pp: [^\n]*end=refused[^\n]*per_source: max_conns 1")
    assert.are.equal("hi\n", (h.talk(np.ports.pp, via("192.0.2.8") .. "hi\n", { want = 3 })),
                     "the same balancer, another client")
    held:close()
    h.stop(np)
  end)

  -- (a proxy of each: the C path and the session's have their own counters)
  local function asking(extra)
    return extra .. [[
proxy { name = "ask", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(client)
          client:write(("%s|%s\n"):format(seen.server, seen.proxy))
          return "closed"
        end } }
]]
  end
  local SEEN = [[
local seen = {}
server { on_denied = function(info) seen.server = (seen.server or 0) + 1 seen.why = info.reason end }
]]

  it("keys a client alike at accept (C) and behind a PROXY header (Lua): a server{} rule counts it once", function()
    local np = h.netproxy_start(([[
server { per_source = { max_conns = 1 } }
proxy { name = "direct", from = { type = "tcp", host = "::1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "direct4", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "behind", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v1" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port, echo.port))
    local function via(line) return (h.talk(np.ports.behind, line .. "\r\nhi\n", { want = 3 })) end
    local six = hold(np.ports.direct, nil, "::1")
    assert.are.equal("", via("PROXY TCP6 ::1 ::1 1111 80"), "::1 from C and from Lua: one key")
    assert.are.equal("", via("PROXY TCP6 0:0:0:0:0:0:0:ffff 0::1 1111 80"), "the same /64")
    assert.are.equal("hi\n", via("PROXY TCP6 0:0:0:1:: ::1 1111 80"), "another /64")
    local four = hold(np.ports.direct4, "127.0.0.9")
    assert.are.equal("", via("PROXY TCP4 127.0.0.9 127.0.0.1 1111 80"))
    assert.are.equal("hi\n", via("PROXY TCP4 127.0.0.10 127.0.0.1 1111 80"))
    six:close()
    four:close()
    h.stop(np)
  end)

  it("tells on_denied (server{} then the proxy's) of a client accept(conn) refuses", function()
    local np = h.netproxy_start(asking(SEEN .. ([[
proxy { name = "acc", accept = function(conn) return nil, "not today" end,
        on_denied = function(info) if info.reason == "not today" then seen.proxy = (seen.proxy or 0) + 1 end end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port)))
    for _ = 1, 3 do assert.are.equal("", hi(np.ports.acc)) end
    h.wait_until(function() return hi(np.ports.ask) == "3|3\n" end, 5, "the counts")
    h.stop(np)
  end)

  it("tells on_denied of a client over per_source", function()
    local np = h.netproxy_start(asking(SEEN .. ([[
proxy { name = "lim", per_source = { max_conns = 1 },
        on_denied = function(info) if info.reason == "per_source: max_conns 1" then seen.proxy = (seen.proxy or 0) + 1 end end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port)))
    local held = hold(np.ports.lim)
    for _ = 1, 2 do assert.are.equal("", hi(np.ports.lim)) end
    h.wait_until(function() return hi(np.ports.ask) == "2|2\n" end, 5, "the counts")
    held:close()
    h.stop(np)
  end)

  it("a full table refuses a new client while every entry holds connections, then takes an idle one", function()
    local np = h.netproxy_start(([[
server { stats = "127.0.0.1:0", limits_table = 16 }
proxy { name = "full", per_source = { max_conns = 100 },
        from = { type = "tcp", host = "0.0.0.0", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local held = {}
    for i = 1, 16 do held[i] = hold(np.ports.full, "127.0.0." .. i) end
    assert.are.equal("hi\n", hi(np.ports.full, "127.0.0.3"), "a client with an entry still counts in it")
    assert.are.equal("", hi(np.ports.full, "127.0.0.17"))
    h.wait_log(np, "full: refused 127%.0%.0%.17:%d+: limits table full")
    assert.are.equal(1, metric(np, 'netproxy_refusals_total{proxy="full",reason="limits_table_full"}'))
    held[5]:close()
    ended(np, "full", 2)
    assert.are.equal("hi\n", hi(np.ports.full, "127.0.0.17"), "an idle entry is taken over")
    for _, c in ipairs(held) do c:close() end
    h.stop(np)
  end)
end)

describe("limits in the config", function()
  teardown(h.stop_all)

  it("refuses what would do nothing or is malformed, saying why", function()
    local path = h.write(h.tmpfile("bad.lua"), [[
server { limits_table = 8 }
proxy { name = "t", per_user = { max_conns = 1 }, per_source = { max_conns = 2, burst = 1 },
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = 9 } }
proxy { name = "s", per_user = { rate = "1/x" },
        from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" } } }
proxy { name = "n", per_user = { max_conns = 1 },
        from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" } } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    for _, want in ipairs({
      "server: limits_table: ",
      "proxy 't': per_source: unknown field 'burst'",
      "proxy 't': per_user: only a connect or socks5 `from` has users (this one is tcp)",
      "proxy 's': per_user: rate: bad rate '1/x'",
      "proxy 'n': per_user without users: no client authenticates, so none is counted",
    }) do
      assert.truthy(err:find(want, 1, true), want .. " in:\n" .. err)
    end
  end)
end)

describe("per_user", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
local seen = { socks = 0, http = 0 }
server { stats = "127.0.0.1:0", on_denied = function(info) seen[info.proxy] = seen[info.proxy] + 1 end }
proxy { name = "ask", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(client)
          client:write(seen.socks .. "|" .. seen.http .. "\n")
          return "closed"
        end } }
proxy { name = "socks", per_user = { max_conns = 1 },
        from = { type = "socks5", host = "127.0.0.1", port = 0, users = { alice = "secret", bob = "pw2" },
                 allow = { "127.0.0.1:*" } } }
proxy { name = "http", per_user = { max_conns = 1 },
        from = { type = "connect", host = "127.0.0.1", port = 0, users = { alice = "secret", bob = "pw2" },
                 allow = { "127.0.0.1:*" } } }
]]):format())
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  -- on_denied's counts so far, socks|http
  local function told() return (h.talk(np.ports.ask, "", { want = "\n" })) end

  -- A SOCKS5 CONNECT to the echo server as user:pass; returns the connection and the reply code.
  local function socks(user, pass)
    local c = assert(h.connect(np.ports.socks))
    c:send("\5\1\2")
    assert.are.same({ "\5\2", "want" }, { c:read(2) })
    c:send("\1" .. string.char(#user) .. user .. string.char(#pass) .. pass)
    assert.are.same({ "\5\2\1\0", "want" }, { c:read(4) })
    c:send("\5\1\0\1\127\0\0\1" .. string.char(math.floor(echo.port / 256), echo.port % 256))
    local reply = c:read(6, 5)
    return c, reply:byte(6)
  end

  it("answers SOCKS5 0x02 to a user over max_conns; another user goes through", function()
    local held, code = socks("alice", "secret")
    assert.are.equal(0, code)
    local second, code2 = socks("alice", "secret")
    assert.are.equal(2, code2, "not allowed by ruleset")
    assert.is_true(closes(second))
    local bob, code3 = socks("bob", "pw2")
    assert.are.equal(0, code3)
    bob:close()
    assert.are.equal(1, metric(np, 'netproxy_refusals_total{proxy="socks",reason="per_user_conns"}'))
    h.wait_log(np, 'socks: [^\n]*end=refused[^\n]*per_user: max_conns 1')
    assert.truthy(told():match("^1|"), "on_denied told")
    held:close()
  end)

  it("answers 429 to a CONNECT and to a plain http:// request of a user over max_conns", function()
    local auth = "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"       -- alice:secret
    local held = assert(h.connect(np.ports.http))
    held:send(("CONNECT 127.0.0.1:%d HTTP/1.1\r\n%s\r\n"):format(echo.port, auth))
    assert.truthy(held:read("\r\n\r\n", 5):match("^HTTP/1%.1 200"))
    local out = h.talk(np.ports.http, ("CONNECT 127.0.0.1:%d HTTP/1.1\r\n%s\r\n"):format(echo.port, auth))
    assert.truthy(out:match("^HTTP/1%.1 429 Too Many Requests\r\n"), out)
    assert.truthy(out:match("per_user: max_conns 1"), out)
    local code = h.run({ "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                         "-x", "http://alice:secret@127.0.0.1:" .. np.ports.http, "http://127.0.0.1:" .. echo.port .. "/" })
    assert.are.equal("429", code)
    out = h.talk(np.ports.http, ("CONNECT 127.0.0.1:%d HTTP/1.1\r\nProxy-Authorization: Basic Ym9iOnB3Mg==\r\n\r\n"):format(echo.port),
                 { want = "\r\n\r\n" })
    assert.truthy(out:match("^HTTP/1%.1 200"), "bob has a count of his own: " .. out)
    assert.truthy(told():match("|2\n$"), "on_denied told of the CONNECT and of the plain request")
    held:close()
  end)
end)
