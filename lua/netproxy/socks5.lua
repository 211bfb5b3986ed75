-- netproxy.socks5: the messages of SOCKS5 (RFC 1928) and its username/password method (RFC
-- 1929) as pure functions over bytes, like the probes: no socket, no C core, no error raised
-- on any input. Each parser takes the bytes received so far and answers
--   msg, length        a whole message: its fields, and how many bytes it took
--   "more", need       too few bytes: at least `need` in all are wanted (need > #buf)
--   nil, why [, rep]   malformed; rep is the reply code to send before closing, if any
-- Addresses stay as the protocol carries them: `atyp` (1 IPv4, 3 name, 4 IPv6) and `addr`
-- (4 or 16 raw bytes, or the name); the connector turns them into text with core.unpack_ip.
-- Builders raise on misuse (a name over 255 bytes, a port out of range).
local bytes = require "netproxy.bytes"
local byte, char, sub, concat = string.byte, string.char, string.sub, table.concat
local type, tostring, error, ipairs, unpack = type, tostring, error, ipairs, unpack

local _M = {}

_M.NO_AUTH, _M.USERPASS, _M.NO_ACCEPTABLE = 0, 2, 0xFF
_M.CONNECT, _M.BIND, _M.UDP_ASSOCIATE = 1, 2, 3
_M.IPV4, _M.NAME, _M.IPV6 = 1, 3, 4

-- Reply codes (RFC 1928 section 6) and their names, for logs.
_M.SUCCEEDED, _M.GENERAL_FAILURE, _M.NOT_ALLOWED = 0, 1, 2
_M.NETWORK_UNREACHABLE, _M.HOST_UNREACHABLE, _M.REFUSED = 3, 4, 5
_M.TTL_EXPIRED, _M.COMMAND_NOT_SUPPORTED, _M.ATYP_NOT_SUPPORTED = 6, 7, 8
local REPLY_NAMES = {
  [0] = "succeeded", "general SOCKS server failure", "connection not allowed by ruleset",
  "network unreachable", "host unreachable", "connection refused", "TTL expired",
  "command not supported", "address type not supported",
}

-- "connection refused (5)", "unassigned reply code (42)"
function _M.reply_name(code)
  return (REPLY_NAMES[code] or "unassigned reply code") .. " (" .. tostring(code) .. ")"
end

local COMMANDS = { [1] = "CONNECT", [2] = "BIND", [3] = "UDP ASSOCIATE" }
function _M.command_name(cmd)
  return COMMANDS[cmd] or ("command " .. tostring(cmd))
end

-- The largest message of each kind: the parsers never ask for more.
_M.MAX_GREETING = 2 + 255
_M.MAX_AUTH = 3 + 255 + 255
_M.MAX_REQUEST = 4 + 1 + 255 + 2

local ADDR_LEN = { [1] = 4, [4] = 16 }

local function more(need) return "more", need end

-- ---------------------------------------------------------------- client -> server

-- VER=5 NMETHODS METHODS...: { methods = { m, ... }, offers = { [m] = true } }
function _M.parse_greeting(buf)
  if #buf < 2 then
    if #buf == 1 and byte(buf, 1) ~= 5 then return nil, "version " .. byte(buf, 1) .. ", not 5" end
    return more(2)
  end
  local ver, n = byte(buf, 1, 2)
  if ver ~= 5 then return nil, "version " .. ver .. ", not 5" end
  if n == 0 then return nil, "greeting with no method" end
  if #buf < 2 + n then return more(2 + n) end
  local msg = { methods = { byte(buf, 3, 2 + n) }, offers = {} }
  for _, m in ipairs(msg.methods) do msg.offers[m] = true end
  return msg, 2 + n
end

-- RFC 1929: VER=1 ULEN UNAME PLEN PASSWD: { user = ..., pass = ... }. An empty password is
-- taken (clients send one), an empty user name is not.
function _M.parse_auth(buf)
  if #buf >= 1 and byte(buf, 1) ~= 1 then
    return nil, "username/password version " .. byte(buf, 1) .. ", not 1"
  end
  if #buf < 2 then return more(2) end
  local ulen = byte(buf, 2)
  if ulen == 0 then return nil, "empty user name" end
  if #buf < 3 + ulen then return more(3 + ulen) end
  local plen = byte(buf, 3 + ulen)
  local len = 3 + ulen + plen
  if #buf < len then return more(len) end
  return { user = sub(buf, 3, 2 + ulen), pass = sub(buf, 4 + ulen, len) }, len
end

-- ATYP ADDR PORT starting at buf[i]: atyp, addr, port, the index just past them
-- | "more", need | nil, why, rep
local function parse_address(buf, i)
  if #buf < i then return more(i) end
  local atyp = byte(buf, i)
  local alen = ADDR_LEN[atyp]
  if atyp == 3 then
    if #buf < i + 1 then return more(i + 1) end
    alen = byte(buf, i + 1)
    if alen == 0 then return nil, "empty name", _M.GENERAL_FAILURE end
    i = i + 1
  elseif not alen then
    return nil, "address type " .. atyp, _M.ATYP_NOT_SUPPORTED
  end
  local stop = i + alen + 2
  if #buf < stop then return more(stop) end
  local addr = sub(buf, i + 1, i + alen)
  if atyp == 3 and not addr:match("^[%w%-%._:]+$") then
    return nil, "bad character in the name", _M.GENERAL_FAILURE
  end
  return atyp, addr, bytes.u16(buf, i + alen + 1), stop + 1
end

-- VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT: { cmd, atyp, addr, port }. An unknown command or
-- address type comes back with the reply code that says so (7, 8).
function _M.parse_request(buf)
  if #buf >= 1 and byte(buf, 1) ~= 5 then return nil, "request version " .. byte(buf, 1) .. ", not 5" end
  if #buf < 2 then return more(2) end               -- (the command is judged on its own)
  if not COMMANDS[byte(buf, 2)] then
    return nil, "command " .. byte(buf, 2), _M.COMMAND_NOT_SUPPORTED
  end
  if #buf >= 3 and byte(buf, 3) ~= 0 then return nil, "reserved byte " .. byte(buf, 3) .. ", not 0" end
  if #buf < 4 then return more(5) end
  local atyp, addr, port, past = parse_address(buf, 4)
  if type(atyp) ~= "number" then return atyp, addr, port end
  return { cmd = byte(buf, 2), atyp = atyp, addr = addr, port = port }, past - 1
end

-- ---------------------------------------------------------------- server -> client

-- VER=5 METHOD: { method = m }
function _M.parse_method_reply(buf)
  if #buf >= 1 and byte(buf, 1) ~= 5 then return nil, "version " .. byte(buf, 1) .. ", not 5" end
  if #buf < 2 then return more(2) end
  return { method = byte(buf, 2) }, 2
end

-- RFC 1929's answer, VER STATUS: { ok = status == 0, status = s }. VER is 1; some servers
-- answer 5 (the SOCKS version), taken too: the status is what counts.
function _M.parse_auth_reply(buf)
  local ver = byte(buf, 1)
  if ver and ver ~= 1 and ver ~= 5 then return nil, "username/password reply version " .. ver end
  if #buf < 2 then return more(2) end
  local status = byte(buf, 2)
  return { ok = status == 0, status = status }, 2
end

-- VER=5 REP RSV ATYP BND.ADDR BND.PORT: { rep, atyp, addr, port }. RSV is not looked at.
function _M.parse_reply(buf)
  if #buf >= 1 and byte(buf, 1) ~= 5 then return nil, "reply version " .. byte(buf, 1) .. ", not 5" end
  if #buf < 4 then return more(5) end
  local atyp, addr, port, past = parse_address(buf, 4)
  if type(atyp) ~= "number" then return atyp, addr end
  return { rep = byte(buf, 2), atyp = atyp, addr = addr, port = port }, past - 1
end

-- ---------------------------------------------------------------- SOCKS4 and 4a

-- The longest SOCKS4a request: 8 bytes, a user id and a name, each up to 255 and a NUL.
_M.MAX_SOCKS4 = 8 + 256 + 256

-- The NUL-terminated string at buf[i]: the string and the index past its NUL | "more" | nil, why
local function cstring(buf, i, what)
  local stop = buf:find("\0", i, true)
  if not stop then
    if #buf - i + 1 >= 256 then return nil, what .. " longer than 255 bytes" end
    return "more"
  end
  if stop - i > 255 then return nil, what .. " longer than 255 bytes" end
  return sub(buf, i, stop - 1), stop + 1
end

-- VN=4 CD DSTPORT DSTIP USERID NUL [NAME NUL]: { cmd, atyp, addr, port, user }. SOCKS4a: an
-- address 0.0.0.x (x not 0) says a name follows the user id.
function _M.parse_socks4_request(buf)
  if #buf >= 1 and byte(buf, 1) ~= 4 then return nil, "version " .. byte(buf, 1) .. ", not 4" end
  if #buf >= 2 and byte(buf, 2) ~= 1 and byte(buf, 2) ~= 2 then return nil, "SOCKS4 command " .. byte(buf, 2) end
  if #buf < 9 then return more(9) end
  local user, past = cstring(buf, 9, "SOCKS4 user id")
  if user == "more" then return more(#buf + 1) end
  if not user then return nil, past end
  local msg = { cmd = byte(buf, 2), port = bytes.u16(buf, 3), atyp = 1, addr = sub(buf, 5, 8), user = user }
  local a, b, c, d = byte(buf, 5, 8)
  if a == 0 and b == 0 and c == 0 and d ~= 0 then         -- SOCKS4a
    local name, after = cstring(buf, past, "SOCKS4a name")
    if name == "more" then return more(#buf + 1) end
    if not name then return nil, after end
    if name == "" or not name:match("^[%w%-%._:]+$") then return nil, "bad SOCKS4a name" end
    msg.atyp, msg.addr, past = 3, name, after
  end
  return msg, past - 1
end

-- VN=0 CD DSTPORT DSTIP: 90 granted, 91 rejected or failed.
_M.SOCKS4_GRANTED, _M.SOCKS4_REJECTED = 90, 91

function _M.socks4_reply(cd, port, ipv4)
  return "\0" .. char(cd) .. bytes.be16(port or 0) .. (ipv4 or "\0\0\0\0")
end

-- ---------------------------------------------------------------- builders

local function check_port(port)
  if type(port) ~= "number" or port < 0 or port > 65535 or port % 1 ~= 0 then
    error("socks5: bad port " .. tostring(port), 3)
  end
end

local function address(atyp, addr, port)
  check_port(port)
  if atyp == 3 then
    if type(addr) ~= "string" or #addr < 1 or #addr > 255 then
      error("socks5: a name must be 1..255 bytes", 3)
    end
    return "\3" .. char(#addr) .. addr .. bytes.be16(port)
  end
  if type(addr) ~= "string" or #addr ~= ADDR_LEN[atyp] then
    error("socks5: address type " .. tostring(atyp) .. " wants " .. tostring(ADDR_LEN[atyp]) .. " bytes", 3)
  end
  return char(atyp) .. addr .. bytes.be16(port)
end

function _M.greeting(methods)
  if #methods < 1 or #methods > 255 then error("socks5: 1..255 methods", 2) end
  return "\5" .. char(#methods) .. char(unpack(methods))
end

function _M.method_reply(method)
  return "\5" .. char(method)
end

function _M.auth(user, pass)
  if #user < 1 or #user > 255 or #pass > 255 then
    error("socks5: user name 1..255 bytes, password 0..255", 2)
  end
  return concat({ "\1", char(#user), user, char(#pass), pass })
end

function _M.auth_reply(ok)
  return ok and "\1\0" or "\1\1"
end

function _M.request(cmd, atyp, addr, port)
  return "\5" .. char(cmd) .. "\0" .. address(atyp, addr, port)
end

-- A reply; without an address, 0.0.0.0:0 (what failures carry).
function _M.reply(rep, atyp, addr, port)
  if not atyp then atyp, addr, port = 1, "\0\0\0\0", 0 end
  return "\5" .. char(rep) .. "\0" .. address(atyp, addr, port)
end

return _M
