-- netproxy.probes: pure functions over bytes, tested with byte strings: real ClientHellos
-- (captured from openssl s_client and curl), split, truncated, hostile and random input.
local h = require "spec.helpers"
local probes = require "netproxy.probes"

local OPENSSL = h.read(h.root .. "/spec/fixtures/tls/clienthello-openssl.bin")
local CURL = h.read(h.root .. "/spec/fixtures/tls/clienthello-curl.bin")

-- The same handshake re-framed into records of at most n bytes each.
local function reframe(hello, n)
  local hs = hello:sub(6)
  local out = {}
  for i = 1, #hs, n do
    local part = hs:sub(i, i + n - 1)
    out[#out + 1] = "\22\3\1" .. string.char(math.floor(#part / 256), #part % 256) .. part
  end
  return table.concat(out)
end

describe("probes", function()
  it("tell SSH by its identification string", function()
    assert.are.equal("match", probes.ssh("SSH-2.0-OpenSSH_9.2p1\r\n"))
    assert.are.equal("more", probes.ssh(""))
    assert.are.equal("more", probes.ssh("SSH"))
    assert.are.equal("no", probes.ssh("SSL"))
    assert.are.equal("no", probes.ssh("GET / HTTP/1.1\r\n"))
  end)

  it("tell HTTP by its method", function()
    for _, req in ipairs({ "GET / HTTP/1.1\r\n", "POST /x HTTP/1.0\r\n", "OPTIONS * HTTP/1.1",
                           "CONNECT a:1 HTTP/1.1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" }) do
      assert.are.equal("match", probes.http(req), req)
    end
    assert.are.equal("more", probes.http("G"))
    assert.are.equal("more", probes.http("OPTI"))
    assert.are.equal("no", probes.http("GETX"))
    assert.are.equal("no", probes.http("\22\3\1"))
  end)

  it("tell SOCKS5 by its greeting", function()
    assert.are.equal("match", probes.socks5("\5\1\0"))
    assert.are.equal("match", probes.socks5("\5\2\0\2"))
    assert.are.equal("more", probes.socks5("\5"))
    assert.are.equal("more", probes.socks5("\5\2\0"))
    assert.are.equal("no", probes.socks5("\5\0"))
    assert.are.equal("no", probes.socks5("\4\1\0\80"))
    -- bytes after the greeting: a client that did not wait for the answer (a peek reads them too)
    assert.are.equal("match", probes.socks5("\5\1\2\1\5alice"))
    assert.are.equal("no", probes.socks5("\5\1\66"))           -- no such method
    assert.are.equal("no", probes.socks5("\5\3\0\255"))
  end)

  describe("tls", function()
    it("reads SNI and ALPN from openssl's and curl's ClientHellos", function()
      local verdict, info = probes.tls(OPENSSL)
      assert.are.equal("match", verdict)
      assert.are.equal("www.example.com", info.sni)
      assert.are.same({ "h2", "http/1.1" }, info.alpn)
      verdict, info = probes.tls(CURL)
      assert.are.equal("match", verdict)
      assert.are.equal("api.example.org", info.sni)
    end)

    it("wants more bytes for every strict prefix of a ClientHello", function()
      for n = 0, #CURL - 1 do
        assert.are.equal("more", (probes.tls(CURL:sub(1, n))), "prefix of " .. n)
      end
    end)

    it("reads a ClientHello split over several records", function()
      for _, size in ipairs({ 1, 7, 100, 256 }) do
        local split = reframe(OPENSSL, size)
        local verdict, info = probes.tls(split)
        assert.are.equal("match", verdict, "records of " .. size)
        assert.are.equal("www.example.com", info.sni)
        assert.are.equal("more", (probes.tls(split:sub(1, #split - 1))))
      end
    end)

    it("says no to other protocols and to broken ClientHellos", function()
      assert.are.equal("no", (probes.tls("SSH-2.0-x\r\n")))
      assert.are.equal("no", (probes.tls("\22\2\0\0\5hello")))           -- SSL 2 version
      assert.are.equal("no", (probes.tls("\22\3\1\0\0")))                 -- empty record
      assert.are.equal("no", (probes.tls("\22\3\1\0\4\2\0\0\0")))         -- a ServerHello
      -- an SNI length pointing past its extension
      local i = OPENSSL:find("www.example.com", 1, true)
      local broken = OPENSSL:sub(1, i - 3) .. "\255\255" .. OPENSSL:sub(i)
      assert.are.equal("no", (probes.tls(broken)))
    end)

    it("never fails on hostile input: random bytes and mutated ClientHellos", function()
      math.randomseed(42)
      local seen = { match = 0, no = 0, more = 0 }
      for n = 1, 20000 do
        local input
        if n % 2 == 0 then
          local bytes = {}
          for j = 1, math.random(0, 80) do bytes[j] = string.char(math.random(0, 255)) end
          input = (n % 4 == 0 and "\22\3\1" or "") .. table.concat(bytes)
        else
          local pos = math.random(1, #CURL)
          input = CURL:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. CURL:sub(pos + 1)
        end
        local ok, verdict = pcall(probes.tls, input)
        assert.is_true(ok, verdict)
        assert.is_not_nil(seen[verdict], tostring(verdict))
        seen[verdict] = seen[verdict] + 1
        for _, name in ipairs({ "ssh", "http", "socks5" }) do
          local ok2, v2 = pcall(probes[name], input)
          assert.is_true(ok2 and seen[v2] ~= nil, name)
        end
      end
      assert.is_true(seen.match > 0 and seen.no > 0 and seen.more > 0)
    end)
  end)
end)
