-- socks5: SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), both ways.
--
-- As `from`: be a SOCKS5 server. The client greets with the methods it knows, we pick one
-- (none; or username/password when `users` is set: then only that one), it names a target in
-- a CONNECT request, and the proxy's `to` (tcp by default; connect, socks5 or chain to go on
-- through other proxies) goes there. Which targets are served: route(host, port, conn), else
-- the `allow` patterns, as connect's server side; with neither the config is refused. Every
-- message is read whole before it is acted on, at most 262 bytes (the protocol's largest),
-- never a byte past it; a malformed one closes the client with a log line. socks4 = true
-- also serves SOCKS4 and SOCKS4a clients on the same port (CONNECT only; no passwords in
-- that protocol, so not with `users`).
--
-- As `to`: reach host:port through a SOCKS5 proxy (proxy_host, proxy_port), with proxy_user
-- and proxy_pass when it wants them. remote_dns (default true) sends the name for the proxy
-- to resolve. Any bytes the proxy sends after its reply belong to the tunnel.
local core = require "netproxy.core"
local check = require "netproxy.check"
local addr = require "netproxy.addr"
local gate = require "netproxy.gate"
local socks5 = require "netproxy.socks5"
local proxy_protocol = require "netproxy.proxy_protocol"

local type, tostring, concat, ipairs, pairs, pcall, error = type, tostring, table.concat, ipairs, pairs, pcall, error
local byte = string.byte

local _M = {
  positions = { from = true, to = true },
  provides_target = true,       -- as `from`, the client says where to go
  answers_limits = true,        -- per_source / per_user refused with 0x02 (netproxy.gate.admit)
  sends_proxy_protocol = true,  -- through the tunnel, to the target
  pool_fields = { "proxy_host", "proxy_port" },   -- `servers` is a pool of proxies
}

local FROM_ONLY = { route = true, allow = true, users = true, request_timeout = true, socks4 = true }
local TO_ONLY = { proxy_host = true, proxy_port = true, proxy_user = true, proxy_pass = true,
                  remote_dns = true, reply_timeout = true, source = true }

local function short_string(v)   -- RFC 1929: user name and password are at most 255 bytes
  if type(v) ~= "string" or #v > 255 then return nil, "want a string of at most 255 bytes" end
  return v
end

_M.from_only = FROM_ONLY

_M.params = {
  host = check.host, port = check.port,
  route = check.func, allow = addr.check_patterns, users = gate.check_users,
  request_timeout = check.seconds, socks4 = check.boolean,
  proxy_host = check.host, proxy_port = check.port, proxy_user = short_string,
  proxy_pass = short_string, remote_dns = check.boolean, reply_timeout = check.seconds,
  source = check.address,
}

-- The checks of the `to` side, shared with chain's socks5 hops (which have no host and port
-- of their own: the next hop is their target).
function _M.check_proxy(conf)
  if not conf.proxy_host or not conf.proxy_port then return "missing proxy_host or proxy_port" end
  if conf.proxy_port == 0 then return "proxy_port 0 is not a port to connect to" end
  if conf.proxy_user and #conf.proxy_user == 0 then return "proxy_user: empty (RFC 1929 wants 1..255 bytes)" end
  if conf.proxy_pass and not conf.proxy_user then return "proxy_pass without proxy_user" end
  if conf.remote_dns == nil then conf.remote_dns = true end
end

function _M.check(conf, position, ctx)
  local problem = gate.check_sides(conf, position, ctx, { from = FROM_ONLY, to = TO_ONLY }, _M.check_proxy)
  if problem then return problem end
  if position == "from" then
    if conf.socks4 and conf.users then return "socks4 = true with users: SOCKS4 carries no password" end
    return
  end
  if conf.remote_dns == false and conf.host and core.pack_ip and not core.pack_ip(conf.host) and not core.resolve then
    return "remote_dns = false with a host name: this build cannot resolve names for it (give an address)"
  end
end

function _M.listen(conf)
  return conf.host, conf.port
end

