-- conn.ja4, the JA4 fingerprint of the client's ClientHello (issue 31), for dual's tls probe
-- and `from = ssl`, and ClientHellos far past one TCP segment.
--
-- How the expected values are had, independently of src/ja4.c:
-- * a published vector: a Chrome 143 ClientHello whose JA4 and JA4_r were published
--   (t13d1516h2_8daaf6152771_d8a2da3f94cd; its cipher list, its extensions in wire order and
--   its signature algorithms): the spec rebuilds a hello with those values, GREASE
--   included, and netproxy must give the published fingerprint;
-- * hellos captured from openssl s_client (-msg prints the hello it sent, byte for byte):
--   the spec works their JA4 out itself (spec/support/tls.lua's ja4: FoxIO's
--   technical_details/JA4.md step by step, sha256sum for the hashes) and netproxy must log
--   the same;
-- * a ~6 KB hello made by the spec (a padding extension), cut into 3 TLS records sent in 7
--   TCP segments, to dual (routed by its SNI) and to `from = ssl` (answered with the
--   certificate of its SNI).
local h = require "spec.helpers"
local tls = require "spec.support.tls"

local CHROME_JA4 = "t13d1516h2_8daaf6152771_d8a2da3f94cd"

-- The published Chrome hello's values, in its order (GREASE where Chrome puts it).
local function chrome_hello()
  local ext = {
    { 0x1a1a, "" },
    { 0x002d, "\1\1" },
    { 0x0033, tls.u16(36) .. tls.u16(0x001d) .. tls.u16(32) .. string.rep("\5", 32) },
    { 0x0010, tls.alpn({ "h2", "http/1.1" }) },
    { 0xfe0d, string.rep("\6", 40) },
    { 0x0017, "" },
    { 0x44cd, tls.alpn({ "h2" }) },
    { 0x0000, tls.sni("chrome.test") },
    { 0x000b, "\1\0" },
    { 0x000a, tls.u16_list({ 0x2a2a, 0x11ec, 0x001d, 0x0017, 0x0018 }) },
    { 0x002b, tls.u16_list({ 0x3a3a, 0x0304, 0x0303 }, 1) },
    { 0xff01, "\0" },
    { 0x0023, "" },
    { 0x0012, "" },
    { 0x0005, "\1\0\0\0\0" },
    { 0x000d, tls.u16_list({ 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601 }) },
    { 0x001b, "\2\0\2" },
    { 0x4a4a, "\0" },
  }
  return tls.client_hello({
    ciphers = { 0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035 },
    extensions = ext })
end

