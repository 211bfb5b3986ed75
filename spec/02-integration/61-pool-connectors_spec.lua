-- Pools on every `to` that takes an address: ssl, unix (servers are paths), and the proxy
-- connectors connect, connect_ssl and socks5 (servers are the proxies; host and port stay
-- the target), and a custom connector. Each pool has a dead first server, so a client
-- served proves both the pool and its failover through that connector.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

local function banner(port)
  local c = assert(tcp.connect(port))
  local got = c:receive(2, 5)
  c:close()
  return got
end

describe("pools on other connectors", function()
  after_each(h.stop_all)

  it("ssl: a pool of TLS servers, each verified", function()
    local a, b = h.peer_server("banner", { "--text", "a" }), h.peer_server("banner", { "--text", "b" })
    local pki = h.pki()
    local dead = h.closed_port()
    local tls = h.netproxy_start(([[
local pki = %q
proxy { name = "ta", from = { type = "ssl", host = "127.0.0.1", port = 0, cert = pki .. "/localhost.pem", key = pki .. "/localhost.key" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "tb", from = { type = "ssl", host = "127.0.0.1", port = 0, cert = pki .. "/localhost.pem", key = pki .. "/localhost.key" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(pki, a.port, b.port))
    local np = h.netproxy_start(([[
proxy { name = "pool", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", ca = %q, verify_name = "localhost",
               servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" } } }
]]):format(pki .. "/ca.pem", dead, tls.ports.ta, tls.ports.tb))
    local seen = {}
    for i = 1, 4 do seen[i] = banner(np.ports.pool):sub(1, 1) end
    table.sort(seen)
    assert.are.equal("aabb", table.concat(seen))
    assert.matches("failed=127%.0%.0%.1:" .. dead, np.log())
  end)

  it("unix: servers are socket paths", function()
    local a, b = h.peer_server("banner", { "--text", "a" }), h.peer_server("banner", { "--text", "b" })
    local dir = h.tmp()
    local ua, ub, gone = dir .. "/a.sock", dir .. "/b.sock", dir .. "/gone.sock"
    h.netproxy_start(([[
proxy { name = "ua", from = { type = "unix", path = %q }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "ub", from = { type = "unix", path = %q }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(ua, a.port, ub, b.port))
    local np = h.netproxy_start(([[
proxy { name = "pool", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "unix", servers = { %q, { path = %q, weight = 2 }, %q } } }
]]):format(ua, ub, gone))
    local seen = {}
    for i = 1, 6 do seen[i] = banner(np.ports.pool):sub(1, 1) end
    table.sort(seen)
    assert.are.equal("aabbbb", table.concat(seen))
    assert.truthy(np.log():find("failed=" .. gone, 1, true))
  end)

  it("connect and connect_ssl: a pool of HTTP proxies (tinyproxy), the target kept", function()
    local target = h.peer_server("banner", { "--text", "t" })
    local tp = h.tinyproxy()
    local dead = h.closed_port()
    local pki = h.pki()
    local tls = h.netproxy_start(([[
proxy { name = "t", from = { type = "ssl", host = "127.0.0.1", port = 0, cert = %q, key = %q },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(pki .. "/localhost.pem", pki .. "/localhost.key", target.port))
    local np = h.netproxy_start(([[
proxy { name = "plain", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "connect", host = "127.0.0.1", port = %d, servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } }
proxy { name = "tls", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "connect_ssl", host = "127.0.0.1", port = %d, ca = %q, verify_name = "localhost",
               servers = { "127.0.0.1:%d", { host = "127.0.0.1", port = %d } } } }
]]):format(target.port, dead, tp.port, tls.ports.t, pki .. "/ca.pem", dead, tp.port))
    assert.are.equal("t\n", banner(np.ports.plain))
    assert.are.equal("t\n", banner(np.ports.tls))
    -- a connection's line is written once it has ended, which may be after its client has read
    h.wait_log(np, ("%%-> 127%%.0%%.0%%.1:%d via 127%%.0%%.0%%.1:%d failed=127%%.0%%.0%%.1:%d in="):format(target.port, tp.port, dead))
  end)

  it("socks5: a pool of SOCKS5 proxies (microsocks)", function()
    local target = h.peer_server("banner", { "--text", "s" })
    local ms1, ms2 = h.microsocks(), h.microsocks()
    local dead = h.closed_port()
    local np = h.netproxy_start(([[
proxy { name = "pool", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "socks5", host = "127.0.0.1", port = %d, servers = { "127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d" } } }
]]):format(target.port, dead, ms1.port, ms2.port))
    for _ = 1, 4 do assert.are.equal("s\n", banner(np.ports.pool)) end
    h.wait_log(np, "via 127%.0%.0%.1:" .. ms1.port .. " in=")
    h.wait_log(np, "via 127%.0%.0%.1:" .. ms2.port .. " in=")
  end)

  it("a custom connector that takes host and port gets servers too", function()
    local a, b = h.peer_server("banner", { "--text", "a" }), h.peer_server("banner", { "--text", "b" })
    local dir = h.tmp() .. "/conn"
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/plain.lua", [[
local core = require "netproxy.core"
local check = require "netproxy.check"
return { positions = { to = true }, params = { host = check.host, port = check.port },
         connect = function(conf, conn)
           return core.connect(conf.host, conf.port, { timeout = conn.connect_timeout })
         end }
]])
    local np = h.netproxy_start(([[
server { connector_path = { %q } }
proxy { name = "pool", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "plain", servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } }
]]):format(dir, a.port, b.port))
    assert.are.equal("a\nb\na\n", banner(np.ports.pool) .. banner(np.ports.pool) .. banner(np.ports.pool))
  end)
end)
