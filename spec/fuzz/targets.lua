-- spec/fuzz/targets.lua: what spec/fuzz/fuzz.lua feeds. One line per target in TARGETS below:
-- { name, module, function(mod, input) ... end, seeds }. The function calls the parser and
-- checks its contract with assert (what it returns, and how); a module that is not there (a
-- parser not written yet) skips its targets. Seeds: corpus files (a Lua pattern over the file
-- names in spec/fixtures/corpus/) and strings.
package.preload["netproxy.core"] = package.preload["netproxy.core"] or function()
  -- the parsers only need the core's address packing; stand-ins in pure Lua
  local core = {}
  function core.unpack_ip(b) return #b == 4 and ("%d.%d.%d.%d"):format(b:byte(1, 4)) or ("%02x"):rep(16):format(b:byte(1, 16)) end
  function core.pack_ip(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if a then return string.char(a % 256, b % 256, c % 256, d % 256) end
    if s:find(":", 1, true) then return ("\0"):rep(15) .. "\1" end
  end
  function core.now() return os.clock() end
  return core
end

local ffi = require "ffi"
pcall(ffi.cdef, "int inet_pton(int af, const char *src, void *dst);")
local pton_buf = ffi.new("uint8_t[16]")
local function pton(family, s) return ffi.C.inet_pton(family, s, pton_buf) == 1 end

local random, sub, find = math.random, string.sub, string.find

local _M = {}

-- ---------------------------------------------------------------- contracts

local VERDICTS = { match = true, no = true, more = true }

-- A probe answers match/no/more, and a "no" on a prefix stays "no" for the whole input
-- (dual decides on the bytes so far: a later byte must not undo it).
local function probe(fn, input)
  local verdict, info = fn(input)
  assert(VERDICTS[verdict], "verdict " .. tostring(verdict))
  if verdict == "match" and info ~= nil then assert(type(info) == "table" and type(info.alpn) == "table") end
  local k = random(0, #input)
  if fn(sub(input, 1, k)) == "no" then assert(verdict == "no", "a no on a prefix became " .. verdict) end
end

-- proxy_protocol.parse: a header and its length (within the input), "more" and how many
-- more bytes at the least (never past the longest header), or nil and why.
local function proxy_header(mod, input, version)
  local a, b = mod.parse(input, version)
  if a == "more" then
    assert(type(b) == "number" and b >= 1 and b % 1 == 0, "need " .. tostring(b))
    assert(#input + b <= 16 + 65535, "need past the longest header")
  elseif a == nil then
    assert(type(b) == "string")
  else
    assert(type(a) == "table" and (a.version == 1 or a.version == 2))
    assert(type(b) == "number" and b >= 1 and b <= #input, "length " .. tostring(b))
    if not a.local_ then assert(type(a.src) == "string" and a.src_port >= 0 and a.src_port <= 65535) end
  end
end

-- A header built for random addresses reads back the same.
local function proxy_roundtrip(mod, input)
  local v4 = random() < 0.5
  local function addr()
    if v4 then return ("%d.%d.%d.%d"):format(random(0, 255), random(0, 255), random(0, 255), random(0, 255)) end
    return "::1"
  end
  local src, dst, sport, dport = addr(), addr(), random(0, 65535), random(0, 65535)
  local function auth(h, p) return (h:find(":") and "[" .. h .. "]" or h) .. ":" .. p end
  for _, version in ipairs({ "v1", "v2" }) do
    local bytes = mod.build(version, auth(src, sport), auth(dst, dport))
    local header, len = mod.parse(bytes .. input, "any")
    assert(type(header) == "table" and len == #bytes, version .. " header did not read back")
    if v4 then assert(header.src == src and header.dst == dst and header.src_port == sport and header.dst_port == dport) end
  end
end

local function http_block(mod, input)
  local first, headers = mod.parse_block(input)
  if first == nil then return assert(type(headers) == "string") end
  assert(not find(first, "[\r\n]"))
  for name, value in pairs(headers) do
    assert(name == name:lower() and not find(value, "[\r\n]"))
  end
end

local function http_authority(mod, input)
  local host, port = mod.parse_authority(input)
  if host == nil then return assert(type(port) == "string") end
  assert(type(host) == "string" and port >= 1 and port <= 65535 and port % 1 == 0)
end

local function base64(mod, input)
  assert(mod.unbase64(mod.base64(input)) == input, "base64 round trip")
  mod.unbase64(input)
  mod.parse_basic(input)
  mod.parse_basic("Basic " .. input)
end

-- lines.wrap over random chunkings: every byte comes out, in order, each call a line.
local function lines_wrap(mod, input)
  local calls = {}
  local max_line = random() < 0.3 and random(1, 64) or nil
  local hook = mod.wrap(function(line) calls[#calls + 1] = line end, max_line)
  local conn, out, pos = {}, {}, 1
  while pos <= #input do
    local n = random(1, random() < 0.5 and 8 or 4096)
    out[#out + 1] = hook(sub(input, pos, pos + n - 1), conn) or ""
    pos = pos + n
  end
  out[#out + 1] = hook("", conn, true) or ""
  assert(table.concat(out) == input, "line mode lost or moved bytes")
  for i = 1, #calls - 1 do
    assert(sub(calls[i], -1) == "\n" or #calls[i] >= (max_line or mod.MAX_LINE), "a call that is not a line")
  end
end

-- stream.read_until over a socket that delivers input in random pieces.
local function read_until(mod, input)
  local arrived, pos = "", 1
  local sock = {}
  function sock.peek(_, n)
    while #arrived < n do
      if pos > #input then return nil, "closed", arrived end
      local k = random(1, 2048)
      arrived, pos = arrived .. sub(input, pos, pos + k - 1), pos + k
    end
    return arrived
  end
  function sock.read(_, n)
    local got = sub(arrived, 1, math.min(n, 65536))
    arrived = sub(arrived, #got + 1)
    return got
  end
  local max = random(1, 20000)
  local got, err = mod.read_until(sock, "\r\n\r\n", max)
  local stop = select(2, find(input, "\r\n\r\n", 1, true))
  if stop and stop <= max then
    assert(got == sub(input, 1, stop), "wrong block")
  else
    assert(got == nil and (err == "too long" or err == "closed"), tostring(err))
  end
end

-- A validator returns a value, or nil and a message; never raises.
local SPECIAL = { 0, -0.0, 1, -1, 0.5, 0.0009, 65535, 65536, 2592000, 2592001, 1e9, 1e300, -1e300,
                  math.huge, -math.huge, 0 / 0, 2 ^ 53, 2 ^ 63 }
local function any_value(input)
  local r = random()
  if r < 0.5 then return input end
  if r < 0.8 then return SPECIAL[random(#SPECIAL)] end
  if r < 0.9 then return tonumber(input) or random() * 10 ^ random(-5, 12) end
  return ({ true, false, {}, { input }, function() end })[random(5)]
end

local VALIDATORS = { "host", "port", "seconds", "count", "bytes", "boolean", "string", "log_level",
                     "resolvers", "cidr", "cidrs", "listen_address", "paths", "workers" }

local function validators(mod, input)
  for _, name in ipairs(VALIDATORS) do
    local v, err = mod[name](any_value(input))
    assert(v ~= nil or type(err) == "string", name .. " gave neither a value nor a message")
  end
  local ranged = mod.int_range(16, 65536, "bytes")
  assert(ranged(any_value(input)) or true)
end

-- check.ipv4/ipv6 read addresses as inet_pton does.
local function addresses(mod, input)
  if #input > 60 or find(input, "\0", 1, true) then input = sub(input:gsub("%z", ""), 1, 60) end
  assert((mod.ipv4(input) ~= nil) == pton(2, input), "ipv4 disagrees with inet_pton on " .. input)
  assert((mod.ipv6(input) ~= nil) == pton(10, input), "ipv6 disagrees with inet_pton on " .. input)
end

local function clashes(mod, input)
  local list = {}
  for host in input:gmatch("[^\n]+") do
    list[#list + 1] = { host = host, port = random(0, 3), label = "p", where = "f:1" }
    if #list > 20 then break end
  end
  for _, c in ipairs(mod.listen_clashes(list)) do assert(type(c.message) == "string") end
end

-- SOCKS5 messages (netproxy.socks5, once it exists): whatever comes back, no error.
local function socks5(mod, input)
  for _, name in ipairs({ "parse_greeting", "parse_auth", "parse_request", "parse_method_reply",
                          "parse_auth_reply", "parse_reply" }) do
    if mod[name] then mod[name](input) end
  end
end

-- ---------------------------------------------------------------- seeds

local function proxy_seeds(pp)
  local seeds = { "PROXY UNKNOWN\r\n", "PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n",
                  "\r\n\r\n\0\r\nQUIT\n\32\0\0\0" }
  seeds[#seeds + 1] = pp.build("v1", "203.0.113.7:4444", "192.0.2.1:443")
  seeds[#seeds + 1] = pp.build("v2", "203.0.113.7:4444", "192.0.2.1:443")
  local tlv = "\4\0\5hello"
  seeds[#seeds + 1] = "\r\n\r\n\0\r\nQUIT\n\33\17\0" .. string.char(12 + #tlv) .. ("\1"):rep(12) .. tlv
  return seeds
end

local HTTP = { "corpus:^connect%-curl", "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
               "GET / HTTP/1.1\r\nHost: a\r\n\r\n" }
local REPLIES = { "corpus:^connect%-reply", "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n" }
local TLS = { "corpus:^tls%-" }
local ADDRS = { "127.0.0.1", "::1", "::ffff:1.2.3.4", "2001:db8::/32", "10.0.0.0/8", "[::1]:53", "1:2:3:4:5:6:7:8" }

local TARGETS = {
  { "http.parse_block (requests)", "netproxy.http", http_block, HTTP },
  { "http.parse_block (replies)", "netproxy.http", http_block, REPLIES },
  { "http.parse_request", "netproxy.http", function(m, s) m.parse_request(s:match("^[^\r\n]*")) end, HTTP },
  { "http.parse_status", "netproxy.http", function(m, s) m.parse_status(s:match("^[^\r\n]*")) end, REPLIES },
  { "http.parse_authority", "netproxy.http", http_authority, { "www.example.com:443", "[::1]:8080", "a:0" } },
  { "http base64 and Basic", "netproxy.http", base64, { "YWxpY2U6c2VjcmV0", "Basic YWxpY2U6c2VjcmV0" } },
  { "proxy_protocol.parse v1", "netproxy.proxy_protocol", function(m, s) proxy_header(m, s, "v1") end, proxy_seeds },
  { "proxy_protocol.parse v2", "netproxy.proxy_protocol", function(m, s) proxy_header(m, s, "v2") end, proxy_seeds },
  { "proxy_protocol.parse any", "netproxy.proxy_protocol", function(m, s) proxy_header(m, s, "any") end, proxy_seeds },
  { "proxy_protocol build/parse", "netproxy.proxy_protocol", proxy_roundtrip, { "", "after" } },
  { "probes.tls", "netproxy.probes", function(m, s) probe(m.tls, s) end, TLS },
  { "probes.ssh", "netproxy.probes", function(m, s) probe(m.ssh, s) end, { "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" } },
  { "probes.http", "netproxy.probes", function(m, s) probe(m.http, s) end, HTTP },
  { "probes.socks5", "netproxy.probes", function(m, s) probe(m.socks5, s) end, { "\5\1\0", "\5\2\0\2" } },
  { "lines.wrap", "netproxy.lines", lines_wrap, { "EHLO a\r\nMAIL FROM:<a@b>\r\n", "no newline at all" } },
  { "stream.read_until", "netproxy.stream", read_until, HTTP },
  { "check validators", "netproxy.check", validators, ADDRS },
  { "check.ipv4/ipv6 vs inet_pton", "netproxy.check", addresses, ADDRS },
  { "check.listen_clashes", "netproxy.check", clashes, { "localhost\n::1\n0.0.0.0\n127.0.0.1\n::\nname" } },
  { "socks5 messages", "netproxy.socks5", socks5, { "\5\1\0", "\5\1\0\1\127\0\0\1\0\80", "\1\5alice\6secret",
                                                     "\5\1\0\3\11example.com\1\187", "\5\0\0\4" .. ("\0"):rep(18) } },
}

-- The targets whose module loads: { { name, run = fn(input), seeds = { ... } } }, and the
-- list of those skipped ("name: why").
function _M.load()
  local fuzz = require "spec.fuzz.fuzz"
  local list, skipped = {}, {}
  for _, t in ipairs(TARGETS) do
    local name, modname, fn, seeds = t[1], t[2], t[3], t[4]
    local ok, mod = pcall(require, modname)
    if not ok then
      skipped[#skipped + 1] = name .. ": no module " .. modname
    else
      if type(seeds) == "function" then seeds = seeds(mod) end
      local all = {}
      for _, s in ipairs(seeds or {}) do
        local pattern = s:match("^corpus:(.*)$")
        if pattern then
          for _, c in ipairs(fuzz.corpus(pattern)) do all[#all + 1] = c end
        else
          all[#all + 1] = s
        end
      end
      list[#list + 1] = { name = name, seeds = all, run = function(input) return fn(mod, input) end }
    end
  end
  return list, skipped
end

return _M
