-- netproxy.session: one client connection, start to hand-off. The C core runs it in a
-- coroutine per connection: the `from` connector negotiates with the client, the `to`
-- connector reaches the server, and the C relay takes both sockets. When the connection
-- ends without a relay, run returns how (a name of the C core's end vocabulary: "refused",
-- "connect failed", "client error", "closed") and a detail for the log line.
local core = require "netproxy.core"
local connectors = require "netproxy.connectors"
local Conn = require "netproxy.conn"
local proxy_protocol = require "netproxy.proxy_protocol"
local addr = require "netproxy.addr"
local gate = require "netproxy.gate"

local _M = {}

-- What a `to` reaches, for the log: a unix socket by its path (even when a connect or socks5
-- from gave it the host and port its client asked for: the socket is what is reached).
local function describe(target)
  if target.path then return "unix:" .. target.path end
  if target.host and target.port then return addr.join(target.host, target.port) end
  return target.type
end

-- What the config fixes is worked out once per target table, not per connection: its name
-- in the log, and the relay's options (hooks, budget, STARTTLS sides).
local fixed = setmetatable({}, { __mode = "k" })

local function fixed_for(proxy, target)
  local f = fixed[target]
  if f and f.proxy == proxy then return f end
  local later
  if proxy.from._tls and proxy.from.start_cleartext and not proxy.from.starttls then later = { client = proxy.from } end
  if target._tls and target.start_cleartext and not target.starttls then
    later = later or {}
    later.server = target
  end
  f = { proxy = proxy, label = describe(target), later = later,
        -- Net::Proxy's rule: the hook of the connector whose socket the data arrived on
        relay = { to_server = proxy.from.hook, to_client = target.hook, may_starttls = later ~= nil } }
  fixed[target] = f
  return f
end

-- A copy of a connector table with some fields replaced (the target a client asked for).
local function with(conf, fields)
  local copy = {}
  for k, v in pairs(conf) do copy[k] = v end
  for k, v in pairs(fields) do copy[k] = v end
  return copy
end

-- A `to` with servers: the pool picks and retries; each server's own connector table, or,
-- when the client named the target (a CONNECT through a pool of proxies), that target with
-- the server's fields.
local function pool_connect(proxy, target, to, conn)
  local p = target._pool
  local own = target == p.conf
  -- a pool of proxies: conn.target is what they are asked for (the CONNECT target)
  local via = p.proxies and target.host and describe(target) or nil
  conn.target = via
  local sock, s = p:connect(conn, function(s, c)
    return to.connect(own and s.conf or with(target, s.fields), c)
  end, via, proxy.queue_timeout)
  if sock and not via then conn.target = s.name end
  return sock, s
end

-- The `to` connector reaches target (a table of it, or the proxy's `to` with the client's
-- host and port): through its pool, or by its connect. Returns the socket, or nil and why.
-- Sets conn.target. The CONNECT proxy's plain http:// forwarding (netproxy.http_forward)
-- reaches each request's server through here too.
local function reach(proxy, target, conn)
  local to = connectors.get(target.type)
  if not to.connect then return nil, "to = " .. target.type .. " reaches no server" end
  if target._pool then return pool_connect(proxy, target, to, conn) end
  conn.target = fixed_for(proxy, target).label
  core.set_target(conn.target)
  return to.connect(target, conn)
end

function _M.reach(proxy, fields, conn)
  return reach(proxy, with(proxy.to, fields), conn)
end

-- A client refused by accept() or a limit: told to on_denied (server{}'s, the proxy's).
local function denied(proxy, conn, why)
  gate.denied(proxy, conn, why)
  return "refused", why
end

