-- netproxy.http_forward: the HTTP proxy's plain http:// requests (connect as `from`).
--
-- A client pointed at a proxy sends an http:// URL as an absolute-URI request (`GET
-- http://host/path HTTP/1.1`), never CONNECT. Each request is authenticated and routed like a
-- CONNECT (gate: users, route or allow), sent to its server through the proxy's `to` in
-- origin form (`GET /path HTTP/1.1`, Host the URI's) without the hop-by-hop headers, and its
-- response streamed back as the server framed it (Content-Length, chunked, or the server's
-- close). The client's connection then serves its next request (keep-alive; pipelined
-- requests wait in the socket and are answered in order) until either side says close. A 101
-- answer to an Upgrade hands both sockets to the C relay. Bodies (Content-Length, close-delimited,
-- and each chunk's data; not the chunk size lines and trailers, read here) are moved by the C
-- core with sock:splice_to: spliced from socket to socket when neither side speaks TLS, copied
-- in C otherwise; nothing is held whole, and the bytes of a body never enter Lua.
local core = require "netproxy.core"
local http = require "netproxy.http"
local stream = require "netproxy.stream"
local gate = require "netproxy.gate"
local session = require "netproxy.session"

local concat, tostring, tonumber, pcall, ipairs = table.concat, tostring, tonumber, pcall, ipairs
local find, match, lower, format = string.find, string.match, string.lower, string.format

local _M = {}

local MAX_RESPONSE_HEADER = 64 * 1024
local MAX_CHUNK_LINE = 4096
-- What a head's or a chunk line's read takes ahead of what it has looked at: the body behind
-- it is spliced, so a read must not pull much of it into user space (64 KiB each before).
local HEAD_WINDOW = 4096
local CHUNK_LINE_WINDOW = 64

-- Never forwarded: they are about one hop, the client's to us or ours to the server
-- (RFC 9110 7.6.1), plus Expect (this proxy answers 100-continue itself).
local HOP = { connection = true, ["proxy-connection"] = true, ["keep-alive"] = true,
              ["proxy-authorization"] = true, ["proxy-authenticate"] = true, te = true,
              trailer = true, upgrade = true, expect = true }

-- Left out of a request: its Host is the URI's authority, whatever the client put there
-- (RFC 9112 3.2.2: what route and allow judged is what the server is told).
local REQUEST_DROP = { host = true }

-- ---------------------------------------------------------------- answers of our own

-- An error answer, then the connection ends (what the client still sends is drained a
-- moment so that it reads the answer rather than a reset). Returns the end word and detail.
local function fail(client, log, code, reason, detail, how, headers)
  log.status = code
  http.refuse(client, code, reason, detail, headers)
  return how, detail
end

-- ---------------------------------------------------------------- headers

-- The tokens of the Connection headers, lower-case: { close = true, upgrade = true, ... }.
local function connection_tokens(fields)
  local tokens = {}
  for _, f in ipairs(fields) do
    if f.name == "connection" or f.name == "proxy-connection" then
      for t in f.value:gmatch("[^,%s]+") do tokens[lower(t)] = true end
    end
  end
  return tokens
end

-- The value of a header (repeats joined by ", "), or nil.
local function value_of(fields, name)
  local parts = {}
  for _, f in ipairs(fields) do
    if f.name == name then parts[#parts + 1] = f.value end
  end
  return parts[1] and concat(parts, ", ")
end

-- How a message's body is delimited: "chunked", a byte count, or nil (no length said);
-- or nil and why for a Transfer-Encoding or Content-Length that cannot be trusted.
-- Transfer-Encoding wins over Content-Length (RFC 9112 6.3).
local function framing(fields)
  local te = value_of(fields, "transfer-encoding")
  if te then
    if match(lower(te), "chunked%s*$") then return "chunked" end
    return nil, "transfer-encoding " .. te
  end
  local length
  for _, f in ipairs(fields) do
    if f.name == "content-length" then
      local n = match(f.value, "^%d+$") and #f.value <= 15 and tonumber(f.value)
      if not n or (length and n ~= length) then return nil, "bad content-length" end
      length = n
    end
  end
  return length
end

-- The lines of fields to pass on: hop-by-hop ones and those the Connection header names
-- left out; Upgrade kept when upgrading; Content-Length left out beside a chunked
-- Transfer-Encoding (which wins: passing both on is how requests get smuggled).
local function passed_on(fields, tokens, upgrading, drop)
  local out, chunked = {}, value_of(fields, "transfer-encoding") ~= nil
  for _, f in ipairs(fields) do
    if (chunked and f.name == "content-length") or (drop and drop[f.name]) then
      -- left out
    elseif (not HOP[f.name] and not tokens[f.name]) or (upgrading and f.name == "upgrade") then
      out[#out + 1] = f.line
    end
  end
  return out
end

-- ---------------------------------------------------------------- bodies

-- A body on its way: from src to dst, each read bounded by timeout, the bytes counted.
-- Failures say which side failed (p.src_name or p.dst_name: "client" or "server") and why.
local function pipe(src, dst, timeout, src_name, dst_name)
  return { src = src, dst = dst, timeout = timeout, src_name = src_name, dst_name = dst_name, bytes = 0 }
end

local function put(p, data)
  local ok, err = p.dst:write(data)
  if not ok then return nil, p.dst_name, err end
  p.bytes = p.bytes + #data
  return true
end

-- n bytes (nil: until src's EOF), moved by the C core (sock:splice_to): spliced through a
-- pipe when neither side speaks TLS, so the bytes enter neither Lua nor user space; copied in
-- C otherwise. Each wait for src is bounded by p.timeout, each for dst by its own timeout.
-- Returns true, or nil, side, why.
local function move(p, n)
  local moved, err, side, partial = p.src:splice_to(p.dst, n, p.timeout)
  p.bytes = p.bytes + (moved or partial)
  if not moved then return nil, side == "src" and p.src_name or p.dst_name, err end
  return true
end

-- One line of chunked framing (a size line, a CRLF, a trailer field), passed on as it is.
local function chunk_line(p)
  local l, err = stream.read_until(p.src, "\r\n", MAX_CHUNK_LINE, p.timeout, CHUNK_LINE_WINDOW)
  if not l then return nil, p.src_name, "chunked: " .. err end
  local ok, side, werr = put(p, l)
  if not ok then return nil, side, werr end
  return l
end

-- A chunked body passed through as it is (the framing kept), read chunk by chunk: each size
-- line, its data and CRLF, then the last chunk's trailer up to the blank line.
local function copy_chunked(p)
  while true do
    local size_line, side, err = chunk_line(p)
    if not size_line then return nil, side, err end
    local hex = match(size_line, "^(%x+)[ \t]*[;\r]")
    if not hex or #hex > 12 then return nil, p.src_name, "chunked: bad chunk size" end
    local size = tonumber(hex, 16)
    if size == 0 then
      repeat                                     -- trailer fields, then the blank line
        local l, tside, terr = chunk_line(p)
        if not l then return nil, tside, terr end
      until l == "\r\n"
      return true
    end
    local ok, cside, cerr = move(p, size)
    if not ok then return nil, cside, cerr end
    local crlf, lside, lerr = chunk_line(p)
    if not crlf then return nil, lside, lerr end
    if crlf ~= "\r\n" then return nil, p.src_name, "chunked: no CRLF after a chunk" end
  end
end

-- One body, by its framing ("chunked", a count, "close" or nil for none).
local function copy_body(how, p)
  if how == "chunked" then return copy_chunked(p) end
  if how == "close" then return move(p, nil) end
  if how and how > 0 then return move(p, how) end
  return true
end

-- ---------------------------------------------------------------- one request

-- The request's head from the client, parsed: a table, or nil and (end word, detail) after
-- answering; nil, "eof" when the client closes (or idles out) between requests.
local function read_request(conf, client, log)
  local block, err, partial = http.read_header_block(client, conf.max_header, conf.request_timeout, HEAD_WINDOW)
  if not block then
    if (err == "closed" or err == "timeout") and (partial or "") == "" then
      return nil, err == "closed" and "eof" or "closed", err == "timeout" and "idle keep-alive" or nil
    end
    if err == "too long" then
      return nil, fail(client, log, 431, "Request Header Fields Too Large", "request header too long", "client error")
    end
    return nil, "client error", "request: " .. tostring(err)
  end
  local first = http.parse_block(block)
  local method, target, version
  if first then method, target, version = http.parse_request(first) end
  if not method then return nil, fail(client, log, 400, "Bad Request", "malformed request", "client error") end
  log.method, log.url = method, target
  local fields = http.fields(block)
  return { method = method, target = target, version = version, fields = fields,
           tokens = connection_tokens(fields) }
end

-- Authentication and route, as a CONNECT gets them. Returns where the request goes ({ host,
-- port (as routed), path, authority (as the URI wrote it) }), or nil and (end word, detail)
-- after answering.
local function admit(conf, client, conn, proxy, req, log)
  if req.method == "CONNECT" then
    return nil, fail(client, log, 501, "Not Implemented", "CONNECT after plain requests: open a new connection", "refused")
  end
  local scheme, host, port, path, authority = http.parse_url(req.target)
  if not scheme then
    if find(req.target, "^/") then
      return nil, fail(client, log, 400, "Bad Request", "not a proxy request (want an absolute URI: http://host/path)", "refused")
    end
    return nil, fail(client, log, 400, "Bad Request", "bad URI: " .. tostring(host), "refused")
  end
  if scheme ~= "http" then
    local why = scheme == "https" and "https:// goes through CONNECT, not as a plain request"
                or "scheme " .. scheme .. ":// is not served (http:// is)"
    return nil, fail(client, log, 501, "Not Implemented", why, "refused")
  end
  if conf.users then
    local user, pass = http.parse_basic(value_of(req.fields, "proxy-authorization"))
    if not gate.authorized(conf.users, user, pass, conn) then
      return nil, fail(client, log, 407, "Proxy Authentication Required", "proxy authentication required", "refused",
                       { ('Proxy-Authenticate: Basic realm="%s"'):format(conf.realm or "netproxy") })
    end
    conn.stash.user = user
    core.set_user(user)                         -- the access log's user
  end
  local within, why = gate.admit(proxy, conn)
  if not within then return nil, fail(client, log, 429, "Too Many Requests", why, "refused") end
  local asked = http.authority(host, port)
  conn.stash.requested = asked
  local ok, to_host, to_port, bug, reason = pcall(gate.target, conf, host, port, conn)
  if not ok or bug then
    fail(client, log, 502, "Bad Gateway", "no route", "refused")
    error(ok and to_port or to_host, 0)          -- a bug in the script: logged as a Lua error
  end
  if not to_host then
    return nil, fail(client, log, 403, "Forbidden", conf.route and tostring(reason or "refused") or "target not allowed", "refused")
  end
  local routed = http.authority(to_host, to_port)
  log.url = "http://" .. routed .. path .. (routed ~= asked and " (for " .. asked .. ")" or "")
  return { host = to_host, port = to_port, path = path, authority = authority }
end

-- The server for host:port: the one kept from the last request when it is the same, else
-- reached through the proxy's `to` (session.reach: tcp, another proxy, a pool). Returns the
-- socket and whether it is a reused one, or nil and why.
local function upstream(proxy, conn, kept, host, port)
  local key = http.authority(host, port)
  if kept.sock and kept.key == key then return kept.sock, true end
  if kept.sock then kept.sock:close() end
  kept.sock, kept.key = nil, nil
  local sock, err = session.reach(proxy, { host = host, port = port }, conn)
  if not sock then return nil, tostring(err) end
  kept.sock, kept.key = sock, key
  conn.server = sock:peer()
  return sock, false
end

-- The response's head from the server: 1xx interim answers (not 101) passed on to the
-- client as they come. Returns status code, version, fields, block; or nil, why, "timeout".
local function read_response(server, client, timeout, interim)
  while true do
    local block, err, partial = http.read_header_block(server, MAX_RESPONSE_HEADER, timeout, HEAD_WINDOW)
    if not block then return nil, err, partial end
    local first = http.parse_block(block)
    local code = first and http.parse_status(first)
    if not code then return nil, "broken response: " .. format("%q", (first or block):sub(1, 60)) end
    if code >= 200 or code == 101 then
      return code, match(first, "^HTTP/(1%.%d)"), http.fields(block), first
    end
    if interim then                              -- 100 Continue, 103 Early Hints (not to HTTP/1.0)
      local ok, werr = client:write(block)
      if not ok then return nil, "client: " .. werr end
    end
  end
end

-- The request's head as the server gets it: origin form, Host from the URI, its other
-- fields less hop-by-hop ones, and a Via naming this hop (RFC 9110 7.6.3).
local function request_head(req, dest)
  local lines = { format("%s %s HTTP/%s", req.method, dest.path, req.version), "Host: " .. dest.authority }
  for _, l in ipairs(passed_on(req.fields, req.tokens, dest.upgrading, REQUEST_DROP)) do lines[#lines + 1] = l end
  lines[#lines + 1] = "Via: " .. req.version .. " netproxy"
  if dest.upgrading then lines[#lines + 1] = "Connection: Upgrade" end
  return concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Whether a response has a body, and how it is delimited ("close": until the server's EOF).
local function response_framing(method, code, fields)
  if method == "HEAD" or code == 204 or code == 304 or code < 200 then return nil end
  return framing(fields) or "close"            -- no length said (or an unknown coding): the close ends it
end

-- Methods a request of which may be sent again when no answer came (RFC 9110 9.2.2).
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, TRACE = true, PUT = true, DELETE = true }

-- Sends the request (head, then body) to the server and reads the response's head.
-- Returns code, version, fields, status line; or nil and (end word, detail) after answering
-- the client; or nil, "stale" when a kept server connection turned out closed meanwhile:
-- its head could not be written, or (an idempotent request without a body) not a byte of
-- an answer came. Nothing is lost then: it goes again on a new connection.
local function exchange(conf, client, conn, proxy, kept, req, dest, log)
  local server, reused = upstream(proxy, conn, kept, dest.host, dest.port)
  if not server then
    -- every pool server at its max_conns (netproxy.pool.FULL): 503, even after queue_timeout
    if find(reused, "every server is full", 1, true) then
      return nil, fail(client, log, 503, "Service Unavailable", reused, "connect failed")
    end
    if find(reused, "timeout", 1, true) then return nil, fail(client, log, 504, "Gateway Timeout", reused, "connect failed") end
    return nil, fail(client, log, 502, "Bad Gateway", reused, "connect failed")
  end
  local timeout = conf.response_timeout or 60
  if not server:write(request_head(req, dest)) then
    if reused then return nil, "stale" end
    return nil, fail(client, log, 502, "Bad Gateway", "server: write failed", "server error")
  end
  if dest.body and dest.body ~= 0 and req.version == "1.1" and lower(value_of(req.fields, "expect") or "") == "100-continue" then
    -- Expect is not passed on: the proxy says go on itself, then streams the body
    if not client:write("HTTP/1.1 100 Continue\r\n\r\n") then return nil, "client error", "write failed" end
  end
  local ok, side, err = copy_body(dest.body, pipe(client, server, conf.request_timeout or timeout, "client", "server"))
  if not ok then
    if side == "client" then return nil, "client error", "request body: " .. tostring(err) end
    return nil, fail(client, log, 502, "Bad Gateway", "server: request body: " .. tostring(err), "server error")
  end
  local code, version, fields, status = read_response(server, client, timeout, req.version == "1.1")
  if code then return code, version, fields, status end
  local nothing = (fields or "") == ""          -- not a byte of an answer
  if reused and nothing and not dest.body and IDEMPOTENT[req.method] and (version == "closed" or version == "reset") then
    return nil, "stale"
  end
  if version == "timeout" and nothing then
    return nil, fail(client, log, 504, "Gateway Timeout", "the server did not answer in " .. timeout .. "s", "timeout")
  end
  return nil, fail(client, log, 502, "Bad Gateway", "server: " .. tostring(version), "server error")
end

-- Forgets the kept server connection (closing it).
local function drop(kept)
  if kept.sock then kept.sock:close() end
  kept.sock, kept.key = nil, nil
end

-- A 101 to an Upgrade: its head to the client, then both sockets to the relay.
local function upgrade(client, conn, kept, fields, tokens, status)
  local head = { status }
  for _, l in ipairs(passed_on(fields, tokens, true)) do head[#head + 1] = l end
  head[#head + 1] = "Connection: Upgrade"
  if not client:write(concat(head, "\r\n") .. "\r\n\r\n") then return false, "client error", "write failed" end
  local server = kept.sock
  kept.sock, kept.key = nil, nil
  local ok, err = core.relay(client, server, nil, conn)
  if not ok then return false, "closed", tostring(err) end
  return "relayed"
end

-- One request, start to end. Returns true to serve the next one on this connection, or
-- false, end word, detail; or "relayed" after a 101 handed both sockets to the relay.
local function one(conf, client, conn, proxy, kept, log)
  local req, how, detail = read_request(conf, client, log)
  if not req then return false, how, detail end
  local dest, how2, detail2 = admit(conf, client, conn, proxy, req, log)
  if not dest then return false, how2, detail2 end
  local berr
  dest.body, berr = framing(req.fields)
  if berr then return false, fail(client, log, 400, "Bad Request", berr, "client error") end
  dest.upgrading = req.tokens.upgrade and value_of(req.fields, "upgrade") ~= nil

  local code, version, fields, status = exchange(conf, client, conn, proxy, kept, req, dest, log)
  if version == "stale" then
    drop(kept)
    code, version, fields, status = exchange(conf, client, conn, proxy, kept, req, dest, log)
  end
  if not code then
    drop(kept)
    return false, version, fields
  end
  log.status = code

  local rtokens = connection_tokens(fields)
  if code == 101 then
    if dest.upgrading then return upgrade(client, conn, kept, fields, rtokens, status) end
    drop(kept)
    return false, fail(client, log, 502, "Bad Gateway", "server: 101 to a request without Upgrade", "server error")
  end

  local rbody = response_framing(req.method, code, fields)
  -- the client's connection goes on when it asked for it and the body has a known end;
  -- the server's is kept likewise for the next request to the same host:port
  local persist = req.version == "1.1" and not req.tokens.close and rbody ~= "close"
  local server_persists = version == "1.1" and not rtokens.close and rbody ~= "close"
  -- the status line in this hop's version: a 1.1 client reads "HTTP/1.0" as "closing"
  local head = { (status:gsub("^HTTP/1%.[01]", "HTTP/1.1")) }
  for _, l in ipairs(passed_on(fields, rtokens, false)) do head[#head + 1] = l end
  head[#head + 1] = "Via: " .. (version or "1.1") .. " netproxy"
  if not persist then head[#head + 1] = "Connection: close" end
  if not client:write(concat(head, "\r\n") .. "\r\n\r\n") then
    drop(kept)
    return false, "client error", "write failed"
  end
  local down = pipe(kept.sock, client, conf.response_timeout or 60, "server", "client")
  local ok, side, err = copy_body(rbody, down)
  log.bytes = down.bytes
  if not ok then
    drop(kept)
    return false, side == "client" and "client error" or "server error", "response body: " .. tostring(err)
  end
  if not server_persists then drop(kept) end
  if not persist then return false, "closed", rtokens.close and "by the server" or "not persistent" end
  return true
end

-- The connection, request after request. Returns how it ended (an end word and a detail),
-- or nothing once a 101 handed it to the relay.
function _M.serve(conf, client, conn, proxy)
  core.serving(client)
  local kept, served = {}, 0
  while true do
    local log = { started = core.now(), bytes = 0 }
    local ok, how, detail = one(conf, client, conn, proxy, kept, log)
    if log.method and log.status then
      served = served + 1
      local took = core.now() - log.started
      conn:log("info", "%s %s %d %d bytes %.3fs", log.method, log.url, log.status, log.bytes or 0, took)
      core.access_log({ method = log.method, url = log.url, status = log.status, bytes = log.bytes or 0,
                        duration = took })
    end
    if ok == "relayed" then return end
    if not ok then
      if kept.sock then kept.sock:close() end
      return how, (detail and detail .. "; " or "") .. served .. (served == 1 and " request" or " requests")
    end
  end
end

return _M
