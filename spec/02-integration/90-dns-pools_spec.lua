-- Pools from DNS (issue 29): servers = { resolve = "NAME:PORT" } and { srv = "_app._tcp.NAME" }
-- against a real dnsmasq whose records change (its hosts file rewritten, SIGHUP) while a client
-- loop runs: every connection reaches a server, new servers get clients, a removed one drains
-- (a connection open to it goes on), a failed lookup keeps the set. The backends are np-peer
-- banner servers (their name, then echo) on addresses of 127/8.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"
local now = h.now

-- A banner server named name on host:port (port 0: any); .port
local function banner(name, host, port)
  if port == 0 then return h.peer_server("banner", { "--text", name }, host) end
  local portfile = h.tmpfile("port")
  local p = h.spawn({ h.peer, "banner", "--listen", host .. ":" .. port, "--text", name, "--port-file", portfile })
  p.port = tonumber(h.wait_until(function() return h.read(portfile) or h.read(p.rcfile) and "0" end, 5, "the peer's port"))
  return p.port ~= 0 and p or nil
end

-- Banner servers b, c, d on 127.0.0.2, .3 and .4, one port for all (a resolve names one port):
-- the port b got, taken on the other addresses too (another one if it is busy there).
local function trio()
  for _ = 1, 5 do
    local b = banner("b", "127.0.0.2", 0)
    local c = banner("c", "127.0.0.3", b.port)
    local d = c and banner("d", "127.0.0.4", b.port)
    if d then return b, c, d end
    for _, x in ipairs({ b, c }) do h.stop(x) end
  end
  error("no port free on 127.0.0.2, .3 and .4 in 5 tries")
end

