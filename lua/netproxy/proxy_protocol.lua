-- netproxy.proxy_protocol: HAProxy's PROXY protocol (v1 text, v2 binary), so that client
-- addresses survive a load balancer in front (`from = { ..., proxy_protocol = "v1" | "v2" |
-- "any" }`) or reach a server behind (`to = { ..., proxy_protocol = "v1" | "v2" }`).
-- parse() is a pure function over the bytes read so far, like the probes.
local core = require "netproxy.core"
local addr = require "netproxy.addr"
local bytes = require "netproxy.bytes"
local check = require "netproxy.check"
local byte, char, sub, find, concat = string.byte, string.char, string.sub, string.find, table.concat
local math_max = math.max

local _M = {}

local V2_SIGNATURE = "\r\n\r\n\0\r\nQUIT\n"
local V1_MAX = 107                 -- the longest v1 line, CRLF included
local V1_MIN = 15                  -- the shortest: "PROXY UNKNOWN\r\n"
local V2_MIN = 16                  -- signature, version and command, family, length

-- The first bytes of buf, in hex, for the log line of a client that sent no header.
local function first_bytes(buf)
  local shown = sub(buf, 1, 8):gsub(".", function(c) return ("%02x "):format(byte(c)) end)
  return shown:sub(1, -2) .. (#buf > 8 and " ..." or "")
end

local function v4(s) return check.ipv4(s) ~= nil end
local function v6(s) return check.ipv6(s) ~= nil end

local function port(s)
  local n = tonumber(s)
  if not s:match("^%d+$") or #s > 5 or n > 65535 then return nil end
  return n
end

local function parse_v1(buf)
  local stop = find(buf, "\r\n", 1, true)
  if not stop then
    if #buf >= V1_MAX then return nil, "v1 header without CRLF in " .. V1_MAX .. " bytes" end
    return "more", math_max(V1_MIN - #buf, byte(buf, -1) == 13 and 1 or 2)
  end
  if stop + 1 > V1_MAX then return nil, "v1 header longer than " .. V1_MAX .. " bytes" end
  local line = sub(buf, 1, stop - 1)
  if line == "PROXY UNKNOWN" or line:match("^PROXY UNKNOWN ") then
    return { version = 1, local_ = true }, stop + 1
  end
  local proto, src, dst, sport, dport = line:match("^PROXY (TCP[46]) (%S+) (%S+) (%d+) (%d+)$")
  if not proto then return nil, "malformed v1 header" end
  local ok = proto == "TCP4" and v4 or v6
  if not ok(src) or not ok(dst) or not port(sport) or not port(dport) then
    return nil, "malformed v1 addresses"
  end
  return { version = 1, src = src, src_port = port(sport), dst = dst, dst_port = port(dport) }, stop + 1
end

local u16 = bytes.u16

-- TLV types (the PROXY protocol's section 2.2) and the SSL TLV's sub-types.
local PP2_ALPN, PP2_AUTHORITY, PP2_UNIQUE_ID, PP2_SSL = 0x01, 0x02, 0x05, 0x20
local PP2_SSL_VERSION, PP2_SSL_CN, PP2_SSL_CIPHER = 0x21, 0x22, 0x23
local PP2_CLIENT_SSL, PP2_CLIENT_CERT_CONN = 0x01, 0x02

-- TLVs from i to stop: { [type] = value } (the last of a type), or nil for a broken list.
local function tlv_list(buf, i, stop)
  local list = {}
  while i <= stop do
    if i + 2 > stop then return nil end
    local t, len = byte(buf, i), u16(buf, i + 1)
    if i + 2 + len > stop then return nil end
    list[t] = sub(buf, i + 3, i + 2 + len)
    i = i + 3 + len
  end
  return list
end

-- What a v2 header's TLVs say, for conn.proxy_tlvs: alpn, authority, unique_id, and ssl =
-- { client = bits, verified = bool, version, cn, cipher } when the balancer terminated TLS;
-- raw = { [type] = bytes } holds every TLV as received.
local function decode_tlvs(buf, i, stop)
  local raw = tlv_list(buf, i, stop)
  if not raw then return nil end
  local out = { raw = raw, alpn = raw[PP2_ALPN], authority = raw[PP2_AUTHORITY], unique_id = raw[PP2_UNIQUE_ID] }
  local ssl = raw[PP2_SSL]
  if ssl and #ssl >= 5 then
    local subs = tlv_list(ssl, 6, #ssl) or {}
    out.ssl = { client = byte(ssl, 1), verified = sub(ssl, 2, 5) == "\0\0\0\0",
                version = subs[PP2_SSL_VERSION], cn = subs[PP2_SSL_CN], cipher = subs[PP2_SSL_CIPHER] }
  end
  return out
end

local function parse_v2(buf)
  if #buf < V2_MIN then return "more", V2_MIN - #buf end
  local ver_cmd, fam = byte(buf, 13, 14)
  if math.floor(ver_cmd / 16) ~= 2 then return nil, "v2 header with version " .. math.floor(ver_cmd / 16) end
  local cmd, len = ver_cmd % 16, u16(buf, 15)
  if cmd > 1 then return nil, "v2 header with command " .. cmd end
  if #buf < 16 + len then return "more", 16 + len - #buf end
  local header = { version = 2 }
  if cmd == 0 or fam == 0x00 then               -- LOCAL (health checks), or UNSPEC
    header.local_ = true
  elseif fam == 0x11 then                       -- TCP over IPv4
    if len < 12 then return nil, "v2 IPv4 header too short" end
    header.src, header.dst = core.unpack_ip(sub(buf, 17, 20)), core.unpack_ip(sub(buf, 21, 24))
    header.src_port, header.dst_port = u16(buf, 25), u16(buf, 27)
    header.tlvs = len > 12 and decode_tlvs(buf, 29, 16 + len) or nil
  elseif fam == 0x21 then                       -- TCP over IPv6
    if len < 36 then return nil, "v2 IPv6 header too short" end
    header.src, header.dst = core.unpack_ip(sub(buf, 17, 32)), core.unpack_ip(sub(buf, 33, 48))
    header.src_port, header.dst_port = u16(buf, 49), u16(buf, 51)
    header.tlvs = len > 36 and decode_tlvs(buf, 53, 16 + len) or nil
  else
    return nil, ("v2 header with family 0x%02x (want TCP)"):format(fam)
  end
  return header, 16 + len
end

-- parse(bytes, version) -> header, length | "more", need | nil, why. version is "v1", "v2"
-- or "any". need is how many more bytes the header takes at the least: reading no more than
-- that never takes a byte past the header. Bytes that cannot begin a header of an allowed
-- version are refused from the first one that cannot ("\5\1\0", a SOCKS5 greeting, at once).
function _M.parse(buf, version)
  local n = #buf
  local v1 = version ~= "v2" and sub(buf, 1, 6) == sub("PROXY ", 1, n)
  local v2 = version ~= "v1" and sub(buf, 1, 12) == sub(V2_SIGNATURE, 1, n)
  if v1 then
    if n < 6 then return "more", V1_MIN - n end
    return parse_v1(buf)
  end
  if v2 then
    if n < 12 then return "more", V2_MIN - n end
    return parse_v2(buf)
  end
  return nil, ("no PROXY %sheader (first bytes: %s)"):format(version == "any" and "" or version .. " ", first_bytes(buf))
end

-- Reads the header off the client socket and nothing past it: what follows (a TLS
-- ClientHello, say) stays in the socket for the next step. Each read takes no more than
-- parse() says the header still needs. parse judges what has come after every read of the
-- first V1_MAX bytes, so a client that does not speak the PROXY protocol is refused at its
-- first bytes, not at the timeout (as HAProxy's accept-proxy does); past them (a v2 header's
-- TLVs) only once the length it announced is in, so a client sending those a byte at a time
-- costs no more than one that sends them whole. Returns the header or nil, why.
function _M.read(sock, version, timeout)
  local deadline = timeout and timeout > 0 and core.now() + timeout
  local parts, have, goal = {}, 0, 0
  while true do
    if have >= goal or have < V1_MAX then
      local buf = concat(parts)
      parts = { buf }
      local header, n = _M.parse(buf, version)
      if header == nil then return nil, n end
      if header ~= "more" then
        if n < have then sock:unread(sub(buf, n + 1)) end   -- (reads stop at the header)
        return header
      end
      goal = have + n
    end
    local left = deadline and deadline - core.now() or timeout
    if deadline and left <= 0 then return nil, "timeout" end
    local chunk, err = sock:read(goal - have, left)
    if not chunk then return nil, err end
    parts[#parts + 1] = chunk
    have = have + #chunk
  end
end

local function tlv(t, value) return char(t) .. bytes.be16(#value) .. value end

-- The TLVs of a client whose TLS netproxy terminated (tls: conn.tls): ALPN, AUTHORITY (the
-- SNI), and SSL with its version, cipher and the client certificate's CN (HAProxy's
-- send-proxy-v2-ssl-cn). "" without TLS.
function _M.tls_tlvs(tls)
  if not tls or not tls.version then return "" end
  local out = {}
  if tls.alpn then out[#out + 1] = tlv(PP2_ALPN, tls.alpn) end
  if tls.sni then out[#out + 1] = tlv(PP2_AUTHORITY, tls.sni) end
  local subs = tlv(PP2_SSL_VERSION, tls.version) .. (tls.cipher and tlv(PP2_SSL_CIPHER, tls.cipher) or "")
               .. (tls.cn and tlv(PP2_SSL_CN, tls.cn) or "")
  local client = PP2_CLIENT_SSL + (tls.subject and PP2_CLIENT_CERT_CONN or 0)
  -- verify: 0 when a certificate was presented and verified, else not 0
  local verify = tls.verified and "\0\0\0\0" or "\0\0\0\1"
  out[#out + 1] = tlv(PP2_SSL, char(client) .. verify .. subs)
  return concat(out)
end

-- The header that tells the server about conn's client (src) and the address it reached
-- (dst); a v2 header carries the TLVs given (tls_tlvs).
function _M.build(version, client, reached, tlvs)
  local src, sport = addr.split(client or "")
  local dst, dport = addr.split(reached or "")
  local src_bin, dst_bin = src and core.pack_ip(src), dst and core.pack_ip(dst)
  local known = src_bin and dst_bin and #src_bin == #dst_bin
  if version == "v1" then
    if not known then return "PROXY UNKNOWN\r\n" end
    return ("PROXY %s %s %s %d %d\r\n"):format(#src_bin == 4 and "TCP4" or "TCP6", src, dst, sport, dport)
  end
  if not known then return V2_SIGNATURE .. "\32\0\0\0" end                      -- LOCAL
  local body = src_bin .. dst_bin .. bytes.be16(sport) .. bytes.be16(dport) .. (tlvs or "")
  return V2_SIGNATURE .. "\33" .. (#src_bin == 4 and "\17" or "\33") .. bytes.be16(#body) .. body
end

-- Sends the header on a `to` socket that has just reached the server (in clear text).
function _M.send(sock, conf, conn)
  if not conf.proxy_protocol then return sock end
  local tlvs = conf.proxy_protocol == "v2" and _M.tls_tlvs(conn.tls) or nil
  local ok, err = sock:write(_M.build(conf.proxy_protocol, conn.client, conn.reached, tlvs))
  if not ok then
    sock:close()
    return nil, "PROXY header: " .. err
  end
  return sock
end

return _M
