-- TLS end to end with real peers: openssl s_client and curl as clients of `from = ssl`,
-- openssl s_server as the server of `to = ssl`, 4 MiB byte-exact both ways, SNI, client
-- certificates, wrong CAs, expired certificates, plain text on a TLS port, STARTTLS both
-- ways (a real `openssl s_client -starttls`), connect_ssl through tinyproxy.
local h = require "spec.helpers"

-- openssl s_client to port, sending input once connected; its stdin stays open until its output
-- shows the end of the handshake (and the input echoed back, when there is some), or until
-- until() is true (when given), or it exits.
local function s_client(port, input, ...)
  local args = { ... }
  local until_fn = type(args[#args]) == "function" and table.remove(args) or nil
  local argv = { "timeout", "5", "openssl", "s_client", "-connect", "127.0.0.1:" .. port, unpack(args) }
  local want = input ~= "" and input:gsub("%p", "%%%0") or "Verify return code[^\n]*\n"
  local out, err = h.interact(argv, input, { want = function(so_far)
    return so_far:find(want) or (until_fn and until_fn())
  end })
  return out .. err
end

-- openssl s_server serving the files of a folder of its own (-WWW).
local function s_server(dir, cert, ...)
  local extra = {}
  for i, a in ipairs({ ... }) do extra[i] = h.quote(a) end
  return h.on_free_port("s_server", function(port)
    return h.spawn({ "sh", "-c", ("cd %s && exec openssl s_server -quiet -WWW -accept 127.0.0.1:%d -cert %s.pem -key %s.key %s")
                                 :format(dir, port, cert, cert, table.concat(extra, " ")) })
  end)
end

-- The files s_server -WWW serves from the PKI folder: who.txt, and 4 MiB of random bytes.
local function site_files(pki)
  if h.read(pki .. "/who.txt") then return end
  os.execute(("head -c 4194304 /dev/urandom > %s/big.bin && echo 'served by s_server' > %s/who.txt"):format(pki, pki))
end

describe("ssl", function()
  local pki, echo, web, np

  setup(function()
    pki = h.pki()
    echo = h.peer_server("echo")
    web = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n", "--close" })
    site_files(pki)
    np = h.netproxy_start(([[
local pki = %q
proxy { name = "term", from = { type = "ssl", host = "127.0.0.1", port = 0,
                                SSL_cert_file = pki .. "/localhost.pem", SSL_key_file = pki .. "/localhost.key",
                                alpn = { "h2", "http/1.1" },
                                certs = { { names = { "a.test" }, cert = pki .. "/a.test.pem", key = pki .. "/a.test.key" },
                                          { names = { "*.b.test" }, cert = pki .. "/wild.b.test.pem", key = pki .. "/wild.b.test.key" } } },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "web", from = { type = "ssl", host = "127.0.0.1", port = 0,
                               cert = pki .. "/localhost.pem", key = pki .. "/localhost.key" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "mtls", from = { type = "ssl", host = "127.0.0.1", port = 0, cert = pki .. "/localhost.pem",
                                key = pki .. "/localhost.key", ca = pki .. "/ca.pem", verify = true },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(pki, echo.port, web.port, echo.port), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("terminates TLS for openssl s_client", function()
    local out = s_client(np.ports.term, "hello over tls\n", "-CAfile", pki .. "/ca.pem", "-verify_return_error", "-servername", "localhost")
    assert.truthy(out:find("Verify return code: 0 (ok)", 1, true), out)
    assert.truthy(out:find("hello over tls", 1, true), out)
    h.wait_log(np, "term: tls from the client: TLSv1%.3 ")
  end)

  it("terminates TLS for curl", function()
    local out, err, rc = h.run({ "curl", "-sS", "--max-time", "5", "--cacert", pki .. "/ca.pem",
                                 "https://localhost:" .. np.ports.web .. "/" })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
  end)

  it("picks the certificate by SNI (exact and wildcard names, a default)", function()
    for name, cn in pairs({ ["a.test"] = "a.test", ["x.b.test"] = "wild.b.test", ["other.test"] = "localhost" }) do
      local out = s_client(np.ports.term, "", "-servername", name)
      assert.truthy(out:find("subject=CN = " .. cn, 1, true), name .. ": " .. out)
    end
  end)

  it("negotiates ALPN", function()
    assert.truthy(s_client(np.ports.term, "", "-alpn", "h2"):find("ALPN protocol: h2", 1, true))
    assert.truthy(s_client(np.ports.term, "", "-alpn", "http/1.1,h2"):find("ALPN protocol: h2", 1, true))
  end)

  it("refuses TLS 1.1 by default", function()
    local out = s_client(np.ports.term, "", "-tls1_1")
    assert.truthy(out:find("Cipher is (NONE)", 1, true), out)
    h.wait_log(np, "term: [^\n]* end=refused: tls: handshake: [^\n]*")
  end)

  it("requires a client certificate signed by its CA when asked to", function()
    -- (with TLS 1.3 the client learns of the refusal only when it reads: its input is ended
    -- once netproxy has logged the refusal)
    local no_cert = "mtls: [^\n]* %-> %- in=0 out=0 [^\n]* end=refused: tls: handshake: peer did not return a certificate"
    local out = s_client(np.ports.mtls, "MARK-NO-CERT\n", function() return np.log():find(no_cert) end)
    assert.falsy(out:find("MARK-NO-CERT", 1, true), out)
    h.wait_log(np, no_cert)
    local stranger = "mtls: [^\n]* end=refused: tls: handshake: certificate verify failed: self%-signed certificate"
    out = s_client(np.ports.mtls, "MARK-STRANGER\n", "-cert", pki .. "/stranger.pem", "-key", pki .. "/stranger.key",
                   function() return np.log():find(stranger) end)
    assert.falsy(out:find("MARK-STRANGER", 1, true), out)
    h.wait_log(np, stranger)
    out = s_client(np.ports.mtls, "MARK-TRUSTED\n", "-cert", pki .. "/client.pem", "-key", pki .. "/client.key")
    assert.truthy(out:find("MARK-TRUSTED", 1, true), out)
  end)

  it("closes plain text on a TLS port without opening the backend", function()
    local out, how = h.talk(np.ports.web, "GET / HTTP/1.0\r\n\r\n", { keep_open = true })
    assert.are_not.equal("timeout", how, "netproxy did not close")
    assert.falsy(out:find("hello", 1, true))
    h.wait_log(np, "web: [^\n]* %-> %- in=0 out=0 [^\n]* end=refused: tls: handshake: [^\n]*")
  end)

  describe("to = ssl", function()
    local server, expired, np2

    setup(function()
      server = s_server(pki, "backend.test")
      expired = s_server(pki, "expired")
      local ca = pki .. "/ca.pem"
      np2 = h.netproxy_start(([[
proxy { name = "orig", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", host = "127.0.0.1", port = %d, ca = %q, sni = "backend.test" } }
proxy { name = "byname", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", host = "127.0.0.1", port = %d, ca = %q, verify_name = "backend.test" } }
proxy { name = "wrongca", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", host = "127.0.0.1", port = %d, ca = %q } }
proxy { name = "wrongname", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", host = "127.0.0.1", port = %d, ca = %q, verify_name = "elsewhere.test" } }
proxy { name = "expired", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", host = "127.0.0.1", port = %d, ca = %q } }
]]):format(server.port, ca, server.port, ca, server.port, pki .. "/other-ca.pem", server.port, ca, expired.port, ca), { "-v" })
    end)
    teardown(function()
      h.stop(np2)
      h.stop(server)
      h.stop(expired)
    end)
    before_each(function() np2.mark() end)

    local function get(port, path)
      return (h.talk(port, ("GET /%s HTTP/1.0\r\n\r\n"):format(path)))
    end

    it("originates TLS to openssl s_server, checking its certificate", function()
      assert.truthy(get(np2.ports.orig, "who.txt"):find("served by s_server", 1, true))
      assert.truthy(get(np2.ports.byname, "who.txt"):find("served by s_server", 1, true))
      h.wait_log(np2, "orig: tls to the server: TLSv1%.3")
    end)

    it("carries 4 MiB from s_server byte-exact", function()
      local out = get(np2.ports.orig, "big.bin")
      local body = out:match("\r\n\r\n(.*)$")
      assert.are.equal(4 * 1024 * 1024, #body)
      assert.is_true(body == h.read(pki .. "/big.bin"), "bytes differ")
    end)

    it("closes the client, saying why, on a wrong CA, a wrong name or an expired certificate", function()
      for name, why in pairs({ wrongca = "unable to get local issuer certificate",
                               wrongname = "hostname mismatch",
                               expired = "certificate has expired" }) do
        assert.are.equal("", get(np2.ports[name], "who.txt"))
        h.wait_log(np2, name .. ": [^\n]* end=connect failed: tls: handshake: certificate verify failed: " .. why:gsub("%p", "%%%0"))
      end
    end)
  end)

  it("carries 4 MiB both ways byte-exact through TLS on both hops", function()
    -- np-peer -> netproxy A (tcp -> ssl) -> netproxy B (ssl -> tcp) -> np-peer echo
    local b = h.netproxy_start(([[
proxy { name = "b", from = { type = "ssl", host = "127.0.0.1", port = 0, cert = %q, key = %q },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(pki .. "/localhost.pem", pki .. "/localhost.key", echo.port))
    local a = h.netproxy_start(([[
proxy { name = "a", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "ssl", host = "localhost", port = %d, ca = %q } }
]]):format(b.ports.b, pki .. "/ca.pem"))
    local r = h.client("127.0.0.1", a.ports.a, { "--bytes", "4M", "--half-close" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(4 * 1024 * 1024, r.bytes_recv)
    h.wait_log(b, "b: [^\n]* in=4194304 out=4194304 [^\n]* end=eof")
    h.stop(a)
    h.stop(b)
  end)

  it("refuses a config whose certificate cannot be loaded, at --check", function()
    local path = h.write(h.tmpfile("badtls.lua"), 'proxy { from = { type = "ssl", port = 1, cert = "/nonexistent.pem" }, to = { type = "tcp", host = "h", port = 2 } }\n')
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":1: proxy 'proxy1': from: cert /nonexistent.pem: ", 1, true), err)
  end)
end)

describe("STARTTLS", function()
  local pki, echo

  setup(function()
    pki = h.pki()
    echo = h.peer_server("echo")
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  it("upgrades the client side from a hook, for a real `openssl s_client -starttls pop3`", function()
    local pop = h.peer_server("banner", { "--text", "+OK POP3 server ready\r" })
    local np = h.netproxy_start(([[
proxy { name = "pop3",
        from = { type = "ssl", host = "127.0.0.1", port = 0, start_cleartext = true,
                 cert = %q, key = %q,
                 hook = function(data, conn)
                   if not conn.stash.tls and data:match("^STLS\r\n") then
                     conn.stash.tls = true
                     conn:send("client", "+OK Begin TLS negotiation\r\n")
                     assert(conn:starttls())     -- the only side declared with start_cleartext
                     return ""
                   end
                 end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(pki .. "/localhost.pem", pki .. "/localhost.key", pop.port), { "-v" })
    -- -quiet ignores the end of its input: it is stopped once the echo is back
    local out, err = h.interact({ "timeout", "5", "openssl", "s_client", "-quiet", "-starttls", "pop3", "-connect",
                                  "127.0.0.1:" .. np.ports.pop3, "-CAfile", pki .. "/ca.pem", "-verify_return_error" },
                                "secret after tls\n", { want = "secret after tls\n", stop = true })
    assert.truthy(out:find("secret after tls", 1, true), out .. err)
    h.wait_log(np, "pop3: starttls with the client: TLSv1%.3")
    h.stop(np)
  end)

  it("speaks SMTP STARTTLS to the server for a client that speaks only clear text (examples/starttls.lua)", function()
    -- the SMTP server: a netproxy that offers STARTTLS itself, then relays to an echo service
    local server = h.netproxy_start(([[
local stream = require "netproxy.stream"
local function line(sock) return assert(stream.read_line(sock, 1024, 5)) end
proxy { name = "mx",
        from = { type = "ssl", host = "127.0.0.1", port = 0, cert = %q, key = %q, start_cleartext = true,
                 starttls = function(client, conn)
                   client:write("220 mx.spec ESMTP\r\n")
                   assert(line(client):match("^EHLO "))
                   client:write("250-mx.spec\r\n250 STARTTLS\r\n")
                   assert(line(client) == "STARTTLS\r\n")
                   client:write("220 Ready to start TLS\r\n")
                   return true
                 end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(pki .. "/localhost.pem", pki .. "/localhost.key", echo.port), { "-v" })
    -- it is a real STARTTLS server: openssl s_client -starttls smtp gets through
    local out, err = h.interact({ "timeout", "5", "openssl", "s_client", "-quiet", "-starttls", "smtp", "-connect",
                                  "127.0.0.1:" .. server.ports.mx, "-CAfile", pki .. "/ca.pem", "-verify_return_error" },
                                "hello through smtp starttls\n", { want = "hello through smtp starttls\n", stop = true })
    assert.truthy(out:find("hello through smtp starttls", 1, true), out .. err)
    -- the example in front of it, for a client that speaks only clear text
    local example = h.read(h.root .. "/examples/starttls.lua")
        :gsub('port = 2525', 'port = 0')
        :gsub('host = "mail%.example", port = 25,', ('host = "localhost", port = %d, ca = %q,'):format(server.ports.mx, pki .. "/ca.pem"))
    local np = h.netproxy_start(example, { "-v" })
    local want = "220 mx.spec ESMTP\r\nEHLO plain.client\r\n"
    assert.are.same({ want, "want" }, { h.talk(np.ports.smtp, "EHLO plain.client\r\n", { keep_open = true, want = #want }) })
    h.wait_log(np, "smtp: tls to the server: TLSv1%.3")
    h.wait_log(server, "mx: tls from the client: TLSv1%.3")
    h.stop(np)
    h.stop(server)
  end)
end)

describe("connect_ssl", function()
  after_each(h.stop_all)

  it("goes through tinyproxy with CONNECT, then TLS to the target", function()
    local pki = h.pki()
    site_files(pki)
    local tiny = h.tinyproxy()
    local server = s_server(pki, "backend.test")
    local np = h.netproxy_start(([[
proxy { name = "cs", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "connect_ssl", host = "127.0.0.1", port = %d, proxy_host = "127.0.0.1",
               proxy_port = %d, ca = %q, verify_name = "backend.test" } }
]]):format(server.port, tiny.port, pki .. "/ca.pem"), { "-v" })
    -- tinyproxy closes both ways at the first EOF: the write side stays open until s_server closes
    local out = h.talk(np.ports.cs, "GET /who.txt HTTP/1.0\r\n\r\n", { keep_open = true })
    assert.truthy(out:find("served by s_server", 1, true), out)
    h.wait_log(np, "cs: proxy 127%.0%.0%.1:%d+: HTTP/1%.0 200")
    h.wait_log(np, "cs: tls to the server: TLSv1%.3")
  end)
end)

describe("certificates and reload", function()
  after_each(h.stop_all)

  it("are read again on SIGHUP: new connections get the new certificate", function()
    local pki = h.pki()
    local echo = h.peer_server("echo")
    local dir = h.tmp() .. "/reload-certs"
    os.execute(("mkdir -p %s && cp %s/localhost.pem %s/site.pem && cp %s/localhost.key %s/site.key"):format(dir, pki, dir, pki, dir))
    local text = [[
proxy { name = "site", from = { type = "ssl", host = "127.0.0.1", port = %d, cert = %q, key = %q },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]
    local path = h.write(h.tmpfile("site.lua"), text:format(0, dir .. "/site.pem", dir .. "/site.key", echo.port))
    local np = h.netproxy_start(path, { "-w", "2", "-v" })
    local port = np.ports.site
    h.write(path, text:format(port, dir .. "/site.pem", dir .. "/site.key", echo.port))   -- the reload keeps it
    h.wait_log(np, "master: 2 workers")
    local function subject()
      return h.run({ "sh", "-c", ("timeout 5 openssl s_client -connect 127.0.0.1:%d </dev/null 2>/dev/null | grep '^subject='"):format(port) })
    end
    assert.truthy(subject():find("CN = localhost", 1, true))
    os.execute(("cp %s/a.test.pem %s/site.pem && cp %s/a.test.key %s/site.key"):format(pki, dir, pki, dir))
    os.execute("kill -HUP " .. np.pid)
    h.wait_reloaded(np, 1)
    assert.truthy(subject():find("CN = a.test", 1, true))
  end)
end)
