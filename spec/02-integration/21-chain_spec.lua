-- to = chain: through several real proxies in turn (tinyproxy, microsocks, dante-server),
-- each reached through the ones before it; TLS to the target on top (openssl s_server);
-- a hop that fails, named in the log; examples/chain.lua.
local h = require "spec.helpers"

local function chain(name, target_port, hops, extra)
  return ([[
proxy { name = %q, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "chain", host = "127.0.0.1", port = %d, hops = { %s }, %s } }
]]):format(name, target_port, hops, extra or "")
end
local function http_hop(port, extra) return ('{ type = "connect", proxy_host = "127.0.0.1", proxy_port = %d, %s },'):format(port, extra or "") end
local function socks_hop(port, extra) return ('{ type = "socks5", proxy_host = "127.0.0.1", proxy_port = %d, %s },'):format(port, extra or "") end

describe("to = chain", function()
  local echo, tiny, ms, ms_auth, dante

  setup(function()
    echo = h.peer_server("echo")
    tiny = h.tinyproxy()
    ms = h.microsocks()
    ms_auth = h.microsocks("bob", "builder")
    dante = h.danted()
  end)
  teardown(h.stop_all)
  -- the peers are shared; each test starts its own netproxy (its log is that test's alone),
  -- stopped at its end
  before_each(h.test_begin)
  after_each(h.test_end)

  -- tinyproxy and microsocks close both ways at the first EOF: the client keeps writing open
  -- until every byte has come back (no --half-close).
  it("carries 1 MiB byte-exact through tinyproxy, then microsocks, then to the target", function()
    local np = h.netproxy_start(chain("ts", echo.port, http_hop(tiny.port) .. socks_hop(ms.port)) ..
                                chain("st", echo.port, socks_hop(ms.port) .. http_hop(tiny.port)) ..
                                chain("tsd", echo.port, http_hop(tiny.port) .. socks_hop(ms_auth.port, 'proxy_user = "bob", proxy_pass = "builder"') .. socks_hop(dante.port)),
                                { "-v" })
    for _, name in ipairs({ "ts", "st", "tsd" }) do
      local r = h.client("127.0.0.1", np.ports[name], { "--bytes", "1M" })
      assert.are.equal(0, r.rc, name .. ": " .. r.err)
      assert.are.equal(1024 * 1024, r.bytes_recv)
    end
    -- each hop asked for the next one, the last for the target
    h.wait_log(np, "ts: proxy 127%.0%.0%.1:" .. tiny.port .. ": HTTP/1%.0 200")
    h.wait_log(np, "ts: proxy 127%.0%.0%.1:" .. ms.port .. ": SOCKS5 CONNECT 127%.0%.0%.1:" .. echo.port .. " succeeded")
    h.wait_log(np, "st: proxy 127%.0%.0%.1:" .. ms.port .. ": SOCKS5 CONNECT 127%.0%.0%.1:" .. tiny.port .. " succeeded")
    h.wait_log(np, "tsd: proxy 127%.0%.0%.1:" .. ms_auth.port .. ": SOCKS5 CONNECT 127%.0%.0%.1:" .. dante.port .. " succeeded")
    h.wait_log(np, "tsd: 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:" .. echo.port .. " in=1048576 out=1048576 [^\n]*end=eof")
  end)

  it("names the hop that failed", function()
    local closed = h.closed_port()
    local np = h.netproxy_start(chain("nocreds", echo.port, http_hop(tiny.port) .. socks_hop(ms_auth.port)) ..
                                chain("firstdown", echo.port, http_hop(closed) .. socks_hop(ms.port)) ..
                                chain("lastref", closed, socks_hop(ms.port) .. socks_hop(dante.port)))
    for _, name in ipairs({ "nocreds", "firstdown", "lastref" }) do
      assert.are.equal(1, h.client("127.0.0.1", np.ports[name], { "--bytes", "1K", "--timeout", "5" }).failed)
    end
    h.wait_log(np, "nocreds: [^\n]* end=connect failed: hop 2: proxy 127%.0%.0%.1:" .. ms_auth.port .. " accepts none of our methods")
    h.wait_log(np, "firstdown: [^\n]* end=connect failed: hop 1: proxy 127%.0%.0%.1:" .. closed .. ": refused")
    h.wait_log(np, "lastref: [^\n]* end=connect failed: hop 2: proxy 127%.0%.0%.1:" .. dante.port .. " said: connection refused %(5%)")
  end)

  it("runs TLS to the target on top of the chain (tls = true, connect_ssl's way)", function()
    local pki = h.pki()
    local dir = h.tmp() .. "/chain-www"
    os.execute(("mkdir -p %s && echo 'served by s_server' > %s/who.txt && cp %s/backend.test.pem %s/backend.test.key %s/")
               :format(dir, dir, pki, pki, dir))
    local server = h.on_free_port("s_server", function(port)
      return h.spawn({ "sh", "-c", ("cd %s && exec openssl s_server -quiet -WWW -accept 127.0.0.1:%d -cert backend.test.pem -key backend.test.key")
                                   :format(dir, port) })
    end)
    local port = server.port
    local np = h.netproxy_start(chain("tls", port, http_hop(tiny.port) .. socks_hop(ms.port),
                                      ('tls = true, ca = %q, verify_name = "backend.test"'):format(pki .. "/ca.pem")) ..
                                chain("wrongname", port, socks_hop(ms.port),
                                      ('tls = true, ca = %q, verify_name = "other.test"'):format(pki .. "/ca.pem")), { "-v" })
    -- tinyproxy closes both ways at the first EOF: the write side stays open until s_server closes
    local out = h.talk(np.ports.tls, "GET /who.txt HTTP/1.0\r\n\r\n", { keep_open = true })
    assert.truthy(out:find("served by s_server", 1, true), out)
    h.wait_log(np, "tls: tls to the server: TLSv1%.3")
    assert.are.equal(1, h.client("127.0.0.1", np.ports.wrongname, { "--bytes", "1K", "--timeout", "5" }).failed)
    h.wait_log(np, "wrongname: [^\n]* end=connect failed: tls: ")
    h.stop(server)
  end)

  it("is the `to` of netproxy's own SOCKS5 server: curl -> netproxy -> tinyproxy -> microsocks -> target", function()
    local web = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n", "--close" })
    local np = h.netproxy_start(([[
proxy { name = "front", from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" } },
        to = { type = "chain", hops = { %s %s } } }
]]):format(http_hop(tiny.port), socks_hop(ms.port)), { "-v" })
    local out, err, rc = h.run({ "curl", "-sS", "--max-time", "5", "--socks5-hostname", "127.0.0.1:" .. np.ports.front,
                                 "http://localhost:" .. web.port .. "/" })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "front: proxy 127%.0%.0%.1:" .. ms.port .. ": SOCKS5 CONNECT localhost:" .. web.port .. " succeeded")
  end)

  it("is checked: hops wanted, each a connect or socks5 proxy without host or port", function()
    local path = h.write(h.tmpfile("bad-chain.lua"), [[
proxy { name = "a", from = { type = "tcp", port = 1 }, to = { type = "chain", host = "h", port = 2 } }
proxy { name = "b", from = { type = "tcp", port = 1 }, to = { type = "chain", host = "h", port = 2, hops = { { type = "tcp", host = "x", port = 3 } } } }
proxy { name = "c", from = { type = "tcp", port = 1 }, to = { type = "chain", host = "h", port = 2, hops = { { type = "socks5", proxy_host = "p", proxy_port = 3, host = "x" } } } }
proxy { name = "d", from = { type = "tcp", port = 1 }, to = { type = "chain", host = "h", port = 2, hops = { { type = "socks5", proxy_port = 3 } } } }
proxy { name = "e", from = { type = "tcp", port = 1 }, to = { type = "chain", host = "h", port = 2, ca = "x", hops = { { type = "socks5", proxy_host = "p", proxy_port = 3 } } } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("bad-chain.lua:1: proxy 'a': to: missing hops", 1, true), err)
    assert.truthy(err:find("bad-chain.lua:2: proxy 'b': to: hops: hop 1: type wants connect or socks5, not tcp", 1, true), err)
    assert.truthy(err:find("bad-chain.lua:3: proxy 'c': to: hops: hop 1: no host or port in a hop", 1, true), err)
    assert.truthy(err:find("bad-chain.lua:4: proxy 'd': to: hops: hop 1: missing proxy_host or proxy_port", 1, true), err)
    assert.truthy(err:find("bad-chain.lua:5: proxy 'e': to: 'ca' goes with tls = true", 1, true), err)
  end)
end)

describe("examples/chain.lua", function()
  teardown(h.stop_all)

  it("reaches its target through the office proxy and the bastion", function()
    local echo = h.peer_server("echo")
    local tiny = h.tinyproxy()
    local bastion = h.microsocks("me", "secret")
    local config = h.read(h.root .. "/examples/chain.lua")
        :gsub('"proxy%.office%.example", proxy_port = 3128', '"127.0.0.1", proxy_port = ' .. tiny.port)
        :gsub('"bastion%.example%.org", proxy_port = 1080', '"127.0.0.1", proxy_port = ' .. bastion.port)
        :gsub('os%.getenv%("BASTION_PASS"%) or ""', '"secret"')
        :gsub('host = "git%.example%.org", port = 22', 'host = "127.0.0.1", port = ' .. echo.port)
        :gsub("port = 2222", "port = 0"):gsub("port = 1080", "port = 0"):gsub("port = 8443", "port = 0")
    local np = h.netproxy_start(config, { "-v" })
    local r = h.client("127.0.0.1", np.ports.git, { "--bytes", "1M" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(1024 * 1024, r.bytes_recv)
    h.wait_log(np, "git: proxy 127%.0%.0%.1:" .. bastion.port .. ": SOCKS5 CONNECT 127%.0%.0%.1:" .. echo.port .. " succeeded")
  end)
end)