-- Reads one whole message that `parse` recognises (netproxy.socks5's parsers), consuming
-- exactly its bytes. Returns it, or nil, why and the reply code the parser chose.
local function read_message(sock, parse, timeout)
  local deadline = timeout and core.now() + timeout
  local buf = ""
  while true do
    local msg, n, rep = parse(buf)
    if msg == nil then return nil, n, rep end
    if msg ~= "more" then
      sock:read(n)
      return msg
    end
    local left = deadline and deadline - core.now()
    if left and left <= 0 then return nil, "timeout" end
    local got, err, partial = sock:peek(n, left)
    if not got then
      partial = partial or buf
      return nil, #partial > 0 and ("%s after %d bytes"):format(err, #partial) or err
    end
    buf = got
  end
end

-- The host as text: the name, or the address bytes as an IP literal.
local function host_of(msg)
  if msg.atyp == socks5.NAME then return msg.addr end
  return core.unpack_ip(msg.addr)
end

-- ---------------------------------------------------------------- from: be a SOCKS5 server

-- "0,2" for a log line: each method once, the first few (a hostile greeting has 255).
local function offered(methods)
  local seen, list = {}, {}
  for _, m in ipairs(methods) do
    if not seen[m] then
      seen[m] = true
      list[#list + 1] = m
      if #list == 8 then list[#list + 1] = "..." break end
    end
  end
  return concat(list, ",")
end

-- Where it may go: route or allow, as connect's server side. Returns the target or nil, why
-- after answering the client with `refusal(bug)`.
local function decide(conf, client, conn, host, port, refuse)
  local asked = addr.join(host, port)
  conn.stash.requested = asked
  local ran, to_host, to_port, bug = pcall(gate.target, conf, host, port, conn)
  if not ran then                 -- an error in route: the client hears a general failure
    client:write(refuse(true))
    error(to_host, 0)             -- (its message holds the script:line; the session logs it)
  end
  if not to_host then
    client:write(refuse(bug))
    if bug then error(to_port, 0) end
    return nil, to_port
  end
  local who = conn.stash.user and (" for user %q"):format(conn.stash.user) or ""
  local target = addr.join(to_host, to_port)
  local proto = conn._socks4 and "SOCKS4" or "SOCKS5"
  if target ~= asked then conn:log("notice", "%s CONNECT %s%s rewritten to %s", proto, asked, who, target)
  else conn:log("info", "%s CONNECT %s%s", proto, asked, who) end
  return { host = to_host, port = to_port }
end

-- A request whose command we serve (CONNECT, UDP ASSOCIATE): any other is answered 0x07
-- from its second byte, without waiting for the address that follows.
local SERVED = { [socks5.CONNECT] = true, [socks5.UDP_ASSOCIATE] = true }
local function parse_served_request(buf)
  local ver, cmd = byte(buf, 1, 2)
  if ver == 5 and cmd and not SERVED[cmd] then
    return nil, socks5.command_name(cmd) .. " is not supported", socks5.COMMAND_NOT_SUPPORTED
  end
  return socks5.parse_request(buf)
end

-- SOCKS4 and 4a (socks4 = true): one request, one reply; the user id is only logged.
local function accept_socks4(conf, client, conn, proxy)
  conn._socks4 = true
  local req, err = read_message(client, socks5.parse_socks4_request, conf.request_timeout)
  local function reject() return socks5.socks4_reply(socks5.SOCKS4_REJECTED) end
  if not req then
    client:write(reject())
    return nil, "request: " .. err
  end
  if req.cmd ~= socks5.CONNECT then
    client:write(reject())
    return nil, "SOCKS4 BIND is not supported"
  end
  local host = host_of(req)
  if not check.host(host) or req.port == 0 then
    client:write(reject())
    return nil, ("bad target %q"):format(addr.join(host, req.port))
  end
  if req.user ~= "" then conn.stash.socks4_user = req.user end
  local within, why = gate.admit(proxy, conn)
  if not within then
    client:write(reject())
    return nil, why
  end
  return decide(conf, client, conn, host, req.port, reject)
end

function _M.accept(conf, client, conn, proxy)
  local timeout = conf.request_timeout
  if conf.socks4 then
    local first = client:peek(1, timeout)
    if first and first:byte(1) == 4 then return accept_socks4(conf, client, conn, proxy) end
  end

  -- 1. The greeting: the methods the client offers. With users, only username/password will do.
  local hello, err = read_message(client, socks5.parse_greeting, timeout)
  if not hello then return nil, "greeting: " .. err end
  local method = conf.users and socks5.USERPASS or socks5.NO_AUTH
  if not hello.offers[method] then
    client:write(socks5.method_reply(socks5.NO_ACCEPTABLE))
    return nil, ("no acceptable method (offered %s, want %d)"):format(offered(hello.methods), method)
  end
  local ok, werr = client:write(socks5.method_reply(method))
  if not ok then return nil, "client: " .. werr end

  -- 2. Username/password (RFC 1929).
  if conf.users then
    local auth, aerr = read_message(client, socks5.parse_auth, timeout)
    if not auth then return nil, "authentication: " .. aerr end
    local good = gate.authorized(conf.users, auth.user, auth.pass, conn)
    client:write(socks5.auth_reply(good))
    if not good then return nil, ("bad credentials for user %q"):format(auth.user) end
    conn.stash.user = auth.user
  end

  -- 3. The request: CONNECT to a name, an IPv4 or an IPv6 address.
  local req, rerr, rep = read_message(client, parse_served_request, timeout)
  if not req then
    if rep then client:write(socks5.reply(rep)) end
    return nil, rep == socks5.COMMAND_NOT_SUPPORTED and rerr or "request: " .. rerr
  end
  -- per_source, per_user: over the limit is "not allowed by ruleset" (0x02)
  local within, why = gate.admit(proxy, conn)
  if not within then
    client:write(socks5.reply(socks5.NOT_ALLOWED))
    return nil, why
  end
  if req.cmd == socks5.UDP_ASSOCIATE then      -- lives as long as this connection
    return require("netproxy.socks5_udp").associate(conf, client, conn, req)
  end
  local host = host_of(req)
  if not check.host(host) or req.port == 0 then
    client:write(socks5.reply(socks5.GENERAL_FAILURE))
    return nil, ("bad target %q"):format(addr.join(host, req.port))
  end

  -- 4. Where it may go: route or allow.
  return decide(conf, client, conn, host, req.port, function(bug)
    return socks5.reply(bug and socks5.GENERAL_FAILURE or socks5.NOT_ALLOWED)
  end)
end

-- The server is reached: success, with the address we connect from (BND.ADDR, BND.PORT);
-- none (zeros) when a service answers (server is nil).
function _M.connected(conf, client, conn, server)
  local ip, port = addr.split(server and server:localaddr() or "")
  local bin = ip and core.pack_ip(ip)
  if conn._socks4 then
    return client:write(socks5.socks4_reply(socks5.SOCKS4_GRANTED, port, bin and #bin == 4 and bin or nil))
  end
  if not bin then return client:write(socks5.reply(socks5.SUCCEEDED)) end
  return client:write(socks5.reply(socks5.SUCCEEDED, #bin == 4 and socks5.IPV4 or socks5.IPV6, bin, port))
end

-- How a failed connect reads as a reply code: the socket's token, or an upstream SOCKS
-- proxy's own answer ("proxy ... said: connection refused (5)").
local FAILURES = {
  { "timeout", socks5.TTL_EXPIRED }, { "TTL expired", socks5.TTL_EXPIRED },
  { "refused", socks5.REFUSED }, { "unreachable", socks5.HOST_UNREACHABLE },
  { "resolve:", socks5.HOST_UNREACHABLE }, { "not allowed", socks5.NOT_ALLOWED },
}

function _M.reply_code(err)
  err = tostring(err)
  -- a pool's max_conns (netproxy.pool.FULL; its text says queue_timeout, not a TTL expired)
  if err:find("every server is full", 1, true) then return socks5.GENERAL_FAILURE end
  for _, f in ipairs(FAILURES) do
    if err:find(f[1], 1, true) then return f[2] end
  end
  return socks5.GENERAL_FAILURE
end

function _M.failed(conf, client, conn, err)
  if conn._socks4 then return client:write(socks5.socks4_reply(socks5.SOCKS4_REJECTED)) end
  client:write(socks5.reply(_M.reply_code(err)))
end

-- ---------------------------------------------------------------- to: through a SOCKS5 proxy

-- The target as the request carries it: an address, or the name (remote_dns), or the name
-- resolved here.
local function target_address(conf)
  local bin = core.pack_ip(conf.host)
  if bin then return #bin == 4 and socks5.IPV4 or socks5.IPV6, bin end
  if conf.remote_dns ~= false then
    if #conf.host > 255 then return nil, "name longer than 255 bytes" end
    return socks5.NAME, conf.host
  end
  if not core.resolve then return nil, "remote_dns = false: this build cannot resolve " .. conf.host end
  local ips, err = core.resolve(conf.host)
  if not ips then return nil, "resolve: " .. tostring(err) end
  bin = core.pack_ip(ips[1])
  return #bin == 4 and socks5.IPV4 or socks5.IPV6, bin
end

-- SOCKS5 over sock, already connected to the proxy (directly, or through the hops of a chain
-- before it), to conf.host:conf.port. Returns sock, or nil and why (sock closed then).
function _M.handshake(sock, conf, conn)
  local proxy = addr.join(conf.proxy_host, conf.proxy_port)
  local timeout = conf.reply_timeout or conn.connect_timeout
  local function fail(fmt, ...)
    sock:close()
    return nil, "proxy " .. proxy .. fmt:format(...)
  end

  -- 1. Greeting: no authentication, and username/password when we have credentials.
  local methods = conf.proxy_user and { socks5.NO_AUTH, socks5.USERPASS } or { socks5.NO_AUTH }
  local ok, err = sock:write(socks5.greeting(methods))
  if not ok then return fail(": %s", err) end
  local chosen, cerr = read_message(sock, socks5.parse_method_reply, timeout)
  if not chosen then return fail(": greeting: %s", cerr) end

  -- 2. Username/password, if that is the method the proxy chose.
  if chosen.method == socks5.USERPASS and conf.proxy_user then
    ok, err = sock:write(socks5.auth(conf.proxy_user, conf.proxy_pass or ""))
    if not ok then return fail(": %s", err) end
    local answer, aerr = read_message(sock, socks5.parse_auth_reply, timeout)
    if not answer then return fail(": authentication: %s", aerr) end
    if not answer.ok then
      return fail(" refused the credentials of user %q (status %d)", conf.proxy_user, answer.status)
    end
  elseif chosen.method == socks5.NO_ACCEPTABLE then
    return fail(" accepts none of our methods (%s)%s", concat(methods, ","),
                conf.proxy_user and "" or ": it may want proxy_user and proxy_pass")
  elseif chosen.method ~= socks5.NO_AUTH then
    return fail(" chose method %d, which we did not offer", chosen.method)
  end

  -- 3. CONNECT, and the proxy's reply; bytes after it stay in the socket for the relay.
  local atyp, where = target_address(conf)
  if not atyp then return fail(": %s", where) end
  ok, err = sock:write(socks5.request(socks5.CONNECT, atyp, where, conf.port))
  if not ok then return fail(": %s", err) end
  local reply, rerr = read_message(sock, socks5.parse_reply, timeout)
  if not reply then return fail(": reply: %s", rerr) end
  if reply.rep ~= socks5.SUCCEEDED then return fail(" said: %s", socks5.reply_name(reply.rep)) end
  conn:log("info", "proxy %s: SOCKS5 CONNECT %s succeeded (bound %s)", proxy,
           addr.join(conf.host, conf.port), addr.join(host_of(reply) or "?", reply.port))
  return sock
end

function _M.connect(conf, conn)
  local sock, err = core.connect(conf.proxy_host, conf.proxy_port,
    { timeout = conn.connect_timeout, source = conf.source, keepalive = conf.tcp_keepalive })
  if not sock then return nil, "proxy " .. addr.join(conf.proxy_host, conf.proxy_port) .. ": " .. err end
  local tunnel, terr = _M.handshake(sock, conf, conn)
  if not tunnel then return nil, terr end
  return proxy_protocol.send(tunnel, conf, conn)
end

return _M
