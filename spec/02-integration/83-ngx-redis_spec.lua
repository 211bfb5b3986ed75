-- OpenResty's client libraries as Debian installs them (lua-nginx-redis: require "nginx.redis",
-- lua-nginx-memcached: "nginx.memcached"), unchanged, over netproxy's cosockets through
-- netproxy.ngx, against a real redis-server and memcached; idle upstream connections kept in
-- each worker's pool (sockpool.c) and never handed out once closed (issue 29).
local h = require "spec.helpers"

local function redis_server()
  return h.on_free_port("redis-server", function(port)
    return h.spawn({ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no" })
  end)
end

local function redis_cli(redis, ...)
  local out = h.run({ "redis-cli", "-p", tostring(redis.port), ... })
  return out
end

-- The clients redis-server has, not counting the redis-cli that asks.
local function redis_clients(redis)
  local n = 0
  for line in redis_cli(redis, "CLIENT", "LIST"):gmatch("[^\n]+") do
    if not line:find("cmd=client", 1, true) then n = n + 1 end
  end
  return n
end

-- Waits until redis has n clients (a close reaches it a moment later).
local function redis_has(redis, n)
  h.wait_until(function() return redis_clients(redis) == n end, 5, n .. " redis clients")
end

-- examples/cluster-ban.lua in front of an echo server, talking to redis, on a port of its own.
local function cluster_ban(redis, echo)
  local config = h.read(h.root .. "/examples/cluster-ban.lua")
      :gsub('"127.0.0.1", 6379', '"127.0.0.1", ' .. redis.port)
      :gsub("port = 9876", "port = " .. echo.port)
      :gsub("port = 6791", "port = 0")
  return h.netproxy_start(config)
end

describe("nginx.redis (lua-resty-redis) over netproxy.ngx", function()
  after_each(h.stop_all)

  it("examples/cluster-ban.lua: two instances share one counter per client and one ban list; each keeps one redis connection alive", function()
    local redis, echo = redis_server(), h.peer_server("echo")
    local a, b = cluster_ban(redis, echo), cluster_ban(redis, echo)
    local pa, pb = a.ports.guarded, b.ports.guarded
    for i = 1, 4 do
      local out = h.talk(i % 2 == 1 and pa or pb, "hi\n", { want = "hi\n", timeout = 5 })
      assert.equal("hi\n", out)
    end
    -- one counter for the cluster: 1 and 3 on the first instance, 2 and 4 on the second
    h.wait_log(a, "127%.0%.0%.1 connection 3 %(redis connection reused 1 times%)")
    h.wait_log(b, "127%.0%.0%.1 connection 4 %(redis connection reused 1 times%)")
    assert.truthy(a.log():find("connection 1 (redis connection reused 0 times)", 1, true))
    assert.truthy(b.log():find("connection 2 (redis connection reused 0 times)", 1, true))
    redis_has(redis, 2)
    -- 20 more: the same two connections, reused
    for i = 1, 20 do
      assert.equal("hi\n", (h.talk(i % 2 == 1 and pa or pb, "hi\n", { want = "hi\n", timeout = 5 })))
    end
    h.wait_log(b, "connection 24 %(redis connection reused 11 times%)")
    redis_has(redis, 2)
    -- banned once, refused by both
    assert.equal("1\n", redis_cli(redis, "SADD", "ban", "127.0.0.1"))
    a.mark()
    b.mark()
    for _, port in ipairs({ pa, pb }) do
      local out, how = h.talk(port, "", { timeout = 5 })
      assert.equal("", out)
      assert.equal("eof", how)
    end
    h.wait_log(a, "end=refused: banned cluster%-wide")
    h.wait_log(b, "end=refused: banned cluster%-wide")
  end)

  -- a service that INCRs a key through nginx.redis and answers the count and the reuse count
  local COUNTER = [[
local ngx = require "netproxy.ngx"
local redis = require "nginx.redis"
proxy { name = "counter", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(c)
    local red = redis:new()
    red:set_timeout(2000)
    assert(red:connect("127.0.0.1", REDIS))
    local n = assert(red:incr("n"))
    local reused = red:get_reused_times()
    assert(red:set_keepalive(IDLE, 4))
    c:write(("n=%d reused=%d\n"):format(n, reused))
  end } }
]]

  local function counter(redis, idle)
    return h.netproxy_start((COUNTER:gsub("REDIS", redis.port):gsub("IDLE", idle)))
  end

  local function ask(np)
    local out = h.talk(np.ports.counter, "", { want = "\n", timeout = 5 })
    return out
  end

  it("never hands out an idle connection that redis closed: the next one is new and works", function()
    local redis = redis_server()
    local np = counter(redis, 0)
    assert.equal("n=1 reused=0\n", ask(np))
    assert.equal("n=2 reused=1\n", ask(np))
    redis_has(redis, 1)
    redis_cli(redis, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    -- asked at once: the pool either saw the close already or sees it when asked
    assert.equal("n=3 reused=0\n", ask(np))
    assert.equal("n=4 reused=1\n", ask(np))
    redis_has(redis, 1)
    assert.falsy(np.log():find("lua error", 1, true))
  end)

  it("closes an idle connection when its idle time is over (setkeepalive's timeout, in ms)", function()
    local redis = redis_server()
    local np = counter(redis, 300)
    assert.equal("n=1 reused=0\n", ask(np))
    redis_has(redis, 1)
    h.wait_until(function() return redis_clients(redis) == 0 end, 5, "the idle connection to close")
    assert.equal("n=2 reused=0\n", ask(np))
  end)
  it("works in timers: each run is a task of its own, and the one kept-alive connection passes from run to run", function()
    local redis = redis_server()
    local np = h.netproxy_start(([[
local ngx = require "netproxy.ngx"
local redis = require "nginx.redis"
server { on_start = function()
  ngx.timer.every(0.02, function(premature)
    local red = redis:new()
    assert(red:connect("127.0.0.1", %d))
    local n = assert(red:incr("ticks"))
    if n %% 5 == 0 then ngx.log(ngx.NOTICE, "tick ", n, " reused ", red:get_reused_times()) end
    assert(red:set_keepalive(0, 1))
  end)
end }
proxy { name = "idle", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = 1 } }
]]):format(redis.port))
    h.wait_log(np, "tick 10 reused 9")
    redis_has(redis, 1)
  end)
end)

describe("netproxy.ngx", function()
  after_each(h.stop_all)

  it("core.connect { pool = name } with sock:setkeepalive: reused while healthy, the pool bounded", function()
    local redis = redis_server()
    local np = h.netproxy_start(([[
local core = require "netproxy.core"
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(c)
    local n = tonumber(c:read("*l"))
    local socks = {}
    for i = 1, n do      -- n at once: only the pool's size of them stay idle
      socks[i] = assert(core.connect("127.0.0.1", %d, { pool = "r" }))
      assert(socks[i]:write("PING\r\n"))
      assert(socks[i]:read() == "+PONG\r\n")
    end
    local reused = {}
    for i = 1, n do
      reused[i] = socks[i]:reusedtimes()
      assert(socks[i]:setkeepalive(0, 2))
    end
    c:write(table.concat(reused, ",") .. " pooled=" .. core.pooled("r") .. "\n")
  end } }
]]):format(redis.port))
    local function ask(n) return (h.talk(np.ports.p, n .. "\n", { want = "\n", timeout = 5 })) end
    assert.equal("0 pooled=1\n", ask(1))
    assert.equal("1 pooled=1\n", ask(1))
    assert.equal("2,0,0 pooled=2\n", ask(3))
    redis_has(redis, 2)
    -- the most recently pooled first
    assert.equal("1,1 pooled=2\n", ask(2))
  end)

  it("offers OpenResty's names (receive patterns, receiveuntil, send of tables, log, dicts, timers, digests) and refuses the others by name", function()
    local redis, echo = redis_server(), h.peer_server("echo")
    local np = h.netproxy_start(([[
local ngx = require "netproxy.ngx"
server { shared = { d = "64k" } }
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(c)
    local out = {}
    local function say(...) out[#out + 1] = table.concat({ ... }, " ") end
    local sock = ngx.socket.tcp()
    sock:settimeouts(1000, 1000, 1000)
    assert(sock:connect("127.0.0.1", %d))
    assert(sock:send({ "a\r\n", { "bcd", 42 }, "--END--tail--END--", "x" }) == 27)
    say(sock:receive())
    say(sock:receive(5))
    local until_end = sock:receiveuntil("--END--")
    say(until_end())
    say(until_end(2), until_end(2), tostring(until_end(2)))
    say(sock:receive(1))
    say((select(2, sock:receive(1))))         -- timeout
    sock:close()
    say((select(2, sock:receive())))          -- closed
    local r = ngx.socket.tcp()
    assert(r:connect("127.0.0.1", %d))
    r:send("QUIT\r\n")
    say((r:receive("*a"):gsub("\r\n", "|")))
    local d = ngx.shared.d
    d:set("k", 1)
    say((d:incr("k", 2)), tostring((d:add("k", 0))), tostring(ngx.shared.nope))
    ngx.timer.at(0.01, function(premature, v) d:set("timer", v .. tostring(premature)) end, "ran-")
    ngx.sleep(0.1)
    say(d:get("timer"), ngx.worker.id(), ngx.worker.count())
    say(ngx.md5("abc"), #ngx.sha1_bin("abc"), ngx.encode_base64("hello"), ngx.decode_base64("aGVsbG8="))
    say(ngx.escape_uri("a b/c"), ngx.unescape_uri("a%%20b"), tostring(ngx.null), type(ngx.now()))
    for _, f in ipairs({ function() return ngx.var.x end, function() return ngx.req end,
                         function() return ngx.socket.tcp():bind() end }) do
      say((select(2, pcall(f)):gsub("^.-:%%d+: ", "")))
    end
    ngx.log(ngx.WARN, "from ngx.log ", 1, " ", true)
    c:write(table.concat(out, "\n") .. "\n")
  end } }
]]):format(echo.port, redis.port))
    local out = h.talk(np.ports.p, "", { timeout = 5 })
    assert.equal(table.concat({
      "a", "bcd42", "", "ta il nil", "x", "timeout", "closed", "+OK|",
      "3 false nil", "ran-false 0 1",
      "900150983cd24fb0d6963f7d28e17f72 20 aGVsbG8= hello",
      "a%20b%2Fc a b userdata: NULL number",
      "ngx.var is not available in netproxy",
      "ngx.req is not available in netproxy",
      "ngx.socket.tcp:bind is not available in netproxy",
    }, "\n") .. "\n", out)
    h.wait_log(np, "warning %[%d+%] #%d+ from ngx%.log 1 true")
  end)
  it("keeps a TLS connection's session in the pool: reused, sslhandshake answers at once, bytes still go through TLS; udp() sends and receives datagrams", function()
    local pki, echo, uecho = h.pki(), h.peer_server("echo"), h.udp_echo_server()
    local np = h.netproxy_start(([[
local ngx = require "netproxy.ngx"
proxy { name = "tls", from = { type = "ssl", host = "127.0.0.1", port = 0, cert = %q, key = %q },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(c)
    local tls_port = tonumber(c:read("*l"))
    local sock = ngx.socket.tcp()
    sock:settimeout(2000)
    assert(sock:connect("127.0.0.1", tls_port, { pool = "tls" }))
    local reused = sock:getreusedtimes()
    local ok, err = sock:sslhandshake(nil, "localhost", false)
    assert(ok, err)
    assert(sock:send("line " .. reused .. "\n"))
    local line = assert(sock:receive())
    assert(sock:setkeepalive())
    local u = ngx.socket.udp()
    u:settimeout(2000)
    assert(u:setpeername("127.0.0.1", %d))
    assert(u:send({ "da", "tagram" }))
    local d = assert(u:receive())
    u:close()
    c:write(line .. " " .. d .. "\n")
  end } }
]]):format(pki .. "/localhost.pem", pki .. "/localhost.key", echo.port, uecho.port))
    local function ask() return (h.talk(np.ports.p, np.ports.tls .. "\n", { want = "\n", timeout = 5 })) end
    assert.equal("line 0 datagram\n", ask())
    assert.equal("line 1 datagram\n", ask())
    assert.equal("line 2 datagram\n", ask())
    -- one TLS connection, still open: none has ended (each would have its log line)
    assert.equal("line 3 datagram\n", ask())
    assert.falsy(np.log():find("%] #%d+ tls: "))
  end)