-- proxy.on_close(conn, info) as the conn's closer. Made here, not in run: a function that
-- makes a closure closes its upvalues at every return (LuaJIT's UCLO), which it cannot
-- compile, and run is the one function every connection goes through.
local function on_close_of(proxy, conn)
  return function(info) return proxy.on_close(conn, info) end
end

function _M.run(proxy, client, id, peer, handle)
  local conn = Conn.new(proxy, id, peer, handle)
  local target = proxy.to

  conn._client_sock = client                 -- conn.reached asks it, only when wanted
  if proxy.on_close then conn:_when_closed(on_close_of(proxy, conn)) end
  if proxy.from.proxy_protocol then
    local header, err = proxy_protocol.read(client, proxy.from.proxy_protocol, proxy.connect_timeout)
    if not header then return "refused", "PROXY protocol: " .. tostring(err) end
    if not header.local_ then                 -- LOCAL: a health check from the balancer itself
      conn.proxied_by = conn.client
      conn.client = describe({ host = header.src, port = header.src_port })
      conn.reached = describe({ host = header.dst, port = header.dst_port })
      conn.proxy_tlvs = header.tlvs           -- a v2 header's TLVs (alpn, authority, ssl, raw)
      core.set_client(conn.client)
      conn:log("info", "PROXY v%d header from %s: client %s", header.version, conn.proxied_by, conn.client)
    end
  end

  -- Net::Server's reverse_lookups: conn.host is the client's name, or nil when it has none
  -- (the lookup is bounded by connect_timeout; a unix client has no address to look up)
  if proxy.reverse_lookups then
    local ip = addr.split(conn.client)
    if ip then conn.host = core.reverse(ip, proxy.connect_timeout) end
  end

  -- per_source by the PROXY header's client (a `from` answering in its protocol checks later)
  if proxy.limits_in_lua and not proxy.limits_by_connector then
    local ok, why = gate.admit(proxy, conn)
    if not ok then return denied(proxy, conn, why) end
  end

  -- accept(conn) hooks, server-wide then the proxy's: nil or false (and a reason) refuses
  if proxy.server_accept then
    local ok, why = proxy.server_accept(conn)
    if not ok then return denied(proxy, conn, tostring(why or "by accept()")) end
  end
  if proxy.accept then
    local ok, why = proxy.accept(conn)
    if not ok then return denied(proxy, conn, tostring(why or "by accept()")) end
  end

  local from = connectors.get(proxy.from.type)
  if from.accept then
    -- nil, why [, end word]: refused, unless the connector says how it ended
    local chosen, err, how = from.accept(proxy.from, client, conn, proxy)
    local stash = rawget(conn, "stash")       -- (made when first used: not made here)
    if stash and stash.user then core.set_user(stash.user) end    -- the access log's user
    -- "served", how, detail: the connector answered the whole connection itself (as a
    -- service's serve does; how is nil after its core.relay)
    if conn._limited then gate.denied(proxy, conn, conn._limited) end    -- (429, 0x02 answered)
    if chosen == "served" then return err, how end
    if not chosen then return how or "refused", tostring(err or "by " .. proxy.from.type) end
    if type(chosen) == "table" then target = chosen.type and chosen or with(target, chosen) end
  end

  local to = connectors.get(target.type)
  if to.serve then                            -- answered here: no server, no relay
    conn.target = "service"
    core.set_target(conn.target)
    -- a from that told its client of a tunnel (CONNECT's 200, SOCKS5's success) does so
    -- here too: the service is what the client reached
    if from.connected then
      local ok, cerr = from.connected(proxy.from, client, conn, nil)
      if not ok then return "client error", tostring(cerr) end
    end
    core.serving(client)
    return to.serve(target, client, conn, proxy)
  end
  local f = fixed_for(proxy, target)
  local server, err = reach(proxy, target, conn)
  if not server then
    if from.failed then from.failed(proxy.from, client, conn, err) end
    return "connect failed", tostring(err)
  end
  conn.server = server:peer()
  if from.connected then
    local ok, cerr = from.connected(proxy.from, client, conn, server)
    if not ok then return "client error", tostring(cerr) end
  end

  -- sides left in clear text for a hook to upgrade with conn:starttls()
  conn._starttls = f.later
  conn._client_sock = nil
  -- the conn object is kept by the relay only when there is a hook to hand it to
  local ok, why = core.relay(client, server, f.relay, conn)
  if not ok then return "closed", why end
end

-- Whether hook(data, conn, eof) may see its conn: two parameters or more, or "...".
local function takes_conn(hook)
  if not hook then return false end
  local info = debug.getinfo(hook, "u")
  return info.isvararg or info.nparams >= 2
end

-- The route to one fixed target (a `to` connector that says where it connects:
-- fixed(conf) -> { host =, port = [, source =] } or { path = }), or nil. Hooks may stay: the relay calls
-- them as usual, with a conn object the core asks `conn` for at the first call.
local function fixed_route(proxy, target)
  if target._tls or target._pool then return nil end
  local to = connectors.get(target.type)
  if not to or to.serve or not to.fixed then return nil end
  local where = to.fixed(target)
  if not where then return nil end
  local from_conf = proxy.from
  local route = { host = where.host, port = where.port, path = where.path, label = describe(target),
                  source = where.source, tcp_keepalive = target.tcp_keepalive,
                  connect_timeout = proxy.connect_timeout }
  if from_conf.hook or target.hook then
    route.to_server, route.to_client = from_conf.hook, target.hook
  end
  -- the hooks' conn: as run() would have made it, the server named as the core reached it;
  -- none is made when no hook takes one (function(data) ... end)
  if takes_conn(from_conf.hook) or takes_conn(target.hook) then
    route.conn = function(id, client, handle, server)
      local conn = Conn.new(proxy, id, client, handle)
      conn.target, conn.server = route.label, server
      return conn
    end
  end
  return route
end

-- A `from` that only looks at the client's first bytes to choose among fixed targets
-- (dual's probes: sniff(conf) -> pick, targets, notes, silent, fallback, timeouts): what the
-- core reads (src/proxy.c): picks, each target's route with the note the log gives it, in
-- pick's order, and silent and fallback as routes. Nil when a target is not fixed, or when
-- a hook would want the conn.sni that only the session's probe sets.
local function sniff_route(proxy, sniff)
  local wants_conn = false
  local function route_of(target)       -- nil when it is not fixed
    local r = fixed_route(proxy, target)
    wants_conn = wants_conn or (r and r.conn ~= nil)
    return r
  end
  local picks = {}
  for i, target in ipairs(sniff.targets) do
    picks[i] = route_of(target)
    if not picks[i] then return nil end
    picks[i].note = sniff.notes[i]
  end
  local silent = sniff.silent and route_of(sniff.silent)
  local fallback = sniff.fallback and route_of(sniff.fallback)
  if (sniff.silent and not silent) or (sniff.fallback and not fallback) then return nil end
  if wants_conn and sniff.reads_sni then return nil end
  return { sniff = {
    pick = sniff.pick, picks = picks, silent = silent or nil, fallback = fallback or nil,
    timeout = sniff.timeout, probe_timeout = sniff.probe_timeout, max_peek = sniff.max_peek,
  } }
end

-- A proxy whose connections have nothing to run here before the relay: no PROXY protocol,
-- no accept or on_close function, no reverse_lookups, no TLS, no pool, a `from` connector without a step of its
-- own (accept, connected, failed) and a fixed `to`; or a `from` that sniffs (above). The C
-- core then connects and relays by itself (conn.c): such a connection costs no coroutine
-- and no connector call. Returns what the core needs, or nil: every connection then runs
-- run() above.
function _M.route(proxy)
  local from_conf = proxy.from
  if from_conf.proxy_protocol or proxy.server_accept or proxy.accept or proxy.on_close or proxy.reverse_lookups then
    return nil
  end
  local from = connectors.get(from_conf.type)
  if not from or from_conf._tls then return nil end
  if from.sniff then
    local sniff = from.sniff(from_conf)
    return sniff and sniff_route(proxy, sniff)
  end
  if from.accept or from.connected or from.failed then return nil end
  return fixed_route(proxy, proxy.to)
end

-- What the C core runs in a session coroutine: one connection after another. Each ends
-- with a yield of core.task_done and how it ended; the core keeps the coroutine and
-- resumes it with the next connection's arguments, so a connection costs no new coroutine.
local yield, DONE = coroutine.yield, core.task_done

function _M.serve(proxy, client, id, peer, handle)
  while true do
    proxy, client, id, peer, handle = yield(DONE, _M.run(proxy, client, id, peer, handle))
  end
end

return _M
