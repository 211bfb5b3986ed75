-- netproxy.addr: host:port text and host patterns, one meaning everywhere.
--
-- split("host:port"), split("[2001:db8::1]:443"), split("8080", "localhost") -> host, port;
-- join(host, port) is the reverse. Patterns ("*.example.com:443", "10.0.0.*:*") say which
-- targets a proxy serves (connect's and socks5's allow lists) and which names a probe takes
-- (dual's sni and alpn). One meaning of `*`, the one of TLS certificate names (tls.c):
--   - `*` matches any run of characters inside one DNS label, never a dot: "*.example.com"
--     takes "www.example.com" but neither "a.b.example.com" nor "example.com"; "web-*.corp"
--     takes "web-1.corp"; a label that is `*` alone takes one label of at least one character;
--   - a host pattern that is `*` alone matches every host (names, IPv4, IPv6);
--   - a port pattern `*` matches every port, else the port is compared as a number;
--   - names are compared in lower case.
local tonumber, type, tostring, select, ipairs = tonumber, type, tostring, select, ipairs
local lower, find, gsub, match, concat = string.lower, string.find, string.gsub, string.match, table.concat

local _M = {}

-- "[v6]:port" | "host:port" -> host, port text (nothing checked but the shape), or nil, why.
-- wild: a pattern, whose IPv6 part may hold `*`.
local function split_raw(s, wild)
  local host, port = match(s, "^%[([^%]]*)%]:([^:]*)$")
  if host then
    if not (find(host, ":", 1, true) and match(host, wild and "^[%x:%.*]+$" or "^[%x:%.]+$")) then
      return nil, "bad IPv6 address in brackets '" .. host .. "'"
    end
    return host, port
  end
  host, port = match(s, "^([^:%[%]]+):([^:]*)$")
  if host then return host, port end
  if match(s, "^[%x:%.]+$") and select(2, gsub(s, ":", "")) > 1 then
    return nil, "want [IPv6]:PORT for an IPv6 address"
  end
  return nil, "want HOST:PORT"
end

-- split(s [, default_host]) -> host, port (a number 0..65535), or nil and why.
-- A bare port ("8080") takes default_host when one is given.
function _M.split(s, default_host)
  if type(s) ~= "string" then return nil, "want HOST:PORT" end
  local host, port
  if match(s, "^%d+$") then
    if not default_host then return nil, "want HOST:PORT, not a bare port" end
    host, port = default_host, s
  else
    host, port = split_raw(s)
    if not host then return nil, port end
  end
  local n = match(port, "^%d+$") and #port <= 5 and tonumber(port)
  if not n or n > 65535 then return nil, "bad port '" .. port .. "' (want 0..65535)" end
  return host, n
end

-- join(host, port) -> "host:port", or "[v6]:port" for an IPv6 address.
function _M.join(host, port)
  if find(host, ":", 1, true) then return "[" .. host .. "]:" .. tostring(port) end
  return host .. ":" .. tostring(port)
end

-- ---------------------------------------------------------------- patterns

local compiled = {}   -- host pattern -> anchored Lua pattern (patterns come from configs)

local function escape(s)
  return (gsub(s, "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"))
end

-- "*.Example.com" -> "^[^.]+%.example%.com$"
local function compile(pattern)
  local lua = compiled[pattern]
  if lua then return lua end
  local labels = {}
  for label in (lower(pattern) .. "."):gmatch("([^.]*)%.") do
    if label == "*" then labels[#labels + 1] = "[^.]+"
    else labels[#labels + 1] = (gsub(escape(label), "%*", "[^.]*")) end
  end
  lua = "^" .. concat(labels, "%.") .. "$"
  compiled[pattern] = lua
  return lua
end

-- Does the host (a name or an address, IPv6 with or without brackets) match the pattern?
function _M.host_matches(pattern, host)
  if type(host) ~= "string" then return false end
  if pattern == "*" then return true end
  host = match(host, "^%[(.*)%]$") or host
  pattern = match(pattern, "^%[(.*)%]$") or pattern
  return match(lower(host), compile(pattern)) ~= nil
end

-- A "host:port" pattern -> { host = pattern, port = number | "*" }, or nil and why.
function _M.parse_pattern(p)
  if type(p) ~= "string" then return nil, "want a \"host:port\" pattern, not " .. type(p) end
  local host, port = split_raw(p, true)
  if not host then return nil, "bad pattern '" .. p .. "': " .. port end
  if not match(host, "^[%w%.%-_*:]+$") then return nil, "bad pattern '" .. p .. "': bad host part" end
  if port == "*" then return { host = host, port = "*" } end
  local n = match(port, "^%d+$") and #port <= 5 and tonumber(port)
  if not n or n > 65535 then return nil, "bad pattern '" .. p .. "': port wants digits or *" end
  return { host = host, port = n }
end

-- Validator for an allow list: a pattern or a list of them; returns the list.
function _M.check_patterns(v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then return nil, "want a list of \"host:port\" patterns" end
  for _, p in ipairs(v) do
    local ok, err = _M.parse_pattern(p)
    if not ok then return nil, err end
  end
  return v
end

local parsed = {}     -- "host:port" pattern -> parse_pattern's table

-- Does host:port match one of the "host:port" patterns of list?
function _M.allowed(list, host, port)
  for _, p in ipairs(list) do
    local pat = parsed[p] or _M.parse_pattern(p)
    parsed[p] = pat
    if pat and (pat.port == "*" or pat.port == port) and _M.host_matches(pat.host, host) then
      return true
    end
  end
  return false
end

return _M
