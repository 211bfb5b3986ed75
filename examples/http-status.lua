-- examples/http-status.lua: a small HTTP/1.1 responder written as a straight-line service:
-- GET /health answers "ok", GET /stats the proxies' counters as JSON, GET /bytes/N N bytes
-- (a load test's target: bench/services.sh); keep-alive as HTTP/1.1 wants it (Connection:
-- close ends it).
--   build/netproxy examples/http-status.lua
--   curl -s http://127.0.0.1:8080/stats
local core = require "netproxy.core"

local MAX_HEADERS = 100

-- A minimal JSON encoder for the stats table: numbers, strings and nested tables.
local function json(v)
  local t = type(v)
  if t == "number" then return v % 1 == 0 and ("%d"):format(v) or tostring(v) end
  if t == "string" then return '"' .. v:gsub('[%c"\\]', function(c) return ("\\u%04x"):format(c:byte()) end) .. '"' end
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = json(k) .. ":" .. json(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

-- GET /bytes/N: N bytes of "x" (at most 1 MiB), each size made once.
local MAX_BYTES = 1024 * 1024
local filler = {}
local function bytes(n)
  n = tonumber(n)
  if not n or n > MAX_BYTES then return 404, "text/plain", "not found\n" end
  filler[n] = filler[n] or ("x"):rep(n)
  return 200, "text/plain", filler[n]
end

local ROUTES = {
  ["/health"] = function() return 200, "text/plain", "ok\n" end,
  ["/stats"] = function() return 200, "application/json", json(core.stats()) .. "\n" end,
}

local REASONS = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed" }

-- The head and the body go out in one write (a writev), never joined into one string.
local function respond(client, status, ctype, body, close)
  local head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n")
    :format(status, REASONS[status], ctype, #body, close and "Connection: close\r\n" or "")
  return client:write({ head, body })
end

-- Whether a header line is "Connection: close" (any case, blanks around the value); nil when
-- it is no Connection header. Only that header matters here, so the others are told apart by
-- where their first ":" is (a plain find) rather than cut up by a pattern: Lua's patterns
-- cost thousands of instructions a line, most of a request's parsing.
local function connection_close(h)
  if h:find(":", 1, true) ~= 11 then return nil end
  h = h:lower()
  if h:sub(1, 10) ~= "connection" then return nil end
  return h:find("^%s*close%s*$", 12) ~= nil
end

-- One request: its method, path and whether the client wants to close; nil at the end.
local function read_request(client)
  local line = client:read("*l")
  if not line then return nil end
  local method, path, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return false end
  local close = version == "1.0"
  for _ = 1, MAX_HEADERS do
    local h = client:read("*l")
    if not h then return nil end
    if h == "" then return method, path, close end
    local c = connection_close(h)
    if c ~= nil then close = c end
  end
  return false
end

proxy {
  name = "status",
  from = { type = "tcp", host = "127.0.0.1", port = 8080 },
  idle_timeout = 60,
  to = { type = "service", serve = function(client, conn)
    while true do
      local method, path, close = read_request(client)
      if method == nil then return end
      if method == false then return respond(client, 400, "text/plain", "bad request\n", true) end
      local query = path:find("?", 1, true)
      if query then path = path:sub(1, query - 1) end
      local route, n = ROUTES[path], path:sub(1, 7) == "/bytes/" and path:match("^%d+$", 8) or nil
      local status, ctype, body
      if method ~= "GET" then status, ctype, body = 405, "text/plain", "GET only\n"
      elseif n then status, ctype, body = bytes(n)
      elseif not route then status, ctype, body = 404, "text/plain", "not found\n"
      else status, ctype, body = route() end
      respond(client, status, ctype, body, close)
      if close then return end
    end
  end },
}
