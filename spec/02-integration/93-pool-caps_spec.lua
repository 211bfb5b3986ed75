-- Per-server caps in pools (issue 28): max_conns on a pool server (or on the `to`, for all of
-- them); a client finding every server full waits in the pool's queue (max_queue clients at
-- most, all workers) up to the proxy's queue_timeout, then is refused: a close, 503 through a
-- connect from, reply 0x01 through a socks5 from. The backends are np-peer banner servers
-- that say their name, then echo: a held client knows which one it reached.
local h = require "spec.helpers"

local function backends()
  return { a = h.peer_server("banner", { "--text", "a" }), b = h.peer_server("banner", { "--text", "b" }) }
end

-- A client that reached a server and stays: the server's name.
local function hold(port)
  local c = assert(h.connect(port))
  local got, how = c:read("\n", 5)
  assert.matches("^[ab]\n$", got, 1, false, "no banner (" .. how .. ")")
  return c, got:sub(1, 1)
end

local function ctl(sock, ...)
  local argv = { h.netproxy, "ctl", "-S", sock }
  for _, w in ipairs({ ... }) do argv[#argv + 1] = w end
  return h.run(argv)
end

local function metrics(np)
  return (h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" }))
end

describe("pool caps", function()
  before_each(h.test_begin)
  after_each(h.test_end)

  it("max_conns = 1 on two servers: a third client waits (shown) and is served when one closes; past max_queue, refused at once", function()
    local b = backends()
    local sock = h.tmpfile("control.sock")
    -- max_conns on the `to` (a's) and on an entry (b's); one client may wait
    local np = h.netproxy_start(([[
server { control = %q, stats = "127.0.0.1:0" }
proxy { name = "capped", queue_timeout = 10, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", max_conns = 1, max_queue = 1,
               servers = { "127.0.0.1:%d", { host = "127.0.0.1", port = %d, max_conns = 1 } } } }
]]):format(sock, b.a.port, b.b.port), { "-v" })
    local c1, n1 = hold(np.ports.capped)
    local c2, n2 = hold(np.ports.capped)
    assert.are_not.equal(n1, n2)
    -- a third waits: shown by ctl and /metrics
    local c3 = assert(h.connect(np.ports.capped))
    h.wait_until(function() return metrics(np):find('netproxy_pool_waiting{proxy="capped"} 1\n', 1, true) end, 5,
                 "the waiting client in /metrics")
    local out = ctl(sock, "show", "servers", "capped")
    assert.matches("active%s+max%s+waiting", out)
    assert.matches("127%.0%.0%.1:" .. b.a.port .. "%s+ready%s+1%s+up%s+1%s+1%s+1", out)
    assert.matches("127%.0%.0%.1:" .. b.b.port .. "%s+ready%s+1%s+up%s+1%s+1%s+1", out)
    -- a fourth: the queue is full (max_queue = 1), refused at once, long before queue_timeout
    np.mark()
    local t0 = h.now()
    local got, how = h.talk(np.ports.capped, "", { keep_open = true, timeout = 5 })
    assert.are.equal("", got)
    assert.are.equal("eof", how)
    assert.is_true(h.now() - t0 < 3, "refused at once")
    h.wait_log(np, "every server is full %(max_conns%) and 1 clients wait already %(max_queue%)")
    -- the first closes: the third is served by its server, well within queue_timeout
    t0 = h.now()
    c1:close()
    local banner = c3:read("\n", 5)
    assert.are.equal(n1 .. "\n", banner)
    assert.is_true(h.now() - t0 < 2, "served as soon as a slot freed")
    assert(c3:send("still here\n"))
    assert.matches("still here\n", (c3:read("still here\n", 5)), 1, true)
    h.wait_until(function() return metrics(np):find('netproxy_pool_waiting{proxy="capped"} 0\n', 1, true) end, 5,
                 "nobody waiting")
    assert.matches("netproxy_server_active{proxy=\"capped\",server=\"127.0.0.1:" .. b.b.port .. "\"} 1\n", metrics(np), 1, true)
    c2:close()
    c3:close()
  end)

  it("past queue_timeout a client is refused: a close, 503 through connect (CONNECT and http://), 0x01 through socks5", function()
    local b = backends()
    local np = h.netproxy_start(([[
local servers = { { host = "127.0.0.1", port = %d, max_conns = 1 }, { host = "127.0.0.1", port = %d, max_conns = 1 } }
proxy { name = "plain", queue_timeout = 0.5, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = servers } }
proxy { name = "http", queue_timeout = 0.5, from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "*:*" } },
        to = { type = "tcp", servers = servers } }
proxy { name = "socks", queue_timeout = 0.5, from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" } },
        to = { type = "tcp", servers = servers } }
]]):format(b.a.port, b.b.port), { "-v" })
    -- the three proxies share nothing but the servers' rows are per proxy: fill each
    local held = {}
    for _, name in ipairs({ "plain", "http", "socks" }) do
      for _ = 1, 2 do
        if name == "plain" then held[#held + 1] = hold(np.ports.plain)
        elseif name == "http" then
          local c = assert(h.connect(np.ports.http))
          assert(c:send("CONNECT x.test:80 HTTP/1.1\r\nHost: x.test:80\r\n\r\n"))
          assert.matches("^HTTP/1%.1 200 .*\r\n\r\n[ab]\n$", (c:read("\r\n\r\n[ab]\n", 5)))
          held[#held + 1] = c
        else
          local c = assert(h.connect(np.ports.socks))
          assert(c:send("\5\1\0"))
          assert.are.equal("\5\0", (c:read(2, 5)))
          assert(c:send("\5\1\0\3\6x.test\0\80"))
          assert.matches("^\5\0\0\5\0\0.........[ab]\n$", (c:read(function(s) return #s >= 14 end, 5)))
          held[#held + 1] = c
        end
      end
    end
    np.mark()
    local t0 = h.now()
    local got, how = h.talk(np.ports.plain, "", { keep_open = true, timeout = 5 })
    assert.are.equal("", got)
    assert.are.equal("eof", how)
    assert.is_true(h.now() - t0 >= 0.45, "waited its queue_timeout")
    h.wait_log(np, "plain: .- %-> none .-end=connect failed: no server: every server is full %(max_conns%); waited 0%.5s %(queue_timeout%)")
    got = h.talk(np.ports.http, "CONNECT x.test:80 HTTP/1.1\r\nHost: x.test:80\r\n\r\n", { keep_open = true, timeout = 5 })
    assert.matches("^HTTP/1%.1 503 Service Unavailable\r\n", got)
    got = h.talk(np.ports.http, "GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\n\r\n", { keep_open = true, want = "\r\n\r\n", timeout = 5 })
    assert.matches("^HTTP/1%.1 503 Service Unavailable\r\n", got)
    local c = assert(h.connect(np.ports.socks))
    assert(c:send("\5\1\0"))
    assert.are.equal("\5\0", (c:read(2, 5)))
    assert(c:send("\5\1\0\3\6x.test\0\80"))
    got = c:read(function(s) return #s >= 4 end, 5)
    assert.are.equal("\5\1", got:sub(3, 4))
    c:close()
    for _, x in ipairs(held) do x:close() end
  end)

  it("with 2 workers the cap holds across both: with every slot held, both workers refuse", function()
    local b = backends()
    local np = h.netproxy_start(([[
proxy { name = "capped", queue_timeout = 0, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", max_conns = 1, servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } }
]]):format(b.a.port, b.b.port), { "-w", "2", "-v" })
    h.wait_workers(np.pid, 2)
    -- clients one at a time, all held, until both workers have refused one: exactly two served
    local clients, served, refusers = {}, 0, {}
    np.mark()
    h.wait_until(function()
      local c = assert(h.connect(np.ports.capped))
      clients[#clients + 1] = c
      local got = c:read("\n", 5)
      if got:find("^[ab]\n") then served = served + 1 end
      for pid in np.log():gmatch("%[(%d+)%] #%d+ capped: [^\n]- %-> none [^\n]-every server is full") do
        refusers[pid] = true
      end
      local k = 0
      for _ in pairs(refusers) do k = k + 1 end
      return k == 2
    end, 30, "refusals from both workers")
    assert.are.equal(2, served)
    for _, c in ipairs(clients) do c:close() end
    h.wait_until(function() return select(2, np.log():gsub("end=", "")) == #clients end, 10, "every end")
    -- a burst: 40 clients at once, both workers racing for the two slots; never more than two
    -- served (a slot is taken in one atomic step before the connect)
    for _ = 1, 3 do
      local burst = {}
      for i = 1, 40 do burst[i] = assert(h.connect(np.ports.capped)) end
      local n = 0
      for _, c in ipairs(burst) do
        if c:read("\n", 5):find("^[ab]\n") then n = n + 1 end
      end
      assert.is_true(n <= 2, n .. " served at once")
      for _, c in ipairs(burst) do c:close() end
    end
  end)

  it("a slot is taken before the connect: clients racing during slow connects never exceed the cap", function()
    local b = backends()
    local dir = h.tmp() .. "/conn"
    os.execute("mkdir -p " .. dir)
    -- a connector whose connect takes 0.3 s: every client of the burst picks meanwhile
    h.write(dir .. "/slow.lua", [[
local core = require "netproxy.core"
local check = require "netproxy.check"
return { positions = { to = true }, params = { host = check.host, port = check.port },
         connect = function(conf, conn)
           core.sleep(0.3)
           return core.connect(conf.host, conf.port, { timeout = conn.connect_timeout })
         end }
]])
    local np = h.netproxy_start(([[
server { connector_path = { %q } }
proxy { name = "capped", queue_timeout = 0, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "slow", max_conns = 1, servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } }
]]):format(dir, b.a.port, b.b.port), { "-v" })
    local burst = {}
    for i = 1, 10 do burst[i] = assert(h.connect(np.ports.capped)) end
    local names = {}
    for _, c in ipairs(burst) do
      local got = c:read("\n", 5)
      if got:find("^[ab]\n") then names[#names + 1] = got:sub(1, 1) end
    end
    table.sort(names)
    assert.are.equal("ab", table.concat(names))
    h.wait_log(np, "capped: .- %-> none .-every server is full")
    for _, c in ipairs(burst) do c:close() end
  end)

  it("negotiation_timeout bounds the wait too, and the client's end leaves the queue", function()
    local b = backends()
    local np = h.netproxy_start(([[
server { stats = "127.0.0.1:0" }
proxy { name = "capped", queue_timeout = 30, negotiation_timeout = 0.5,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", max_conns = 1, servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } }
]]):format(b.a.port, b.b.port), { "-v" })
    local c1 = hold(np.ports.capped)
    local c2 = hold(np.ports.capped)
    np.mark()
    local t0 = h.now()
    local got, how = h.talk(np.ports.capped, "", { keep_open = true, timeout = 10 })
    assert.are.equal("", got)
    assert.are.equal("eof", how)
    assert.is_true(h.now() - t0 < 5, "ended by negotiation_timeout, not queue_timeout")
    h.wait_log(np, "capped: .-end=negotiation timeout")
    h.wait_until(function() return metrics(np):find('netproxy_pool_waiting{proxy="capped"} 0\n', 1, true) end, 5,
                 "the queue left")
    c1:close()
    c2:close()
  end)

  it("--check: max_conns and max_queue counts; not on udp", function()
    local bad = h.write(h.tmpfile("bad.lua"), [[
proxy { name = "x", from = { type = "tcp", port = 1 },
        to = { type = "tcp", max_conns = -1, servers = { { host = "127.0.0.1", port = 2, max_conns = "many" } } } }
proxy { name = "u", from = { type = "udp", port = 1 },
        to = { type = "udp", servers = { { host = "127.0.0.1", port = 2, max_conns = 3 } } } }
]])
    local out, err = h.run({ h.netproxy, "--check", bad })
    local text = out .. err
    assert.matches("max_conns", text)
    assert.matches("servers%[1%]: max_conns", text)
    assert.matches("max_conns: not for udp", text)
  end)
end)
