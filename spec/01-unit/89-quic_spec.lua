-- The QUIC Initial reader alone (src/quic.c, built as libnpquic.so and loaded with LuaJIT's
-- FFI): RFC 9001 Appendix A and RFC 9369 Appendix A's client keys; RFC 9001 A.2's client
-- Initial (its header and first ciphertext bytes are the RFC's; spec/support/quic_initial.py
-- protects it, an implementation of our own in Python) read back to its ClientHello; a hello
-- over two Initials in either order, version 2; what is not a client Initial refused with why.
local h = require "spec.helpers"
local probes = require "netproxy.probes"
local quic = require "spec.support.quic_ffi"
local CRAFT = h.root .. "/spec/support/quic_initial.py"

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function unhex(s) return (s:gsub("%s", ""):gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end

local function keys(version, dcid)
  local key, iv, hp = quic.keys(version, dcid)
  return hex(key), hex(iv), hex(hp)
end

local feed = quic.feed

local function craft(...)
  local out, err, rc = h.run({ "python3", CRAFT, "craft", ... })
  assert.are.equal(0, rc, err)
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = unhex(line) end
  return list
end

describe("the QUIC Initial reader (src/quic.c)", function()
  local DCID = unhex("8394c8f03e515708")

  it("derives RFC 9001 A.1's client Initial keys (version 1)", function()
    local key, iv, hp = keys(1, DCID)
    assert.are.equal("1f369613dd76d5467730efcbe3b1a22d", key)
    assert.are.equal("fa044b2f42a3fd3b46fb255c", iv)
    assert.are.equal("9f50449e04a0e810283a1e9933adedd2", hp)
  end)

  it("derives RFC 9369 A.1's client Initial keys (version 2)", function()
    local key, iv, hp = keys(0x6b3343cf, DCID)
    assert.are.equal("8b1a0bc121284290a29e0971b5cd045d", key)
    assert.are.equal("91f73e2351d8fa91660e909f", iv)
    assert.are.equal("45b95e15235d6f45a6b19cbcb0294ba9", hp)
  end)

  it("reads RFC 9001 A.2's client Initial back to its ClientHello (example.com, alpn)", function()
    local f = assert(io.open(h.root .. "/spec/fixtures/quic/rfc9001-a2.hex"))
    local packet, hello = unhex(f:read("*l")), unhex(f:read("*l"))
    f:close()
    -- the RFC's protected header and sample, as printed in A.2
    assert.are.equal("c000000001088394c8f03e5157080000449e7b9aec34", hex(packet:sub(1, 22)))
    assert.are.equal("d1b1c98dd7689fb8ec11d242b123dc9b", hex(packet:sub(23, 38)))
    assert.are.equal(1200, #packet)
    local answers, got, why, version = feed({ packet })
    assert.are.same({ 1 }, answers, why)
    assert.are.equal(1, version)
    assert.are.equal(hex(hello), hex(got))
    local info = probes.client_hello(got)
    assert.are.equal("example.com", info.sni)
    assert.are.same({ "alpn" }, info.alpn)
  end)

  it("reassembles a ClientHello over two Initials, in order or not, version 1 and 2", function()
    for _, case in ipairs({ { "1", "forward" }, { "1", "reverse" }, { "2", "forward" }, { "2", "reverse" } }) do
      local list = craft(case[1], "a.example", "h3,h3-29", "2", case[2], "1500")
      local answers, hello, why, version = feed(list)
      assert.are.same({ 0, 1 }, answers, why)
      assert.are.equal(case[1] == "1" and 1 or 0x6b3343cf, version)
      local info = probes.client_hello(hello)
      assert.are.equal("a.example", info.sni)
      assert.are.same({ "h3", "h3-29" }, info.alpn)
    end
  end)

  it("reads a hello over five Initials, and waits while one is missing", function()
    local list = craft("1", "b.example", "h3", "5", "reverse", "4000")
    local answers, hello = feed({ list[1], list[2], list[4], list[5] })
    assert.are.same({ 0, 0, 0, 0 }, answers)
    assert.is_nil(hello)
    answers, hello = feed(list)
    assert.are.same({ 0, 0, 0, 0, 1 }, answers)
    assert.are.equal("b.example", probes.client_hello(hello).sni)
  end)

  it("reads an Initial sealed by libcrypto directly (the fuzzer's way), v1 and v2, with ACK, PING, PADDING", function()
    local hello = "\1\0\0\4" .. "efgh"   -- its header at offset 0, the rest at 4, sent first
    for _, version in ipairs({ quic.V1, quic.V2 }) do
      local frames = "\1" .. "\2\0\0\0\0" .. "\6\4\4efgh" .. "\3\5\0\1\0\1\2\0\0\0" .. "\6\0\4\1\0\0\4" .. ("\0"):rep(50)
      local answers, got, why = feed({ quic.seal(version, "12345678", "", 0, frames) })
      assert.are.same({ 1 }, answers, why)
      assert.are.equal(hello, got)
    end
  end)

  it("keeps the first copy of a byte: a resent CRYPTO frame that differs changes nothing (found by the fuzzer)", function()
    -- the header says 4 bytes, then a second frame at offset 0 says 200: the hello stays 8 bytes
    local frames = "\6\0\8\1\0\0\4wxyz" .. "\6\0\4\1\0\0\200" .. ("\0"):rep(40)
    local answers, got = feed({ quic.seal(quic.V1, "abcdefgh", "", 0, frames) })
    assert.are.same({ 1 }, answers)
    assert.are.equal("\1\0\0\4wxyz", got)
  end)

  it("refuses what is not a client Initial, with why", function()
    local good = craft("1", "a.example", "h3", "1", "forward", "0")[1]
    local cases = {
      { "", "an empty datagram" },
      { "\64" .. ("x"):rep(1199), "a short header" },
      { good:sub(1, 1) .. "\255\0\0\29" .. good:sub(6), "a QUIC version other than 1 and 2" },
      { good:sub(1, -21) .. string.char(bit.bxor(good:byte(-20), 0x55)) .. good:sub(-19), "an Initial that does not decrypt" },
      { good:sub(1, 40), "a truncated Initial" },
      { good:sub(1, 3), "a truncated long header" },
    }
    for _, c in ipairs(cases) do
      local answers, hello, why = feed({ c[1] })
      assert.are.same({ -1 }, answers, c[2])
      assert.is_nil(hello)
      assert.are.equal(c[2], why)
    end
  end)
end)

describe("netproxy.udp.route (the server of a flow from its ClientHello)", function()
  package.preload["netproxy.core"] = package.preload["netproxy.core"] or function() return { now = os.clock } end
  local core = require "netproxy.core"
  -- the JA4 of a hello is the C core's (src/ja4.c, spec 88); here a stand-in says which hello it saw
  core.ja4 = core.ja4 or function(hello) return "t13d_" .. #hello end
  local udp = require "netproxy.udp"
  local A = { type = "udp", host = "10.0.0.1", port = 443 }
  local B = { type = "udp", host = "10.0.0.2", port = 443 }
  local FB = { type = "udp", host = "10.0.0.9", port = 443 }

  local function conn_of(probes_list, fallback)
    local from = { probes = probes_list, fallback = fallback }
    return assert(udp.start({ name = "h3", from = from, to = fallback or { type = "udp" } }, 1, "127.0.0.1:5000", nil))
  end

  local function hello(sni, alpn)
    local list = {}
    for line in (h.run({ "python3", CRAFT, "craft", "1", sni or "-", alpn or "-", "1", "forward", "0" })):gmatch("[^\n]+") do
      list[#list + 1] = unhex(line)
    end
    local _, got = feed(list)
    return got
  end

  it("goes to the first probe that matches (sni, then alpn, then a function), else the fallback", function()
    local probes_list = {
      { match = "quic", sni = "a.example", to = A },
      { match = "quic", sni = "*.example", alpn = "h3", to = B },
      { match = function(info, conn) return info.sni == nil and conn.sni == nil end, to = B },
    }
    local conn = conn_of(probes_list, FB)
    assert.are.same({ "10.0.0.1", 443, "a.example", "h3" }, { udp.route(conn, hello("a.example", "h3"), nil) })
    assert.are.equal("10.0.0.1:443", conn.target)
    assert.are.equal(1, conn.probe)
    conn = conn_of(probes_list, FB)
    assert.are.same({ "10.0.0.2", 443, "b.example", "h3,h3-29" }, { udp.route(conn, hello("b.example", "h3,h3-29"), nil) })
    assert.are.same({ "h3", "h3-29" }, conn.alpn)
    conn = conn_of(probes_list, FB)
    assert.are.same({ "10.0.0.9", 443, "b.example", "hq" }, { udp.route(conn, hello("b.example", "hq"), nil) })
    conn = conn_of(probes_list, FB)
    assert.are.same({ "10.0.0.2", 443 }, { udp.route(conn, hello(nil, nil), nil) })
    assert.are.equal(3, conn.probe)
  end)

  it("sends what is not QUIC to the fallback, or nowhere with why", function()
    local conn = conn_of({ { match = "quic", sni = "a.example", to = A } }, FB)
    assert.are.same({ "10.0.0.9", 443 }, { udp.route(conn, nil, "a short header") })
    conn = conn_of({ { match = "quic", sni = "a.example", to = A } }, nil)
    assert.are.same({ nil, "not QUIC (a short header) and no fallback" }, { udp.route(conn, nil, "a short header") })
    conn = conn_of({ { match = "quic", sni = "a.example", to = A } }, nil)
    assert.are.same({ nil, "no probe matched and no fallback", "b.example" }, { udp.route(conn, hello("b.example"), nil) })
    -- a hello the parser does not take: as not QUIC
    conn = conn_of({ { match = "quic", sni = "a.example", to = A } }, FB)
    assert.are.same({ "10.0.0.9", 443 }, { udp.route(conn, "\1\0\0\2\3\3", nil) })
  end)
end)
