-- Upstream pools: several servers behind one `to`. The backends are np-peer banner servers
-- that say their name first, so each client knows which one it reached.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"
local now = h.now

local banners = require "spec.support.banners"
local reach, backends, ends, clients = banners.reach, banners.backends, banners.ends, banners.clients

local function count(s, letter)
  return select(2, s:gsub(letter, ""))
end

local function proxy(to, extra)
  return ([[
proxy { name = "pool", from = { type = "tcp", host = "127.0.0.1", port = 0 }, %s
        to = %s }
]]):format(extra or "", to)
end

describe("pools", function()
  after_each(h.stop_all)

  it("round robin spreads clients exactly over three servers (one worker)", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "tcp", servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" } }]])
      :format(b.a.port, b.b.port, b.c.port)))
    assert.are.equal("abcabcabc", clients(np, np.ports.pool, 9))
    assert.matches("%-> 127%.0%.0%.1:" .. b.a.port .. " in=", np.log())
  end)

  it("honours weights 1:3 (smooth: never three of the heavy one before the light one)", function()
    local b = backends(2)
    local np = h.netproxy_start(proxy(([[{ type = "tcp", servers = { "127.0.0.1:%d", { host = "127.0.0.1", port = %d, weight = 3 } } }]])
      :format(b.a.port, b.b.port)))
    local seq = clients(np, np.ports.pool, 12)
    assert.are.equal(3, count(seq, "a"), seq)
    assert.are.equal(9, count(seq, "b"), seq)
    assert.is_nil(seq:find("bbbb"), seq)
  end)

  it("leastconn sends nobody else to a server still holding a slow connection", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "tcp", balance = "leastconn",
      servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" } }]]):format(b.a.port, b.b.port, b.c.port)))
    -- the first client reaches a and stays: a's client is slow
    local held = assert(tcp.connect(np.ports.pool))
    assert.are.equal("a\n", held:receive(2, 5))
    local seq = clients(np, np.ports.pool, 8)
    assert.are.equal(0, count(seq, "a"), seq)
    assert.are.equal(4, count(seq, "b"), seq)
    held:close()
    h.wait_until(function() return ends(np) == 9 end, 5, "the slow one's end")
    -- a is free again: with the fewest (none), ties broken in turn, it is reached again
    assert.truthy(clients(np, np.ports.pool, 3):find("a"))
  end)

  it("source: a client address keeps its server; when one leaves and comes back, only its clients move", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "tcp", balance = "source", fail_timeout = 1,
      servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" } }]]):format(b.a.port, b.b.port, b.c.port)))
    local first = {}
    for i = 1, 24 do first[i] = assert(reach(np.ports.pool, "127.0.0." .. (i + 1))) end
    local spread = table.concat(first)
    assert.is_true(count(spread, "a") > 0 and count(spread, "b") > 0 and count(spread, "c") > 0, spread)
    for i = 1, 24 do assert.are.equal(first[i], reach(np.ports.pool, "127.0.0." .. (i + 1)), "client " .. i) end
    -- b leaves: its clients go elsewhere, everybody else stays
    local b_port = b.b.port
    h.stop(b.b)
    for i = 1, 24 do
      local now = assert(reach(np.ports.pool, "127.0.0." .. (i + 1)))
      if first[i] == "b" then assert.are_not.equal("b", now) else assert.are.equal(first[i], now, "client " .. i) end
    end
    -- b comes back on its port: once its fail_timeout is over, its clients are its again
    local back = h.spawn({ h.peer, "banner", "--listen", "127.0.0.1:" .. b_port, "--text", "b" })
    h.wait_until(function() return h.port_open(b_port) end, 5, "b back")
    h.wait_until(function()
      for i = 1, 24 do
        if reach(np.ports.pool, "127.0.0." .. (i + 1)) ~= first[i] then return false end
      end
      return true
    end, 10, "every client on its first server again")
    h.stop(back)
  end)

  it("fails over past a refusing and a blackholed server: every client is served", function()
    local good = h.peer_server("banner", { "--text", "g" })
    local hole = h.peer_server("blackhole")
    local refused = h.closed_port()
    local np = h.netproxy_start(proxy(([[{ type = "tcp",
      servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" } }]]):format(refused, hole.port, good.port),
      "connect_timeout = 3,"))
    for i = 1, 6 do assert.are.equal("g", reach(np.ports.pool), "client " .. i) end
    -- a connection's line is written once it has ended, which may be after its client has read
    h.wait_log(np, ("%%-> 127%%.0%%.0%%.1:%d failed=127%%.0%%.0%%.1:%d,127%%.0%%.0%%.1:%d in="):format(good.port, refused, hole.port))
    local log = np.log()
    assert.matches("server 127%.0%.0%.1:" .. refused .. " down for 10s", log)
    assert.matches("server 127%.0%.0%.1:" .. hole.port .. " down for 10s", log)
  end)

  it("sends the bytes read ahead by the from connector to the server finally reached", function()
    local echo = h.peer_server("echo")
    local refused = h.closed_port()
    local np = h.netproxy_start(([[
proxy { name = "pool", from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 2,
          probes = { { match = function(b) return b:sub(1, 4) == "PING" or nil end,
                       to = { type = "tcp", servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } } } } }
]]):format(refused, echo.port))
    local c = assert(tcp.connect(np.ports.pool))
    assert.are.equal("PING and more\n", c:exchange("PING and more\n"))
    c:close()
    assert.matches("failed=127%.0%.0%.1:" .. refused, h.wait_log(np, "[^\n]*end=eof"))
  end)

  it("backup servers serve only when every normal server is down", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "tcp",
      servers = { "127.0.0.1:%d", "127.0.0.1:%d", { host = "127.0.0.1", port = %d, backup = true } } }]])
      :format(b.a.port, b.b.port, b.c.port)))
    assert.are.equal("abababab", clients(np, np.ports.pool, 8))
    h.stop(b.a)
    assert.are.equal("bbbb", clients(np, np.ports.pool, 4))
    h.stop(b.b)
    assert.are.equal("cccc", clients(np, np.ports.pool, 4))
  end)

  it("closes the client at once when every server is down, with a log line, counted", function()
    local r1, r2 = h.closed_port(), h.closed_port()
    local np = h.netproxy_start([[
server { stats = "127.0.0.1:0" }
]] .. proxy(([[{ type = "tcp", servers = { "127.0.0.1:%d", "127.0.0.1:%d" } }]]):format(r1, r2)))
    for _ = 1, 3 do
      local c = assert(tcp.connect(np.ports.pool))
      local t0 = now()
      local got, why = c:receive(1, 5)
      c:close()
      assert.are.equal("", got)
      assert.are.equal("eof", why)
      assert.is_true(now() - t0 < 0.5)
    end
    local log = h.wait_log(np, "end=connect failed: no server: every server is down[^\n]*")
    assert.truthy(log)
    assert.matches("%-> none failed=127%.0%.0%.1:%d+,127%.0%.0%.1:%d+ in=0", np.log())
    local body = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
    assert.matches('netproxy_connections_errors_total{proxy="pool"} 3', body, 1, true)
    assert.matches(('netproxy_server_up{proxy="pool",server="127.0.0.1:%d"} 0'):format(r1), body, 1, true)
    assert.matches(('netproxy_server_failures_total{proxy="pool",server="127.0.0.1:%d"} 1'):format(r2), body, 1, true)
  end)

  it("shows each server in /metrics and core.stats(): up, active, connections, failures", function()
    local b = backends(2)
    local refused = h.closed_port()
    local np = h.netproxy_start([[
server { stats = "127.0.0.1:0" }
]] .. proxy(([[{ type = "tcp", servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" } }]])
      :format(b.a.port, b.b.port, refused), [[
        accept = function(conn)
          local s = require("netproxy.core").stats().servers.pool
          for name, v in pairs(s) do
            conn:log("notice", "stats %s up=%s active=%d connections=%d failures=%d", name, tostring(v.up), v.active, v.connections, v.failures)
          end
          return true
        end,]]))
    assert.are.equal("ab", clients(np, np.ports.pool, 2))
    local held = assert(tcp.connect(np.ports.pool))    -- refused, then a: held open
    assert.are.equal("a\n", held:receive(2, 5))
    local body = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
    local function series(name, port) return ('%s{proxy="pool",server="127.0.0.1:%d"}'):format(name, port) end
    for _, want in ipairs({
      series("netproxy_server_up", b.a.port) .. " 1",
      series("netproxy_server_up", refused) .. " 0",
      series("netproxy_server_active", b.a.port) .. " 1",
      series("netproxy_server_active", b.b.port) .. " 0",
      series("netproxy_server_connections_total", b.a.port) .. " 2",
      series("netproxy_server_connections_total", b.b.port) .. " 1",
      series("netproxy_server_connections_total", refused) .. " 0",
      series("netproxy_server_failures_total", refused) .. " 1",
      series("netproxy_server_failures_total", b.a.port) .. " 0",
      "# TYPE netproxy_server_connections_total counter",
    }) do
      assert.matches(want, body, 1, true)
    end
    reach(np.ports.pool)
    held:close()
    local log = np.log()
    assert.matches(("stats 127.0.0.1:%d up=true active=1 connections=2 failures=0"):format(b.a.port), log, 1, true)
    assert.matches(("stats 127.0.0.1:%d up=false active=0 connections=0 failures=1"):format(refused), log, 1, true)
  end)

  it("a Lua balance function sees each server's state and the client", function()
    local b = backends(3)
    local np = h.netproxy_start(proxy(([[{ type = "tcp", servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" },
      -- the last octet of the client's address picks the server; a server down is passed over
      balance = function(servers, conn)
        local n = tonumber(conn.client:match("^127%%.0%%.0%%.(%%d+):"))
        for k = 0, #servers - 1 do
          local s = servers[(n + k - 1) %% #servers + 1]
          if s.up then return s end
        end
      end }]]):format(b.a.port, b.b.port, b.c.port)))
    assert.are.equal("a", reach(np.ports.pool, "127.0.0.1"))
    assert.are.equal("b", reach(np.ports.pool, "127.0.0.2"))
    assert.are.equal("c", reach(np.ports.pool, "127.0.0.3"))
    assert.are.equal("a", reach(np.ports.pool, "127.0.0.4"))
    h.stop(b.b)
    assert.are.equal("c", reach(np.ports.pool, "127.0.0.2"))   -- b failed: retried, up = false
    assert.are.equal("c", reach(np.ports.pool, "127.0.0.5"))   -- b down: passed over at once
  end)
end)

describe("pools: --check", function()
  it("names file:line for an empty list, a bad entry, a weight out of range, an unknown balance", function()
    local path = h.write(h.tmpfile("bad.lua"), [[
proxy { name = "a", from = { type = "tcp", port = 1 }, to = { type = "tcp", servers = {} } }
proxy { name = "b", from = { type = "tcp", port = 2 },
        to = { type = "tcp", servers = { "127.0.0.1:1", "nohostport", { host = "127.0.0.1", port = 3, weight = 300 } },
               balance = "fastest" } }
proxy { name = "c", from = { type = "tcp", port = 3 }, to = { type = "tcp", host = "x", servers = { "127.0.0.1:1" } } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.matches(":1: proxy 'a': to: servers: empty list", err, 1, true)
    assert.matches(":2: proxy 'b': to: servers[2]: 'nohostport': want HOST:PORT", err, 1, true)
    assert.matches(":2: proxy 'b': to: servers[3]: weight 300 out of range (want 1..256)", err, 1, true)
    assert.matches(":2: proxy 'b': to: balance: unknown 'fastest'", err, 1, true)
    assert.matches(":5: proxy 'c': to: host and servers: give one or the other", err, 1, true)
  end)
end)

describe("pools: active checks", function()
  after_each(h.stop_all)

  -- the end lines of the connections that came after position `from` of the log
  local function served(log, from)
    local lines = {}
    for line in log:sub(from):gmatch("[^\n]*end=[^\n]*") do lines[#lines + 1] = line end
    return lines
  end

  it("one checker for two workers: a killed server gets no more clients from either, and is back after rise", function()
    local b = backends(3)
    local b_port = b.b.port
    -- reuseport: each worker its own socket, so the kernel spreads clients over both (a
    -- fixed port, tried until one is free: copies of a port 0 listener would each get a port
    -- of their own)
    local config = [[
server { reuseport = true }
]] .. proxy(([[{ type = "tcp", max_fails = 0,    -- passive health off: only the checks mark down
      servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" },
      check = { interval = 0.2, timeout = 0.5, fall = 2, rise = 2, expect = "^%%a\n" } }]])
      :format(b.a.port, b.b.port, b.c.port))
    local np = h.on_free_port("netproxy with reuseport", function(port)
      return h.netproxy_start((config:gsub("port = 0", "port = " .. port)), { "-w", "2" })
    end)
    h.wait_workers(np.pid, 2)
    h.stop(b.b)
    -- within interval x fall (and a little for the loop): down, said by one process only
    local t0 = now()
    h.wait_log(np, "server 127%.0%.0%.1:" .. b_port .. " down: check failed 2 times", 0.2 * 2 + 1)
    assert.is_true(now() - t0 < 1.4)
    local mark = #np.log()
    local pids = {}
    for i = 1, 24 do
      local name = assert(reach(np.ports.pool))
      assert.are_not.equal("b", name, "client " .. i)
    end
    h.wait_until(function() return #served(np.log(), mark) >= 24 end, 5, "24 end lines")
    for _, line in ipairs(served(np.log(), mark)) do
      assert.is_nil(line:find("failed=", 1, true), line)      -- nobody even tried b
      pids[line:match("%[(%d+)%]")] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.are.equal(2, n, "clients served by both workers:\n" .. np.log())
    local downs = select(2, np.log():gsub("server 127%.0%.0%.1:" .. b_port .. " down", ""))
    assert.are.equal(1, downs)
    -- back: up after rise checks, and clients reach it again
    local back = h.spawn({ h.peer, "banner", "--listen", "127.0.0.1:" .. b_port, "--text", "b" })
    h.wait_log(np, "server 127%.0%.0%.1:" .. b_port .. " up: check passed 2 times", 0.2 * 2 + 2)
    local seen = {}
    for _ = 1, 12 do seen[#seen + 1] = assert(reach(np.ports.pool)) end
    assert.truthy(table.concat(seen):find("b"), table.concat(seen))
    h.stop(back)
  end)

  it("a check function with a cosocket decides", function()
    local b = backends(2)
    local np = h.netproxy_start(proxy(([[{ type = "tcp", max_fails = 0,
      servers = { "127.0.0.1:%d", "127.0.0.1:%d" },
      check = { interval = 0.2, timeout = 0.5, fall = 1, rise = 1,
                fn = function(sock, server)
                  local banner = sock:read(10, 0.5)
                  return banner == "a\n", "banner " .. tostring(banner) .. " from " .. server.name
                end } }]]):format(b.a.port, b.b.port)))
    h.wait_log(np, "server 127%.0%.0%.1:" .. b.b.port .. " down: check failed 1 times: banner b\n from", 3)
    assert.are.equal("aaaa", clients(np, np.ports.pool, 4))
  end)
end)

describe("pools: an HTTP-style check (send, expect)", function()
  after_each(h.stop_all)

  it("keeps the servers whose answer matches, marks the others down", function()
    local ok = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\\r\\n\\r\\nok" })
    local sick = h.peer_server("reply", { "--text", "HTTP/1.0 503 Busy\\r\\n\\r\\n" })
    local np = h.netproxy_start(proxy(([[{ type = "tcp", max_fails = 0,
      servers = { "127.0.0.1:%d", "127.0.0.1:%d" },
      check = { interval = 0.2, timeout = 0.5, fall = 1, rise = 1,
                send = "GET /health HTTP/1.0\r\n\r\n", expect = "^HTTP/1%%.[01] 200" } }]]):format(ok.port, sick.port)))
    h.wait_log(np, "server 127%.0%.0%.1:" .. sick.port .. " down: check failed 1 times: expected", 3)
    assert.is_nil(np.log():find("server 127.0.0.1:" .. ok.port .. " down", 1, true))
  end)
end)
