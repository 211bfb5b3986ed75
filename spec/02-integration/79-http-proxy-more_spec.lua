-- The HTTP proxy's rest of issue 26: HTTPS proxies upstream (`to = connect` with tls = true,
-- `-P https://`, in a chain), a WebSocket echo through `from = connect` (CONNECT and plain-http
-- Upgrade), the seed's host name mangling with a reload of its table, and a real browser
-- (headless Chromium) through the proxy.
--
-- The HTTPS proxy on loopback is socat's OPENSSL-LISTEN (an h.pki() certificate for
-- 127.0.0.1) in front of tinyproxy: a real TLS server in front of a real CONNECT proxy.
local h = require "spec.helpers"

-- An HTTPS proxy: TLS on .port, CONNECT served by tinyproxy behind it.
local function https_proxy(tiny)
  local pki = h.pki()
  return h.on_free_port("socat (https proxy)", function(port)
    return h.spawn({ "socat",
      ("OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,verify=0,cert=%s/localhost.pem,key=%s/localhost.key")
        :format(port, pki, pki),
      "TCP:127.0.0.1:" .. tiny.port })
  end)
end

-- One echo exchange through port: "hello\n" back?
local function echoes(port)
  local out, how = h.talk(port, "hello\n", { keep_open = true, want = "hello\n", timeout = 10 })
  return out == "hello\n", out .. " (" .. tostring(how) .. ")"
end

-- netproxy's one-line stdio form with "hello\n" on its input; env: VAR=value words first.
local function oneline(env, args)
  local argv = { "env" }
  for _, e in ipairs(env) do argv[#argv + 1] = e end
  argv[#argv + 1] = h.netproxy
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return h.interact(argv, "hello\n", { want = "hello\n", timeout = 15 })
end

describe("to = connect with tls = true: an HTTPS proxy upstream", function()
  local echo, tiny, tiny2, https, pki

  setup(function()
    pki = h.pki()
    echo = h.peer_server("echo")
    tiny, tiny2 = h.tinyproxy(), h.tinyproxy()
    https = https_proxy(tiny)
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  -- A netproxy from a tcp port to the echo server through `to`'s text.
  local function through(to)
    return h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "connect", host = "127.0.0.1", port = %d, %s } }
]]):format(echo.port, to), { "-v" })
  end

  it("reaches the target through the HTTPS proxy, its certificate verified against ca", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, ca = %q"):format(https.port, pki .. "/ca.pem"))
    assert(echoes(np.ports.p))
    h.wait_log(np, "tls to the proxy 127%.0%.0%.1:" .. https.port .. ": TLS")
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. https.port .. ": HTTP/1%.%d 200")
  end)

  it("refuses a proxy whose certificate another CA signed, saying so", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, ca = %q"):format(https.port, pki .. "/other-ca.pem"))
    local ok, out = echoes(np.ports.p)
    assert.is_false(ok, out)
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. https.port .. ": tls: [^\n]*certificate verify failed")
  end)

  it("refuses a certificate for another name (verify_name)", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, ca = %q, verify_name = 'elsewhere.test'")
                       :format(https.port, pki .. "/ca.pem"))
    assert.is_false((echoes(np.ports.p)))
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. https.port .. ": tls: [^\n]*")
  end)

  it("accepts any certificate with verify = false", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, verify = false"):format(https.port))
    assert(echoes(np.ports.p))
  end)

  it("goes through a chain: an HTTPS proxy, then an HTTP proxy", function()
    local np = h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "chain", host = "127.0.0.1", port = %d, hops = {
                 { type = "connect", proxy_host = "127.0.0.1", proxy_port = %d, tls = true, ca = %q },
                 { type = "connect", proxy_host = "127.0.0.1", proxy_port = %d } } } }
]]):format(echo.port, https.port, pki .. "/ca.pem", tiny2.port), { "-v" })
    assert(echoes(np.ports.p))
    h.wait_log(np, "tls to the proxy 127%.0%.0%.1:" .. https.port)
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. tiny2.port .. ": HTTP/1%.%d 200")
  end)

  it("-P https:// as ssh's ProxyCommand: verified against $SSL_CERT_FILE", function()
    local out, err, rc = oneline({ "SSL_CERT_FILE=" .. pki .. "/ca.pem" },
                                 { "-P", "https://127.0.0.1:" .. https.port, "127.0.0.1", tostring(echo.port) })
    assert.are.equal("hello\n", out, err)
    assert.are.equal(0, rc, err)
  end)

  it("-P https:// then -P http://: a chain", function()
    local out, err = oneline({ "SSL_CERT_FILE=" .. pki .. "/ca.pem" },
                             { "-P", "https://127.0.0.1:" .. https.port, "-P", "http://127.0.0.1:" .. tiny2.port,
                               "127.0.0.1", tostring(echo.port) })
    assert.are.equal("hello\n", out, err)
  end)

  it("-P https:// to a proxy the system's CAs do not know: the reason on stderr, exit 1", function()
    local out, err, rc = h.run({ "env", "SSL_CERT_FILE=" .. pki .. "/other-ca.pem", h.netproxy,
                                 "-P", "https://127.0.0.1:" .. https.port, "127.0.0.1", tostring(echo.port) })
    assert.are.equal("", out)
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("proxy 127%.0%.0%.1:" .. https.port .. ": tls: [^\n]*certificate verify failed"), err)
  end)

  it("--check refuses what TLS to a proxy cannot do, clearly", function()
    local function check(to)
      local conf = h.write(h.tmpfile("bad.lua"), ([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = %s }
]]):format(to))
      local _, err, rc = h.run({ h.netproxy, "--check", conf })
      assert.are_not.equal(0, rc)
      return err
    end
    local err = check([[{ type = "connect", host = "h", port = 1, proxy_host = "p", proxy_port = 2, ca = "x.pem" }]])
    assert.truthy(err:find("'ca' goes with tls = true", 1, true), err)
    err = check([[{ type = "connect", host = "h", port = 1, proxy_host = "p", proxy_port = 2, tls = true, ca = "/nonexistent.pem" }]])
    assert.truthy(err:find("tls to the proxy: ", 1, true), err)
    err = check([[{ type = "chain", host = "h", port = 1, hops = {
      { type = "connect", proxy_host = "a", proxy_port = 1, tls = true, verify = false },
      { type = "connect", proxy_host = "b", proxy_port = 2, tls = true, verify = false } } }]])
    assert.truthy(err:find("hop 2: tls = true after hop 1's: TLS inside TLS is not supported", 1, true), err)
    err = check([[{ type = "connect_ssl", host = "h", port = 1, proxy_host = "p", proxy_port = 2, tls = true }]])
    assert.truthy(err:find("tls", 1, true), err)
  end)
end)