end)

describe("nginx.memcached (lua-resty-memcached) over netproxy.ngx", function()
  after_each(h.stop_all)

  it("sets, gets, increments and deletes against memcached, its connection kept alive", function()
    local root = h.lines("id -u")() == "0"
    local mc = h.on_free_port("memcached", function(port)
      local argv = { "memcached", "-l", "127.0.0.1", "-p", tostring(port), "-U", "0" }
      if root then argv[#argv + 1] = "-u"; argv[#argv + 1] = "nobody" end
      return h.spawn(argv)
    end)
    local np = h.netproxy_start(([[
local ngx = require "netproxy.ngx"
local memcached = require "nginx.memcached"
proxy { name = "mc", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(c)
    local m = assert(memcached:new())
    m:set_timeout(2000)
    assert(m:connect("127.0.0.1", %d))
    local reused = m:get_reused_times()
    assert(m:set("a key", "v1", 60))
    local v = m:get("a key")
    assert(m:set("n", 5))
    local n = m:incr("n", 2)
    m:delete("a key")
    local gone, err = m:get("a key")
    assert(m:set_keepalive(10000, 4))
    c:write(("%%s %%s %%s %%s reused=%%d\n"):format(v, n, tostring(gone), tostring(err), reused))
  end } }
]]):format(mc.port))
    local function ask() return (h.talk(np.ports.mc, "", { want = "\n", timeout = 5 })) end
    assert.equal("v1 7 nil nil reused=0\n", ask())
    assert.equal("v1 7 nil nil reused=1\n", ask())
  end)
end)