-- One client: the banner of the server it reached, or an error (no failed connection).
local function reach(port)
  local c = assert(tcp.connect(port))
  local got, why = c:receive(2, 5)
  c:close()
  assert(#got == 2, "a connection failed: " .. tostring(why))
  return got:sub(1, 1)
end

-- Clients one after the other until until(seen) says so (seen: letter -> count), at most
-- `timeout` seconds; returns seen.
local function client_loop(port, until_fn, timeout, what)
  local seen, deadline = {}, now() + timeout
  repeat
    local l = reach(port)
    seen[l] = (seen[l] or 0) + 1
    if until_fn(seen) then return seen end
  until now() > deadline
  error("client loop: not " .. what .. " within " .. timeout .. " s")
end

local function metrics(np)
  return h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
end

local function series(name, server)
  return ('%s{proxy="dns",server="%s"}'):format(name, server)
end

describe("pools from DNS", function()
  after_each(h.stop_all)
  local np    -- the netproxy of the reload test (its config names the port it bound)

  it("resolve: records that change under load add and drain servers, a failed lookup keeps them", function()
    local b, c, d = trio()
    local port = b.port
    local hosts = h.write(h.tmpfile("hosts"), "127.0.0.2 app.internal\n127.0.0.3 app.internal\n")
    local dns = h.dnsmasq({ "--addn-hosts=" .. hosts, "--local-ttl=1" })
    local np = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" }, stats = "127.0.0.1:0" }
proxy { name = "dns", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { resolve = "app.internal:%d" } } }
]]):format(dns.port, port), { "-w", "2" })
    local B, C, D = "127.0.0.2:" .. port, "127.0.0.3:" .. port, "127.0.0.4:" .. port
    h.wait_log(np, "dns: dns resolve app%.internal: 2 servers, added " .. B:gsub("%.", "%%.") .. "," .. C:gsub("%.", "%%."))
    local p = np.ports.dns
    client_loop(p, function(s) return s.b and s.c end, 10, "b and c")

    -- a connection held open on b, the server about to leave
    local held
    for _ = 1, 50 do
      held = assert(tcp.connect(p))
      local got = held:receive(2, 5)
      if got == "b\n" then break end
      held:close()
      held = nil
    end
    assert.truthy(held, "no connection reached b")

    -- b leaves, d comes: the clients go on the whole time
    h.write(hosts, "127.0.0.3 app.internal\n127.0.0.4 app.internal\n")
    h.run({ "kill", "-HUP", tostring(dns.pid) })
    local seen = client_loop(p, function(s)
      return s.d and np.log():find("removed %(draining%) " .. B:gsub("%.", "%%."))
    end, 15, "d reached and b removed")
    assert.truthy(np.log():find("dns: dns resolve app%.internal: 2 servers, added " .. D:gsub("%.", "%%.")))
    -- from the removal on, b gets no client (both workers: the set is shared)
    seen = client_loop(p, function(s) return (s.c or 0) + (s.d or 0) + (s.b or 0) >= 20 end, 10, "20 clients")
    assert.is_nil(seen.b)
    assert.truthy(seen.c and seen.d)
    -- the connection open to b goes on
    assert.are.equal("ping\n", held:exchange("ping\n", "ping\n", 5))
    local m = metrics(np)
    assert.matches(series("netproxy_server_active", B) .. " 1", m, 1, true)
    assert.matches(series("netproxy_server_connections_total", D) .. " %d+", m)
    assert.matches(series("netproxy_server_up", D) .. " 1", m, 1, true)

    -- DNS down: the lookups fail, logged; the servers stay and take clients
    h.stop(dns)
    h.wait_log(np, "dns: dns resolve app%.internal: lookup failed: [^\n]*; the last servers stay")
    seen = client_loop(p, function(s) return (s.c or 0) + (s.d or 0) + (s.b or 0) >= 10 end, 10, "10 clients")
    assert.is_nil(seen.b)
    assert.truthy(seen.c and seen.d)
    assert.are.equal("pong\n", held:exchange("pong\n", "pong\n", 5))
    held:close()
    h.stop(np)
    for _, x in ipairs({ b, c, d }) do h.stop(x) end
  end)

  it("a reload keeps the last answer for the same name, and a reload to a list drops it", function()
    local b, c, d = trio()
    local port = b.port
    local dns = h.dnsmasq({ "--host-record=app.internal,127.0.0.2", "--host-record=app.internal,127.0.0.3" })
    local function config(servers)
      return ([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "dns", from = { type = "tcp", host = "127.0.0.1", port = %d },
        to = { type = "tcp", servers = %s } }
]]):format(dns.port, np and np.ports.dns or 0, servers)
    end
    np = h.netproxy_start(config(('{ resolve = "app.internal:%d" }'):format(port)))
    h.wait_log(np, "dns: dns resolve app%.internal: 2 servers, added")
    local p = np.ports.dns
    client_loop(p, function(s) return s.b and s.c end, 10, "b and c")
    -- the same name again, DNS gone: the servers of the last answer take the clients at once
    h.stop(dns)
    np.mark()
    h.write(np.config, config(('{ resolve = "app.internal:%d" }'):format(port)))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reloaded")
    local seen = client_loop(p, function(s) return s.b and s.c end, 10, "b and c after the reload")
    assert.is_nil(seen.d)
    -- a list instead: only its server, not the DNS answer's
    np.mark()
    h.write(np.config, config(('{ "127.0.0.4:%d" }'):format(port)))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reloaded")
    seen = client_loop(p, function(s) return (s.d or 0) >= 10 end, 10, "10 clients")
    assert.are.same({ d = 10 }, seen)
    h.stop(np)
    np = nil
    for _, x in ipairs({ b, c, d }) do h.stop(x) end
  end)

  it("resolve: AAAA records are servers too", function()
    local v = h.peer_server("banner", { "--text", "v" }, "[::1]")
    local dns = h.dnsmasq({ "--host-record=six.internal,::1" })
    local six = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "dns", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { resolve = "six.internal:%d" } } }
]]):format(dns.port, v.port))
    h.wait_log(six, "dns: dns resolve six%.internal: 1 server, added %[::1%]:" .. v.port)
    assert.are.equal("v", reach(six.ports.dns))
    h.wait_log(six, "%-> %[::1%]:" .. v.port .. " ")
    h.stop(six)
    h.stop(dns)
    h.stop(v)
  end)

  it("asks again at the answer's TTL, within resolve_min and resolve_max", function()
    local long = h.dnsmasq({ "--host-record=app.internal,127.0.0.2", "--local-ttl=600" })
    local short = h.dnsmasq({ "--host-record=app.internal,127.0.0.2", "--local-ttl=1" })
    local function config(ns, bounds)
      return ([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "dns", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { resolve = "app.internal:80" }, %s } }
]]):format(ns, bounds)
    end
    local np1 = h.netproxy_start(config(long.port, "resolve_max = 2"))
    h.wait_log(np1, "dns: dns resolve app%.internal: 1 server, added 127%.0%.0%.2:80, next lookup in 2s")
    h.stop(np1)
    local np2 = h.netproxy_start(config(short.port, "resolve_min = 3"))
    h.wait_log(np2, "dns: dns resolve app%.internal: 1 server, added 127%.0%.0%.2:80, next lookup in 3s")
    h.stop(np2)
    local np3 = h.netproxy_start(config(long.port, "resolve_min = 0.5"))
    h.wait_log(np3, "dns: dns resolve app%.internal: 1 server, added 127%.0%.0%.2:80, next lookup in 300s")
    h.stop(np3)
    h.stop(long)
    h.stop(short)
  end)

  it("srv: targets and ports from the records, weights kept, the higher priority a backup tier", function()
    local x, y, z = banner("x", "127.0.0.1", 0), banner("y", "127.0.0.1", 0), banner("z", "127.0.0.1", 0)
    local dns = h.dnsmasq({
      ("--srv-host=_app._tcp.internal,x.internal,%d,10,3"):format(x.port),
      ("--srv-host=_app._tcp.internal,y.internal,%d,10,1"):format(y.port),
      ("--srv-host=_app._tcp.internal,z.internal,%d,20,1"):format(z.port),
      "--host-record=x.internal,127.0.0.1", "--host-record=y.internal,127.0.0.1",
      "--host-record=z.internal,127.0.0.1", "--local-ttl=1" })
    local np = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "dns", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { srv = "_app._tcp.internal" }, resolve_min = 0.5, resolve_max = 30 } }
]]):format(dns.port))
    h.wait_log(np, "dns: dns srv _app%._tcp%.internal: 3 servers %(1 backup%), added ")
    local p = np.ports.dns
    -- smooth round robin over the lowest priority, weights 3 and 1: exact with one worker
    local seen = client_loop(p, function(s) return (s.x or 0) + (s.y or 0) + (s.z or 0) >= 40 end, 20, "40 clients")
    assert.are.same({ x = 30, y = 10 }, seen)
    -- the normal tier gone, the backup takes the clients (each fails over within its connect)
    h.stop(x)
    h.stop(y)
    seen = client_loop(p, function(s) return (s.z or 0) >= 5 end, 10, "z reached 5 times")
    assert.is_nil(seen.x)
    assert.is_nil(seen.y)
    h.stop(np)
    h.stop(dns)
    h.stop(z)
  end)