-- A TLS 1.2 hello OpenSSL will answer (ECDHE-ECDSA, P-256), for name, padded to about size
-- bytes with a padding extension (RFC 7685).
local function big_hello(name, size)
  local ext = {
    { 0x0000, tls.sni(name) },
    { 0x000a, tls.u16_list({ 0x0017, 0x001d }) },
    { 0x000b, "\1\0" },
    { 0x000d, tls.u16_list({ 0x0403, 0x0804 }) },
    { 0x0017, "" },
  }
  local bare = tls.client_hello({ ciphers = { 0xc02b, 0xc02c }, extensions = ext })
  ext[#ext + 1] = { 0x0015, string.rep("\0", size - #bare - 4) }
  return tls.client_hello({ ciphers = { 0xc02b, 0xc02c }, extensions = ext })
end

describe("ja4", function()
  local pki, np, a, other

  setup(function()
    pki = h.pki()
    a = h.peer_server("banner", { "--text", "SERVER-A" })
    other = h.peer_server("banner", { "--text", "SERVER-OTHER" })
    np = h.netproxy_start(([[
local pki = %q
local A = { type = "tcp", host = "127.0.0.1", port = %d }
local OTHER = { type = "tcp", host = "127.0.0.1", port = %d }
local function on_close(conn) conn:log("notice", "CLOSED ja4=%%s sni=%%s", tostring(conn.ja4), tostring(conn.sni)) end
-- the session's path (on_close): conn.ja4 for Lua and the log line
proxy { name = "dual", on_close = on_close,
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 5,
                 probes = { { match = "tls", ja4 = %q, to = A },
                            { match = "tls", sni = "a.test", to = A },
                            { match = "tls", to = OTHER } } } }
-- sniffed in C (no Lua step): the same routes
proxy { name = "sniffed",
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 5,
                 probes = { { match = "tls", sni = "a.test", to = A }, { match = "tls", to = OTHER } } } }
proxy { name = "ssl", on_close = on_close,
        tls_accept = function(conn) conn:log("notice", "TLS_ACCEPT ja4=%%s", conn.ja4) return true end,
        from = { type = "ssl", host = "127.0.0.1", port = 0, alpn = { "h2", "http/1.1" },
                 cert = pki .. "/localhost.pem", key = pki .. "/localhost.key",
                 certs = { { names = { "a.test" }, cert = pki .. "/a.test.pem", key = pki .. "/a.test.key" } } },
        to = A }
]]):format(pki, a.port, other.port, CHROME_JA4), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("of the published Chrome hello is the published value, by the spec and by dual's probe (routed on it)", function()
    local hello = chrome_hello()
    local mine, raw_b, raw_c = tls.ja4(hello)
    assert.are.equal(CHROME_JA4, mine, raw_b .. "\n" .. raw_c)
    local out = h.talk(np.ports.dual, tls.records(hello, {}), { keep_open = true, want = "SERVER%-A" })
    assert.truthy(out:find("SERVER-A", 1, true), out)
    h.wait_log(np, "dual: probe 1 %(tls%) matched")
    h.wait_log(np, "dual: CLOSED ja4=" .. CHROME_JA4 .. " sni=chrome%.test")
    h.wait_log(np, "dual: [^\n]* ja4=" .. CHROME_JA4 .. " time=")
  end)

  it("of curl's and openssl's captured hellos (spec/fixtures/tls) is what the spec works out, through dual", function()
    for _, name in ipairs({ "curl", "openssl" }) do
      np.mark()
      local record = assert(h.read(h.root .. "/spec/fixtures/tls/clienthello-" .. name .. ".bin"))
      local want = tls.ja4(record:sub(6))           -- one record: the hello after its 5-byte header
      local out = h.talk(np.ports.dual, record, { keep_open = true, want = "SERVER%-" })
      assert.truthy(out:find("SERVER-", 1, true), name .. ": " .. out)
      h.wait_log(np, "dual: CLOSED ja4=" .. want .. " ")
    end
  end)

  it("of openssl s_client's own hellos (captured with -msg) is what the spec works out, for from = ssl", function()
    for _, args in ipairs({ { "-servername", "a.test", "-alpn", "h2" }, { "-tls1_2", "-no_ticket" }, { "-alpn", "http/1.1", "-tls1_3" } }) do
      np.mark()
      local out = tls.s_client(np.ports.ssl, "PING\n", "-msg", unpack(args))
      local want = tls.ja4(tls.hello_of_msg(out))
      assert.truthy(want:match("^t1[23][di]%d%d%d%d%w%w_%x+_%x+$"), want)
      h.wait_log(np, "ssl: TLS_ACCEPT ja4=" .. want)
      h.wait_log(np, "ssl: [^\n]* ja4=" .. want .. " time=")
      h.wait_log(np, "ssl: CLOSED ja4=" .. want)
    end
  end)

  it("of a 6 KB hello in 3 records and 7 segments: dual routes it by its SNI, on both paths", function()
    local hello = big_hello("a.test", 6000)
    assert.truthy(#hello >= 6000)
    local wire = tls.records(hello, { 2100, 2100 })
    local want = tls.ja4(hello)
    for _, name in ipairs({ "dual", "sniffed" }) do
      local out = tls.send_in_segments(np.ports[name], wire, 7, "SERVER%-A")
      assert.truthy(out:find("SERVER-A", 1, true), name .. ": " .. out)
      h.wait_log(np, name .. ": dual: probe %d %(tls%) matched after " .. #wire .. " bytes")
    end
    h.wait_log(np, "dual: CLOSED ja4=" .. want .. " sni=a%.test")
    -- a different name goes elsewhere
    local out = tls.send_in_segments(np.ports.sniffed, tls.records(big_hello("z.test", 6000), { 3000, 10 }), 7, "SERVER%-OTHER")
    assert.truthy(out:find("SERVER-OTHER", 1, true), out)
  end)

  it("of a 6 KB hello in 3 records and 7 segments: from = ssl answers with the certificate of its SNI", function()
    local hello = big_hello("a.test", 6000)
    local out = tls.send_in_segments(np.ports.ssl, tls.records(hello, { 1500, 2600 }), 7, "a%.test")
    assert.truthy(out:find("^\22\3\3"), "no ServerHello")
    assert.truthy(out:find("a.test", 1, true), "not a.test's certificate")
    assert.falsy(out:find("localhost", 1, true))
    h.wait_log(np, "ssl: [^\n]* ja4=" .. tls.ja4(hello) .. " time=[^\n]* end=refused: tls: ")
  end)

  it("of a hello filling one 16 KiB record, in 7 segments: routed by dual, answered by from = ssl", function()
    local hello = big_hello("a.test", 16384)
    assert.are.equal(16384, #hello)
    local wire = tls.records(hello, {})
    for _, name in ipairs({ "dual", "sniffed" }) do
      local out = tls.send_in_segments(np.ports[name], wire, 7, "SERVER%-A")
      assert.truthy(out:find("SERVER-A", 1, true), name .. ": " .. out)
      h.wait_log(np, name .. ": dual: probe %d %(tls%) matched after 16389 bytes")
    end
    local out = tls.send_in_segments(np.ports.ssl, wire, 7, "a%.test")
    assert.truthy(out:find("a.test", 1, true), "not a.test's certificate")
    h.wait_log(np, "ssl: [^\n]* ja4=" .. tls.ja4(hello) .. " time=")
  end)
end)
