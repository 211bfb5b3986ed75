-- PROXY protocol v2 at every length the protocol allows (the length field goes to 65535:
-- 16 + 65535 bytes in all), and a header read exactly: the bytes behind it stay in the socket
-- for what comes next, a TLS handshake included.
local h = require "spec.helpers"
local tcp = require "spec.rawtcp"

local V2 = "\r\n\r\n\0\r\nQUIT\n"

local function u16(n) return string.char(math.floor(n / 256), n % 256) end

-- A v2 PROXY/TCP4 header whose address block is followed by NOOP TLVs up to `len` bytes.
local function v2_long(len)
  local addrs = string.char(198, 51, 100, 9, 192, 0, 2, 1) .. u16(6666) .. u16(443)
  local tlvs, room = {}, len - #addrs
  while room > 0 do
    local value = math.min(room - 3, 65000)
    tlvs[#tlvs + 1] = "\4" .. u16(value) .. ("\0"):rep(value)    -- PP2_TYPE_NOOP
    room = room - 3 - value
  end
  local header = V2 .. "\33\17" .. u16(len) .. addrs .. table.concat(tlvs)
  assert(#header == 16 + len)
  return header
end

describe("PROXY v2 headers", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    local pki = h.pki()
    np = h.netproxy_start(([[
proxy { name = "v2", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v2" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "tls", from = { type = "ssl", host = "127.0.0.1", port = 0, proxy_protocol = "any",
                               cert = %q, key = %q },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, pki .. "/localhost.pem", pki .. "/localhost.key", echo.port), { "-v" })
  end)
  teardown(h.stop_all)

  for _, len in ipairs({ 65520, 65521, 65535 }) do
    it("takes a header of 16 + " .. len .. " bytes (TLVs), then relays the data", function()
      local c = assert(tcp.connect("127.0.0.1", np.ports.v2))
      assert(c:send(v2_long(len) .. "hello\n"))
      assert.are.equal("hello\n", c:recv_n(6, 10))
      c:close()
      h.wait_log(np, "v2: PROXY v2 header from 127%.0%.0%.1:%d+: client 198%.51%.100%.9:6666")
    end)
  end

  it("leaves a ClientHello sent together with the header to the TLS handshake", function()
    local hello = assert(h.read(h.root .. "/spec/fixtures/corpus/tls-openssl-sni"))
    for _, header in ipairs({ "PROXY TCP4 203.0.113.5 192.0.2.1 5555 443\r\n", v2_long(12) }) do
      local c = assert(tcp.connect("127.0.0.1", np.ports.tls))
      assert(c:send(header .. hello))                     -- one write: both arrive at once
      local answer = c:recv(10) or ""
      c:close()
      -- a ServerHello: a TLS handshake record, not a close
      assert.are.equal(0x16, answer:byte(1), ("answer %q"):format(answer:sub(1, 40)))
    end
    h.wait_log(np, "tls: PROXY v1 header from [^\n]* client 203%.0%.113%.5:5555")
  end)
end)
