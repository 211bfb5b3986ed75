-- netproxy.http: the bits of HTTP/1.x that the CONNECT connectors speak: reading a header
-- block with limits, parsing request and status lines, Basic credentials, host:port
-- authorities. Parsing is strict: anything unexpected is an error, never a guess.
local core = require "netproxy.core"
local stream = require "netproxy.stream"
local check = require "netproxy.check"
local addr = require "netproxy.addr"
local byte, char, sub, find, match = string.byte, string.char, string.sub, string.find, string.match
local concat, floor, math_min = table.concat, math.floor, math.min

local _M = {}

_M.MAX_HEADER = 16 * 1024

-- Reads everything up to and including the blank line that ends a header block.
-- Returns the block, or nil and why ("timeout", "closed", "too long", ...). window: read
-- ahead at most this many bytes past what was looked at (stream.read_until), for a head
-- whose body is then moved in C.
function _M.read_header_block(sock, max, timeout, window)
  local block, err = stream.read_until(sock, "\r\n\r\n", max or _M.MAX_HEADER, timeout, window)
  if not block then return nil, err end
  return block
end

-- Reads a request's header block, up to and including its blank line, judging it as it
-- comes: a bare LF (a request typed by hand, `nc` without -C) or a first line that is no
-- request line ends it at once, rather than waiting for a CRLF CRLF that may never come.
-- Returns the block, or nil and why ("bare LF", "malformed request line", "timeout",
-- "closed", "too long"). Each LF is looked at once: the search goes on from the last one.
-- window: as for read_header_block (a plain request's body behind it is spliced).
function _M.read_request_block(sock, max, timeout, window)
  max = math_min(max or _M.MAX_HEADER, stream.PEEK_MAX)
  local deadline = timeout and core.now() + timeout
  local want, from, first = 1, 1, true
  while true do
    local left = deadline and deadline - core.now()
    if left and left <= 0 then return nil, "timeout" end
    local buf, err = sock:peek(want, left, window and math_min(want - 1 + window, stream.PEEK_MAX))
    if not buf then return nil, err end
    while true do
      local lf = find(buf, "\n", from, true)
      if not lf or lf > max then break end
      if byte(buf, lf - 1) ~= 13 then return nil, "bare LF" end
      if first and not _M.parse_request(sub(buf, 1, lf - 2)) then return nil, "malformed request line" end
      first = false
      if lf >= 4 and sub(buf, lf - 3, lf) == "\r\n\r\n" then return sock:read(lf) end   -- (all buffered)
      from = lf + 1
    end
    if #buf >= max then return nil, "too long" end
    want = #buf + 1
  end
end

-- A header value without the blanks around it (no pattern: `(.-)[ \t]*$` backtracks over
-- every run of blanks inside the value).
local function trim(s)
  local i, j = 1, #s
  while i <= j and (byte(s, i) == 32 or byte(s, i) == 9) do i = i + 1 end
  while j >= i and (byte(s, j) == 32 or byte(s, j) == 9) do j = j - 1 end
  return sub(s, i, j)
end

-- Splits a header block into its first line and a table of headers (lower-case names;
-- a repeated header keeps its first value). Returns nil and why for a malformed block.
-- Lines end in CRLF; a bare CR or LF inside one makes the block malformed (real clients never
-- send one). Linear in the block: each line is cut with a plain find and matched anchored.
function _M.parse_block(block)
  local stop = find(block, "\r\n", 1, true)
  if not stop or find(block, "[\r\n]", 1) < stop then return nil, "no first line" end
  local first, headers, pos = sub(block, 1, stop - 1), {}, stop + 2
  while true do
    stop = find(block, "\r\n", pos, true)
    if not stop then break end
    local line = sub(block, pos, stop - 1)
    pos = stop + 2
    if line ~= "" then
      local name, colon = match(line, "^([!#$%%&'*+%-.^_`|~%w]+)():")
      if not name or find(line, "[\r\n]", colon) then return nil, "malformed header line" end
      name = name:lower()
      if headers[name] == nil then headers[name] = trim(sub(line, colon + 1)) end
    end
  end
  return first, headers
end

-- "HTTP/1.1 200 Connection established" -> 200, the line
function _M.parse_status(line)
  local code = line:match("^HTTP/1%.[01] (%d%d%d)[ \t]?[^\r\n]*$")
  if not code then return nil, "not an HTTP status line" end
  return tonumber(code)
end

-- "CONNECT host:443 HTTP/1.1" -> "CONNECT", "host:443", "1.1"
function _M.parse_request(line)
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(1%.[01])$")
  if not method then return nil, "not an HTTP/1.x request line" end
  return method, target, version
end

-- The header lines of a block parse_block accepted, in order, each as { name = lower-case
-- name, value = trimmed value, line = the line as sent }: for a proxy that forwards them
-- (repeated headers kept).
function _M.fields(block)
  local list, pos = {}, find(block, "\r\n", 1, true) + 2
  while true do
    local stop = find(block, "\r\n", pos, true)
    if not stop then break end
    local line = sub(block, pos, stop - 1)
    pos = stop + 2
    local name, colon = match(line, "^([^:]+)():")
    if name then list[#list + 1] = { name = name:lower(), value = trim(sub(line, colon + 1)), line = line } end
  end
  return list
end

-- An absolute URI of a proxy request ("http://host:8080/path?q") -> scheme (lower-case),
-- host, port (the scheme's default when left out), path ("/" when empty), and the authority
-- as written ("host:8080", for the Host header); nil and why for anything else. User information (user@host) is refused: no client sends it to a proxy.
local DEFAULT_PORT = { http = 80, https = 443, ws = 80, wss = 443, ftp = 21 }

function _M.parse_url(target)
  local scheme, rest = match(target, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URI" end
  scheme = scheme:lower()
  local slash = find(rest, "[/?#]")
  local authority = slash and sub(rest, 1, slash - 1) or rest
  local path = match(slash and sub(rest, slash) or "", "^[^#]*")   -- a fragment is the client's own
  if sub(path, 1, 1) ~= "/" then path = "/" .. path end          -- "", "?q"
  if authority == "" then return nil, "no host" end
  if find(authority, "@", 1, true) then return nil, "user information in the URI" end
  local host, port
  if match(authority, ":%d*$") then
    if match(authority, ":$") then authority = sub(authority, 1, -2)
    else
      host, port = _M.parse_authority(authority)
      if not host then return nil, port end
    end
  end
  if not host then
    host = match(authority, "^%[(.*)%]$") or authority
    if find(host, ":", 1, true) and not match(authority, "^%[") then return nil, "bad host" end
    local h, herr = check.host(host)
    if not h then return nil, herr end
    host, port = h, DEFAULT_PORT[scheme]
    if not port then return nil, "no port for scheme " .. scheme end
  end
  return scheme, host, port, path, authority
end

-- "host:port" or "[v6]:port" -> host, port; nil and why otherwise.
function _M.parse_authority(authority)
  local host, port = addr.split(authority)
  if not host then return nil, port end
  local h, herr = check.host(host)
  if not h then return nil, herr end
  if port < 1 then return nil, "bad port" end
  return h, port
end

_M.authority = addr.join     -- "host:port", "[v6]:port"

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function _M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d = { floor(n / 262144) % 64, floor(n / 4096) % 64, floor(n / 64) % 64, n % 64 }
    out[#out + 1] = B64:sub(d[1] + 1, d[1] + 1) .. B64:sub(d[2] + 1, d[2] + 1) ..
        (b and B64:sub(d[3] + 1, d[3] + 1) or "=") .. (c and B64:sub(d[4] + 1, d[4] + 1) or "=")
  end
  return concat(out)
end

function _M.unbase64(s)
  if #s % 4 ~= 0 or not s:match("^[%w+/]*=?=?$") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for j = i, i + 3 do
      local c = s:sub(j, j)
      if c == "=" then pad = pad + 1; n = n * 64 else n = n * 64 + (B64:find(c, 1, true) - 1) end
    end
    local bytes = char(floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
    out[#out + 1] = bytes:sub(1, 3 - pad)
  end
  return concat(out)
end

-- "Basic dXNlcjpwYXNz" -> "user", "pass"
function _M.parse_basic(value)
  local b64 = value and value:match("^[Bb][Aa][Ss][Ii][Cc] +([%w+/=]+)$")
  local decoded = b64 and _M.unbase64(b64)
  if not decoded then return nil end
  return decoded:match("^([^:]*):(.*)$")
end

-- A whole response, for the proxy side: "HTTP/1.1 403 Forbidden" with headers and a body.
function _M.response(code, reason, headers, body)
  body = body or ""
  local lines = { ("HTTP/1.1 %d %s"):format(code, reason) }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  lines[#lines + 1] = "Content-Length: " .. #body
  lines[#lines + 1] = "Connection: close"
  return concat(lines, "\r\n") .. "\r\n\r\n" .. body
end


-- An error answer of this proxy's own ("netproxy: detail"), then what the client still sends
-- is read and dropped for a moment (up to 1 MiB, 1 s, or its EOF), so that a client still
-- sending a refused request gets the answer rather than a reset.
function _M.refuse(client, code, reason, detail, headers)
  if client:write(_M.response(code, reason, headers, "netproxy: " .. detail .. "\n")) then
    stream.discard(client, 1024 * 1024, 1)
  end
end

return _M
