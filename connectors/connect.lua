-- connect: HTTP CONNECT, both ways.
--
-- As `to` (Net::Proxy's connect connector): reach host:port through an HTTP proxy that
-- accepts CONNECT. Parameters: host, port, proxy_host, proxy_port, proxy_user and proxy_pass
-- (Basic authentication), proxy_agent (User-Agent), reply_timeout (default: the proxy's
-- connect_timeout), max_header (bytes of reply header accepted, default 16 KiB). Any bytes
-- the proxy sends after its reply header belong to the tunnel and go to the client.
-- tls = true speaks TLS to the proxy itself (an HTTPS proxy, `-P https://`): its certificate
-- is verified by default (against `ca`, else the system's store) for proxy_host, or
-- verify_name; `verify = false` accepts any; `sni` (proxy_host's name by default), `cert` and
-- `key` (a client certificate), `min_version`, `handshake_timeout` as in `to = ssl`.
-- handshake() runs the CONNECT over a socket already connected to the proxy (chain's hops).
--
-- As `from`: be an HTTP CONNECT proxy. The client names its target in the request; the
-- proxy's `to` connector (tcp by default; connect, socks5 or chain to go on through other
-- proxies) goes there. Which targets are served: route(host, port, conn) decides (returning the target,
-- possibly rewritten, or nil and a reason to refuse with 403), else an `allow` list of
-- "host:port" patterns ("*.example.com:443", "127.0.0.1:*"; netproxy.addr says what `*`
-- matches: one DNS label, or everything when alone); with neither, nothing is served:
-- netproxy is never an open proxy by accident. users = { name = "password" } or
-- users = function(user, pass, conn) asks clients for Basic authentication (407).
-- Plain http:// requests (`GET http://host/path`) are forwarded too, unless http = false:
-- netproxy.http_forward serves the connection then. A client over the proxy's per_source or
-- per_user limit gets 429.
local core = require "netproxy.core"
local check = require "netproxy.check"
local http = require "netproxy.http"
local http_forward = require "netproxy.http_forward"
local addr = require "netproxy.addr"
local gate = require "netproxy.gate"
local proxy_protocol = require "netproxy.proxy_protocol"
local connectors = require "netproxy.connectors"

local ssl = assert(connectors.get("ssl"))

local concat, type, tostring, pcall, error = table.concat, type, tostring, pcall, error

local _M = {
  positions = { from = true, to = true },
  provides_target = true,     -- as `from`, the client says where to go
  answers_limits = true,      -- per_source / per_user refused with 429 (netproxy.gate.admit)
  sends_proxy_protocol = true,  -- through the tunnel, to the target
  pool_fields = { "proxy_host", "proxy_port" },   -- `servers` is a pool of proxies
}

local FROM_ONLY = { route = true, allow = true, users = true, realm = true, request_timeout = true,
                    http = true, response_timeout = true }
local TO_ONLY = { proxy_host = true, proxy_port = true, proxy_user = true, proxy_pass = true,
                  proxy_agent = true, reply_timeout = true, source = true }
-- TLS to the proxy: tls = true and the ssl connector's client parameters (see _M.check_proxy).
local TLS = { "ca", "verify", "sni", "verify_name", "cert", "key", "min_version", "handshake_timeout" }
TO_ONLY.tls = true
for _, k in ipairs(TLS) do TO_ONLY[k] = true end

_M.params = {
  host = check.host, port = check.port, max_header = check.int_range(1024, 65536, "bytes"),
  proxy_host = check.host, proxy_port = check.port, proxy_user = check.string,
  proxy_pass = check.string, proxy_agent = check.string, reply_timeout = check.seconds,
  route = check.func, allow = addr.check_patterns, users = gate.check_users, realm = check.string,
  request_timeout = check.seconds, source = check.address, http = check.boolean,
  response_timeout = check.seconds, tls = check.boolean,
}
for _, k in ipairs(TLS) do _M.params[k] = ssl.params[k] end

_M.from_only = FROM_ONLY

-- The checks of the `to` side, shared with chain's connect hops (which have no host and port
-- of their own: the next hop is their target).
function _M.check_proxy(conf)
  return _M.check_proxy_address(conf) or _M.check_proxy_tls(conf)
end

function _M.check_proxy_address(conf)
  if not conf.proxy_host or not conf.proxy_port then return "missing proxy_host or proxy_port" end
  if conf.proxy_port == 0 then return "proxy_port 0 is not a port to connect to" end
end

-- tls = true: the TLS context to the proxy, built now (a bad ca or cert is a config error)
-- by the ssl connector's checks, with proxy_host as the name to send and verify.
function _M.check_proxy_tls(conf)
  if not conf.tls then
    for _, k in ipairs(TLS) do
      if conf[k] ~= nil then return ("'%s' goes with tls = true (TLS to the proxy)"):format(k) end
    end
    return
  end
  local side = { host = conf.proxy_host }
  for _, k in ipairs(TLS) do side[k] = conf[k] end
  local problem = ssl.check_tls(side, false)
  if problem then return "tls to the proxy: " .. problem end
  conf._proxy_tls = { ctx = side._tls, names = side._tls_names, timeout = side.handshake_timeout }
end

function _M.check(conf, position, ctx)
  return gate.check_sides(conf, position, ctx, { from = FROM_ONLY, to = TO_ONLY }, _M.check_proxy)
end

-- What this `from` serves without the relay, which a hook would never see (config.lua's
-- check_effects refuses a hook then), or nil.
function _M.unrelayed(conf)
  if conf.http ~= false then return "plain http:// requests (forwarded without the relay): set http = false to serve CONNECT only" end
end

-- ---------------------------------------------------------------- to: through a proxy

-- TLS to an HTTPS proxy, on sock connected to it (directly or through a chain's hops).
local function proxy_tls(sock, t, conn, proxy)
  local ok, info = sock:tls(t.ctx, { sni = t.names.sni, verify_name = t.names.verify_name, timeout = t.timeout })
  if not ok then return nil, "proxy " .. proxy .. ": tls: " .. info end
  conn:log("info", "tls to the proxy %s: %s", proxy, info)
  return true
end

-- CONNECT over sock, already connected to the proxy (directly, or through the hops of a
-- chain before it), to conf.host:conf.port; the proxy's answer read. Returns sock, or nil
-- and why (sock closed then).
function _M.handshake(sock, conf, conn)
  local proxy = http.authority(conf.proxy_host, conf.proxy_port)
  if conf._proxy_tls then
    local ok, err = proxy_tls(sock, conf._proxy_tls, conn, proxy)
    if not ok then sock:close() return nil, err end
  end
  local target = http.authority(conf.host, conf.port)
  local request = { "CONNECT " .. target .. " HTTP/1.1", "Host: " .. target }
  if conf.proxy_user then
    request[#request + 1] = "Proxy-Authorization: Basic " .. http.base64(conf.proxy_user .. ":" .. (conf.proxy_pass or ""))
  end
  if conf.proxy_agent then request[#request + 1] = "User-Agent: " .. conf.proxy_agent end
  local ok, werr = sock:write(concat(request, "\r\n") .. "\r\n\r\n")
  if not ok then sock:close() return nil, "proxy " .. proxy .. ": " .. werr end

  local block, rerr, partial = http.read_header_block(sock, conf.max_header, conf.reply_timeout or conn.connect_timeout)
  if not block then
    sock:close()
    if rerr == "too long" then return nil, "proxy " .. proxy .. ": reply header too long" end
    if partial and partial ~= "" then
      return nil, ("proxy %s: %s after %q"):format(proxy, rerr, partial:sub(1, 60))
    end
    return nil, "proxy " .. proxy .. ": " .. rerr
  end
  local status = block:match("^[^\r\n]*")
  local code = http.parse_status(status)
  if not code then
    sock:close()
    return nil, ("proxy %s answered garbage: %q"):format(proxy, status:sub(1, 60))
  end
  if code < 200 or code > 299 then
    sock:close()
    return nil, "proxy " .. proxy .. " said: " .. status
  end
  conn:log("info", "proxy %s: %s", proxy, status)
  return sock
end

-- The tunnel: the proxy reached, then CONNECT through it. connect_ssl builds on it.
function _M.tunnel(conf, conn)
  local sock, err = core.connect(conf.proxy_host, conf.proxy_port,
    { timeout = conn.connect_timeout, source = conf.source, keepalive = conf.tcp_keepalive })
  if not sock then return nil, "proxy " .. http.authority(conf.proxy_host, conf.proxy_port) .. ": " .. err end
  return _M.handshake(sock, conf, conn)
end

-- The tunnel, then the PROXY header (if asked for) to the target through it.
function _M.connect(conf, conn)
  local sock, err = _M.tunnel(conf, conn)
  if not sock then return nil, err end
  return proxy_protocol.send(sock, conf, conn)
end

-- ---------------------------------------------------------------- from: be a proxy

function _M.listen(conf)
  return conf.host, conf.port
end

local reply = http.refuse     -- an error answer, then the client's rest read and dropped

-- The request, checked; returns host, port, or nil after answering the client.
local function read_request(conf, client, conn)
  -- a window of 4 KiB: a plain request's body behind the head is spliced, not read ahead here
  local block, err = http.read_request_block(client, conf.max_header, conf.request_timeout, 4096)
  if not block then
    if err == "too long" then
      reply(client, 431, "Request Header Fields Too Large", "request header too long")
    elseif err == "bare LF" then
      reply(client, 400, "Bad Request", "malformed request: lines end in CRLF, not a bare LF")
    elseif err == "malformed request line" then
      reply(client, 400, "Bad Request", "malformed request line")
    end
    return nil, "request: " .. err
  end
  local first, headers = http.parse_block(block)
  local method, authority
  if first then method, authority = http.parse_request(first) end
  if not method then
    reply(client, 400, "Bad Request", "malformed request")
    return nil, "malformed request"
  end
  if method ~= "CONNECT" then
    client:unread(block)            -- a plain http:// request: accept passes it on
    return false, method
  end
  local host, port = http.parse_authority(authority)
  if not host then
    reply(client, 400, "Bad Request", "bad target: " .. port)
    return nil, ("bad target %q"):format(authority:sub(1, 100))
  end
  if conf.users then
    local user, pass = http.parse_basic(headers["proxy-authorization"])
    if not gate.authorized(conf.users, user, pass, conn) then
      reply(client, 407, "Proxy Authentication Required", "proxy authentication required",
            { ('Proxy-Authenticate: Basic realm="%s"'):format(conf.realm or "netproxy") })
      return nil, user and ("bad credentials for user %q"):format(user) or "no credentials"
    end
    conn.stash.user = user
  end
  return host, port
end

function _M.accept(conf, client, conn, proxy)
  local host, port = read_request(conf, client, conn)
  if host == false then            -- plain http://: forwarded (not by a dual branch: no `to` of its own)
    if proxy and conf.http ~= false then return "served", http_forward.serve(conf, client, conn, proxy) end
    reply(client, 405, "Method Not Allowed", "this proxy only tunnels (CONNECT)", { "Allow: CONNECT" })
    return nil, "method " .. port
  end
  if not host then return nil, port end
  local within, why = gate.admit(proxy, conn)
  if not within then
    reply(client, 429, "Too Many Requests", why)
    return nil, why
  end
  local asked = http.authority(host, port)
  conn.stash.requested = asked

  local ran, to_host, to_port, bug, reason = pcall(gate.target, conf, host, port, conn)
  if not ran then                 -- an error in route: the client hears 502, the log says why
    reply(client, 502, "Bad Gateway", "no route (an error in the proxy's route function)")
    error(to_host, 0)             -- (its message holds the script:line; the session logs it)
  end
  if not to_host then
    if bug then
      reply(client, 502, "Bad Gateway", "no route")
      error(to_port, 0)
    end
    reply(client, 403, "Forbidden", conf.route and tostring(reason or "refused") or "target not allowed")
    return nil, to_port
  end
  local target = http.authority(to_host, to_port)
  if target ~= asked then conn:log("notice", "CONNECT %s rewritten to %s", asked, target)
  else conn:log("info", "CONNECT %s", asked) end
  return { host = to_host, port = to_port }
end

-- The server is reached: tell the client its tunnel is open.
function _M.connected(conf, client, conn, server)
  return client:write("HTTP/1.1 200 Connection established\r\n\r\n")
end

-- The server could not be reached: tell the client why, as a proxy does.
function _M.failed(conf, client, conn, err)
  if tostring(err):find("every server is full", 1, true) then    -- a pool's max_conns (netproxy.pool.FULL)
    reply(client, 503, "Service Unavailable", tostring(err))
  elseif tostring(err):find("timeout", 1, true) then
    reply(client, 504, "Gateway Timeout", tostring(err))
  else
    reply(client, 502, "Bad Gateway", tostring(err))
  end
end

return _M
