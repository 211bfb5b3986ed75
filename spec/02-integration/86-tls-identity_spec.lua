-- Who a TLS client is (issue 31): after a `from = ssl` handshake conn.tls holds the SNI, ALPN,
-- version and cipher, and for a client certificate its subject, issuer, serial, SHA-256
-- fingerprint and whether it verified; tls_accept(conn) sees it and may refuse (on_denied
-- is told); on_close (info.tls) and the connection's log line carry it. Real openssl
-- s_client clients, the spec's PKI; the certificate's fields are checked against what
-- `openssl x509` says of the same file. A PROXY v2 header to the server carries the SSL
-- (version, cipher, CN), ALPN and AUTHORITY TLVs, and a second netproxy reading it (`from`
-- with proxy_protocol = "v2") hands them to Lua as conn.proxy_tlvs.
local h = require "spec.helpers"
local tls = require "spec.support.tls"
local cjson = require "cjson"

describe("conn.tls", function()
  local pki, echo, np, np_in, alog

  setup(function()
    pki = h.pki()
    alog = h.tmpfile("tls-access.json")
    echo = h.peer_server("echo")
    -- the server behind a PROXY v2 header: a netproxy that reads it and logs its TLVs
    np_in = h.netproxy_start(([[
proxy { name = "in", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v2" },
        accept = function(conn)
          local t = conn.proxy_tlvs
          conn:log("notice", "TLVS client=%%s alpn=%%s authority=%%s ssl.client=%%d ssl.verified=%%s ssl.version=%%s ssl.cipher=%%s ssl.cn=%%s",
                   conn.client, t.alpn, t.authority, t.ssl.client, tostring(t.ssl.verified), t.ssl.version, t.ssl.cipher, t.ssl.cn)
          return true
        end,
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    np = h.netproxy_start(([[
local pki = %q
local function show(conn)
  local t = conn.tls
  conn:log("notice", "TLS sni=%%s alpn=%%s version=%%s cipher=%%s subject=%%s cn=%%s issuer=%%s serial=%%s fp=%%s verified=%%s ja4=%%s",
           t.sni, t.alpn, t.version, t.cipher, t.subject, t.cn, t.issuer, t.serial, t.fingerprint, t.verified, t.ja4)
end
local function tls_accept(conn)
  show(conn)
  if conn.tls.sni == "refuse.test" then return nil, "no service for " .. conn.tls.sni end
  return true
end
local function on_close(conn, info)
  conn:log("notice", "CLOSED sni=%%s cn=%%s ja4=%%s same=%%s", info.tls.sni, info.tls.cn, info.tls.ja4, tostring(info.tls.ja4 == conn.ja4))
end
local function on_denied(info) require("netproxy.core").log("notice", "DENIED " .. info.client .. " " .. info.reason .. " sni=" .. info.tls.sni) end
proxy { name = "plain", from = { type = "ssl", host = "127.0.0.1", port = 0, alpn = { "h2", "http/1.1" },
                                 cert = pki .. "/localhost.pem", key = pki .. "/localhost.key",
                                 certs = { { names = { "a.test" }, cert = pki .. "/a.test.pem", key = pki .. "/a.test.key" } } },
        tls_accept = tls_accept, on_close = on_close, on_denied = on_denied,
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "mtls", from = { type = "ssl", host = "127.0.0.1", port = 0, cert = pki .. "/localhost.pem",
                                key = pki .. "/localhost.key", ca = pki .. "/ca.pem", verify = true },
        tls_accept = tls_accept, on_close = on_close, access_log = { path = %q, format = "json" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "pp", from = { type = "ssl", host = "127.0.0.1", port = 0, alpn = { "h2" }, cert = pki .. "/localhost.pem",
                             key = pki .. "/localhost.key", ca = pki .. "/ca.pem", verify = true },
        to = { type = "tcp", host = "127.0.0.1", port = %d, proxy_protocol = "v2" } }
]]):format(pki, echo.port, alog, echo.port, np_in.ports["in"]), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function()
    h.test_begin(np)
    np_in.mark()
  end)
  after_each(h.test_end)

  it("holds sni, alpn, version and cipher for tls_accept, on_close and the log line", function()
    local out = tls.s_client(np.ports.plain, "over tls\n", "-servername", "a.test", "-alpn", "h2", "-tls1_3",
                             "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
    assert.truthy(out:find("over tls", 1, true), out)
    h.wait_log(np, "plain: TLS sni=a%.test alpn=h2 version=TLSv1%.3 cipher=TLS_CHACHA20_POLY1305_SHA256 subject=nil "
                   .. "cn=nil issuer=nil serial=nil fp=nil verified=nil ja4=t13d")
    h.wait_log(np, "plain: 127%.0%.0%.1:%d+ %-> [^\n]* tls=TLSv1%.3 sni=a%.test alpn=h2 ja4=t13d%w+_%x+_%x+ time=[^\n]* end=eof")
    h.wait_log(np, "plain: CLOSED sni=a%.test cn=nil ja4=t13d%w+_%x+_%x+ same=true")
  end)

  it("holds the client certificate's subject, issuer, serial, SHA-256 fingerprint and verification", function()
    local out = tls.s_client(np.ports.mtls, "with a cert\n", "-cert", pki .. "/client.pem", "-key", pki .. "/client.key")
    assert.truthy(out:find("with a cert", 1, true), out)
    local x509 = h.run({ "openssl", "x509", "-in", pki .. "/client.pem", "-noout", "-serial", "-fingerprint", "-sha256" })
    local serial = x509:match("serial=(%x+)")
    local fp = x509:match("Fingerprint=([%x:]+)"):gsub(":", ""):lower()
    local line = h.wait_log(np, "mtls: TLS [^\n]*")
    assert.truthy(line:find(" subject=CN=client cn=client issuer=CN=netproxy-spec-ca serial=" .. serial
                            .. " fp=" .. fp .. " verified=true ", 1, true), line .. "\nwant serial " .. serial .. " fp " .. fp)
    h.wait_log(np, 'mtls: [^\n]* tls=TLSv1%.3 cert="CN=client" verified=yes ja4=t13i[^\n]* end=eof')
    h.wait_log(np, "mtls: CLOSED sni=nil cn=client ")
    -- the access log carries them too: one JSON object for the connection
    local entry = h.wait_until(function()
      for text in (h.read(alog) or ""):gmatch("[^\n]+") do
        local e = cjson.decode(text)
        if e.proxy == "mtls" and e["end"] == "eof" then return e end
      end
    end, 10, "the access log's line")
    assert.are.equal("TLSv1.3", entry.tls_version)
    assert.are.equal("CN=client", entry.client_cert)
    assert.matches("^t13i", entry.ja4)
    assert.is_nil(entry.sni)                  -- s_client sent none to this proxy
  end)

  it("is refused by tls_accept after the handshake: a log line, on_denied, no backend", function()
    local line = "plain: [^\n]* %-> %- in=0 out=0 tls=TLSv1%.3 sni=refuse%.test [^\n]* end=refused: no service for refuse%.test"
    local out = tls.s_client(np.ports.plain, "MARK-REFUSED\n", "-servername", "refuse.test",
                             function() return np.log():find(line) end)
    assert.falsy(out:find("MARK-REFUSED", 1, true), out)
    h.wait_log(np, line)
    h.wait_log(np, "DENIED 127%.0%.0%.1:%d+ no service for refuse%.test sni=refuse%.test")
    assert.falsy(np.log():find("plain: connected to", 1, true))
  end)

  it("goes to the server in a PROXY v2 header's SSL (version, cipher, CN), ALPN and AUTHORITY TLVs: conn.proxy_tlvs", function()
    local out = tls.s_client(np.ports.pp, "through v2\n", "-servername", "a.test", "-alpn", "h2",
                             "-cert", pki .. "/client.pem", "-key", pki .. "/client.key")
    assert.truthy(out:find("through v2", 1, true), out)
    local cipher = out:match("Cipher is (%S+)")
    h.wait_log(np_in, "in: TLVS client=127%.0%.0%.1:%d+ alpn=h2 authority=a%.test ssl%.client=3 ssl%.verified=true "
                      .. "ssl%.version=TLSv1%.3 ssl%.cipher=" .. cipher .. " ssl%.cn=client")
  end)
end)