end)

describe("pools from DNS over TLS", function()
  after_each(h.stop_all)

  it("resolve: the DNS name is each server's SNI and the name its certificate is verified against", function()
    -- a.test's certificate names a.test and 127.0.0.1; the server is on 127.0.0.2: verified by
    -- its address it would fail
    local pki = h.pki()
    local d = h.tmp() .. "/www"
    os.execute("mkdir -p " .. d .. " && echo 'backend a' > " .. d .. "/who.txt")
    local tls = h.on_free_port("s_server", function(port)
      return h.spawn({ "sh", "-c", ("cd %s && exec openssl s_server -quiet -WWW -accept 127.0.0.2:%d -cert %s/a.test.pem -key %s/a.test.key")
                                   :format(d, port, pki, pki) })
    end)
    local dns = h.dnsmasq({ "--host-record=a.test,127.0.0.2" })
    local np = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "dns", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", servers = { resolve = "a.test:%d" }, ca = %q } }
]]):format(dns.port, tls.port, pki .. "/ca.pem"))
    h.wait_log(np, "dns: dns resolve a%.test: 1 server, added 127%.0%.0%.2:" .. tls.port)
    local got = h.talk(np.ports.dns, "GET /who.txt HTTP/1.0\r\n\r\n", { timeout = 5 })
    assert.matches("backend a", got, 1, true)
    h.wait_log(np, "dns: 127%.0%.0%.1:%d+ %-> 127%.0%.0%.2:" .. tls.port .. " ")
    h.stop(np)
    h.stop(dns)
    h.stop(tls)
  end)
end)

describe("pools from DNS: --check", function()
  it("names file:line for a bad name, a bad srv form, both forms, and bounds", function()
    local path = h.write(h.tmpfile("bad.lua"), [[
proxy { name = "a", from = { type = "tcp", port = 1 }, to = { type = "tcp", servers = { resolve = "app.internal" } } }
proxy { name = "b", from = { type = "tcp", port = 2 }, to = { type = "tcp", servers = { srv = "app.internal" } } }
proxy { name = "c", from = { type = "tcp", port = 3 }, to = { type = "tcp", servers = { resolve = "a..b:80" } } }
proxy { name = "d", from = { type = "tcp", port = 4 },
        to = { type = "tcp", servers = { resolve = "a:1", srv = "_a._tcp.b" }, resolve_min = 10, resolve_max = 5 } }
proxy { name = "e", from = { type = "unix", path = "/tmp/x" }, to = { type = "unix", servers = { resolve = "a:1" } } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.matches(":1: proxy 'a': to: servers: resolve: 'app.internal': want HOST:PORT", err, 1, true)
    assert.matches(":2: proxy 'b': to: servers: srv: 'app.internal' is not \"_service._proto.NAME\"", err, 1, true)
    assert.matches(":3: proxy 'c': to: servers: resolve: 'a..b' is not a DNS name", err, 1, true)
    assert.matches(":4: proxy 'd': to: servers: resolve or srv, not both", err, 1, true)
    assert.matches(":4: proxy 'd': to: resolve_min (10) is above resolve_max (5)", err, 1, true)
    assert.matches(":6: proxy 'e': to: servers: resolve and srv want a connector with a host and a port", err, 1, true)
  end)
end)
