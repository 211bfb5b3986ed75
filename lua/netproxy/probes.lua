-- netproxy.probes: what protocol does a client speak? Each probe is a pure function over the
-- bytes the client has sent so far, answering "match", "no" or "more" (too few bytes to tell),
-- never reading past the string it was given (sslh's probe.c model). The TLS probe also
-- returns what it read from the ClientHello: { sni = "host", alpn = { "h2", ... }, hello = the
-- handshake message's bytes (for its JA4) }.
local bytes = require "netproxy.bytes"
local byte, sub = string.byte, string.sub

local _M = {}

-- Does buf start with word, or could it still (buf shorter than word)?
-- byte by byte: a probe runs on every connection, and sub() would make a string each time
local function prefix(buf, word)
  local n = #buf < #word and #buf or #word
  for i = 1, n do
    if byte(buf, i) ~= byte(word, i) then return "no" end
  end
  return #buf >= #word and "match" or "more"
end

-- SSH: the identification string, "SSH-2.0-..." (RFC 4253 4.2).
function _M.ssh(buf)
  return prefix(buf, "SSH-")
end

local METHODS = { "GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "CONNECT ", "PATCH ",
                  "TRACE ", "PRI * HTTP/2.0" }

-- The first letters of METHODS: any other first byte is "no" without trying each method
-- (the probe runs on every connection of a sniffing port, most of them not HTTP).
local METHOD_STARTS = {}
for _, m in ipairs(METHODS) do METHOD_STARTS[byte(m, 1)] = true end

-- HTTP/1.x: a request line's method and space (and HTTP/2's cleartext preface).
function _M.http(buf)
  if #buf >= 1 and not METHOD_STARTS[byte(buf, 1)] then return "no" end
  local verdict = "no"
  for _, m in ipairs(METHODS) do
    local r = prefix(buf, m)
    if r == "match" then return "match" end
    if r == "more" then verdict = "more" end
  end
  return verdict
end

-- SOCKS5: version 5, a method count n >= 1, then n method bytes (RFC 1928 3), each one a
-- method that exists: 0x00..0x09 assigned by IANA, 0x80..0xfe private (sslh's rule). Bytes
-- after the greeting do not matter: a peek may have read them along with it (a client that
-- sends its authentication or request without waiting for our answer).
function _M.socks5(buf)
  if #buf >= 1 and byte(buf, 1) ~= 5 then return "no" end
  if #buf < 2 then return "more" end
  local n = byte(buf, 2)
  if n == 0 then return "no" end
  for i = 3, math.min(#buf, 2 + n) do
    local m = byte(buf, i)
    if (m > 0x09 and m < 0x80) or m == 0xff then return "no" end
  end
  if #buf < 2 + n then return "more" end
  return "match"
end

-- ---------------------------------------------------------------- TLS

local u16, u24 = bytes.u16, bytes.u24

-- The handshake bytes carried by the leading TLS records of buf (a ClientHello may span
-- several). Returns the bytes, or nil and a verdict ("no" or "more").
local function handshake_bytes(buf, want)
  if #buf >= 1 and byte(buf, 1) ~= 0x16 then return nil, "no" end       -- (before any garbage)
  local parts, have, pos = {}, 0, 1
  while true do
    if #buf < pos then return nil, "more" end
    if byte(buf, pos) ~= 0x16 then return nil, "no" end               -- handshake record
    if #buf < pos + 4 then return nil, "more" end
    local major, minor = byte(buf, pos + 1, pos + 2)
    if major ~= 3 or minor > 4 then return nil, "no" end
    local len = u16(buf, pos + 3)
    if len == 0 or len > 16384 + 2048 then return nil, "no" end
    local body = sub(buf, pos + 5, pos + 4 + len)
    parts[#parts + 1] = body
    have = have + #body
    if #body < len then                                                 -- record not all here
      if want and have >= want then break end
      return nil, "more"
    end
    if have >= 4 and not want then
      local hs = table.concat(parts)
      if byte(hs, 1) ~= 0x01 then return nil, "no" end                 -- ClientHello
      want = 4 + u24(hs, 2)
    end
    if want and have >= want then break end
    pos = pos + 5 + len
  end
  return table.concat(parts)
end

-- Reads the extensions of a complete ClientHello body (hs: handshake header included).
local function client_hello(hs)
  local len = 4 + u24(hs, 2)
  local p = 5 + 2 + 32                                       -- header, version, random
  if p > len then return nil end
  p = p + 1 + byte(hs, p)                                    -- session id
  if p + 1 > len then return nil end
  p = p + 2 + u16(hs, p)                                     -- cipher suites
  if p > len then return nil end
  p = p + 1 + byte(hs, p)                                    -- compression methods
  local info = { alpn = {} }
  if p > len then return info end                            -- no extensions (old clients)
  if p + 1 > len then return nil end
  local ext_end = p + 2 + u16(hs, p) - 1
  if ext_end > len then return nil end
  p = p + 2
  while p + 3 <= ext_end do
    local etype, elen = u16(hs, p), u16(hs, p + 2)
    local e, e_end = p + 4, p + 3 + elen
    if e_end > ext_end then return nil end
    if etype == 0 and elen >= 5 then                         -- server_name
      local list_end = e + 1 + u16(hs, e)
      local q = e + 2
      while q + 2 <= list_end and q + 2 <= e_end do
        local ntype, nlen = byte(hs, q), u16(hs, q + 1)
        if q + 2 + nlen > e_end then return nil end
        if ntype == 0 then info.sni = sub(hs, q + 3, q + 2 + nlen):lower() end
        q = q + 3 + nlen
      end
    elseif etype == 16 and elen >= 2 then                    -- application_layer_protocol_negotiation
      local q, list_end = e + 2, math.min(e + 1 + u16(hs, e), e_end)
      while q <= list_end do
        local plen = byte(hs, q)
        if plen == 0 or q + plen > list_end then return nil end
        info.alpn[#info.alpn + 1] = sub(hs, q + 1, q + plen)
        q = q + 1 + plen
      end
    end
    p = e_end + 1
  end
  return info
end

-- The extensions of a whole ClientHello handshake message (its 4-byte header included), as
-- carried without TLS records (QUIC's CRYPTO frames: netproxy.udp), or nil when it is not one.
_M.client_hello = client_hello

-- TLS: a ClientHello, read whole (it may span records). On a match the second value holds
-- { sni = "name" or nil, alpn = { ... }, hello = the handshake message }.
function _M.tls(buf)
  local hs, verdict = handshake_bytes(buf)
  if not hs then return verdict end
  local info = client_hello(hs)
  if not info then return "no" end
  info.hello = hs
  return "match", info
end

return _M
