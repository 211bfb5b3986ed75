-- netproxy.bytes: big-endian integers in byte strings, for the binary protocols (TLS records,
-- the PROXY protocol v2, SOCKS5). Readers return nil when the string is too short, never
-- raise: parsers call them on whatever a peer sent.
local byte, char, floor = string.byte, string.char, math.floor

local _M = {}

-- The 16-bit big-endian number at s[i], s[i+1].
function _M.u16(s, i)
  local a, b = byte(s, i, i + 1)
  if not b then return nil end
  return a * 256 + b
end

-- The 24-bit big-endian number at s[i..i+2] (TLS handshake lengths).
function _M.u24(s, i)
  local a, b, c = byte(s, i, i + 2)
  if not c then return nil end
  return (a * 256 + b) * 256 + c
end

-- n (0..65535) as two bytes, big-endian.
function _M.be16(n)
  return char(floor(n / 256) % 256, n % 256)
end

return _M
