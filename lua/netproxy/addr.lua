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
local lower, find, gsub, match, sub = string.lower, string.find, string.gsub, string.match, string.sub

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

-- A pattern is matched label by label, with no Lua pattern: compiled to string.match, several
-- `*` in one label backtracked polynomially in C ("*-*-*.example.org" against an SNI of 2,048
-- dashes kept a worker 10 s), out of hook_budget's reach, on names a client chooses (SNI,
-- CONNECT and SOCKS5 targets). Here each label costs one pass over the name's label.

-- host pattern -> its labels. Patterns come from configs (a few), but a connector may pass
-- others: past 1,000 the cache starts again, rather than grow for ever.
local compiled, ncompiled = {}, 0

-- One label of a pattern: true for `*` alone (one label of at least one character), the text
-- itself without `*`, else the pieces between its stars: "web-*-x" -> { "web-", "-x" }.
local function compile_label(label)
  if label == "*" then return true end
  if not find(label, "*", 1, true) then return label end
  local pieces = {}
  for piece in (label .. "*"):gmatch("([^*]*)%*") do pieces[#pieces + 1] = piece end
  return pieces
end

-- "*.Example.com" -> { true, "example", "com" }
local function compile(pattern)
  local labels = compiled[pattern]
  if labels then return labels end
  labels = {}
  for label in (lower(pattern) .. "."):gmatch("([^.]*)%.") do labels[#labels + 1] = compile_label(label) end
  if ncompiled == 1000 then compiled, ncompiled = {}, 0 end
  compiled[pattern], ncompiled = labels, ncompiled + 1
  return labels
end

-- Does the label s (no dot in it) match the pieces of a label with stars? The first piece
-- must start s and the last end it; each one between is found at its leftmost place after
-- the one before: the leftmost place leaves the most room to the pieces after it, so no
-- other place needs trying (with `*` the only wildcard, nothing is ever backtracked). Linear
-- in #s.
local function glob_matches(pieces, s)
  local first, last = pieces[1], pieces[#pieces]
  if #first + #last > #s or sub(s, 1, #first) ~= first or sub(s, #s - #last + 1) ~= last then
    return false
  end
  local pos, stop = #first + 1, #s - #last          -- the middle pieces go within s[pos..stop]
  for i = 2, #pieces - 1 do
    local piece = pieces[i]
    if piece ~= "" then
      local a, b = find(s, piece, pos, true)
      if not a or b > stop then return false end
      pos = b + 1
    end
  end
  return true
end

local function label_matches(label, s)
  if label == true then return s ~= "" end
  if type(label) == "string" then return s == label end
  return glob_matches(label, s)
end

-- Does the host (a name or an address, IPv6 with or without brackets) match the pattern?
-- `*` never takes a dot, so the name has as many labels as the pattern, matched in turn.
function _M.host_matches(pattern, host)
  if type(host) ~= "string" then return false end
  if pattern == "*" then return true end
  host = lower(match(host, "^%[(.*)%]$") or host)
  local labels = compile(match(pattern, "^%[(.*)%]$") or pattern)
  local pos, n = 1, #labels
  for i = 1, n do
    local dot = find(host, ".", pos, true)
    if (dot == nil) ~= (i == n) then return false end   -- fewer labels, or more
    if not label_matches(labels[i], sub(host, pos, (dot or #host + 1) - 1)) then return false end
    pos = (dot or #host) + 1
  end
  return true
end

-- Validator for a host pattern alone (dual's sni and alpn): the pattern, or nil and why.
function _M.check_host_pattern(v)
  if type(v) ~= "string" or v == "" then
    return nil, "want a host pattern like \"*.example.com\", not " .. (v == "" and "an empty string" or type(v))
  end
  return v
end

-- A probe's sni and alpn (dual's and udp's), each a host pattern when given: true, or nil and
-- "sni: why".
function _M.check_probe_names(p)
  for _, k in ipairs({ "sni", "alpn" }) do
    if p[k] ~= nil then
      local ok, why = _M.check_host_pattern(p[k])
      if not ok then return nil, k .. ": " .. why end
    end
  end
  return true
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
