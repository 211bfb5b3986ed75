-- netproxy.config: the config language. A script calls proxy{} and server{}; load() runs
-- it, checks every value and returns the normalised config for the C core, or the list of
-- problems, each as "file:line: message".
local check = require "netproxy.check"
local connectors = require "netproxy.connectors"
local lines = require "netproxy.lines"
local addr = require "netproxy.addr"
local udp_service = require "netproxy.udp_service"
local sandbox = require "netproxy.sandbox"
local listen = require "netproxy.listen"
local gate = require "netproxy.gate"
local pool          -- netproxy.pool, loaded by the first `to` with servers

local _M = {}

_M.DEFAULTS = {
  log_level = 2,                -- notice
  connect_timeout = 10,         -- seconds to reach the server (DNS included)
  negotiation_timeout = 30,     -- seconds the connectors may take before the relay
  idle_timeout = 3600,          -- seconds without a byte either way; 0 = never
  total_timeout = 0,            -- seconds a connection may last in all; 0 = no bound
  relay = "auto",               -- splice whenever nothing needs to see the bytes
  buffer_size = 64 * 1024,      -- copying relay: bytes held per direction
  pipe_size = 64 * 1024,        -- splice relay: size asked of each pipe
  max_connections = 0,          -- 0 = serve forever
  hook_budget = 1,              -- seconds one hook call may run; 0 = unbounded
  max_negotiating = 4096,       -- connections at once before the relay (dual's sniffing)
  queue_timeout = 1,            -- seconds a client past max_clients waits for a slot; 0 = none
  drain_timeout = 0,
  stop_timeout = 10,
  lua_memory = 0,
  lua_call_memory = 64 * 1024 * 1024,
  max_draining = 16,
  watchdog = 10,
  udp_idle_timeout = 30,        -- seconds a UDP flow lives without a datagram either way
  max_flows = 10000,            -- UDP flows at once per proxy; past it the longest idle goes
  ticket_rotate = 12 * 3600,    -- seconds a TLS session ticket key encrypts before the next one (src/tickets.c)
  limits_table = 16384,         -- entries of the per_source / per_user table (shared by the workers)
}

-- "256m", "1g", "64k" or bytes, as a number of bytes in lo..hi (0 allowed: no limit).
local function memory_size(lo, hi)
  local units = { k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 }
  return function(v)
    local n, unit = tostring(v):lower():match("^(%d+)([kmg]?)$")
    n = n and tonumber(n) * (units[unit] or 1)
    if n and (n == 0 or (n >= lo and n <= hi)) then return n end
    return nil, ("bad size '%s' (want bytes, or a number with k, m or g: %d..%d, or 0 for no limit)"):format(tostring(v), lo, hi)
  end
end

-- A rate in bytes a second: a number, or text such as "512k", "1MB", "10mb", "2.5m/s":
-- k, m, g are 1024, 1024^2, 1024^3, as in every size of the config (buffer_size, lua_memory,
-- shared); a "b" and a "/s" may follow. 0: no cap. At least 1k (slower would be read a few
-- bytes at a time), at most 1024g. Whole bytes.
local RATE_UNITS = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 }
local RATE_MIN, RATE_MAX = 1024, 1024 ^ 4

local function rate(v)
  local n
  if type(v) == "number" then
    n = v
  elseif type(v) == "string" then
    local text = v:lower():gsub("%s+", ""):gsub("/s$", "")
    local num, unit = text:match("^(%d+%.?%d*)([kmg]?)b?$")
    n = num and tonumber(num) * RATE_UNITS[unit]
  end
  if n and n == n and (n == 0 or (n >= RATE_MIN and n <= RATE_MAX)) then return math.floor(n) end
  return nil, ("bad rate '%s' (want bytes a second: a number, or with k, m or g, multiples of 1024, " ..
               "such as \"512k\" or \"1MB\"; 1k..1024g, or 0 for no cap)"):format(tostring(v))
end

-- bandwidth = { per_conn = RATE, per_source = RATE, per_proxy = RATE }, each way: a
-- connection's own cap, the cap its client address shares (IPv6 by /64) and the proxy's.
local BANDWIDTH_KEYS = { per_conn = true, per_source = true, per_proxy = true }

local function bandwidth(v)
  if type(v) ~= "table" then
    return nil, "want a table like { per_conn = \"1MB\", per_source = \"10MB\", per_proxy = \"100MB\" }"
  end
  local out = {}
  for k, r in pairs(v) do
    if not BANDWIDTH_KEYS[k] then
      return nil, ("unknown key '%s' (want per_conn, per_source, per_proxy)"):format(tostring(k))
    end
    local n, err = rate(r)
    if not n then return nil, k .. ": " .. err end
    out[k] = n
  end
  return out
end

-- Options a proxy may set for itself, falling back to server{}.
local PER_PROXY = {
  connect_timeout = check.seconds,
  negotiation_timeout = check.seconds,
  idle_timeout = check.seconds,
  total_timeout = check.seconds,
  relay = check.one_of("auto", "splice", "buffered"),
  buffer_size = check.bytes,
  hook_budget = check.seconds,
  max_negotiating = check.int_range(1, check.MAX_COUNT),
  queue_timeout = check.seconds,
  lua_call_memory = memory_size(64 * 1024, 4 * 1024 ^ 3),  -- one call into Lua (a hook, a resume)
  udp_idle_timeout = check.seconds,
  max_flows = check.count,
  backlog = check.backlog,
  reverse_lookups = check.boolean,  -- conn.host: the client's name (a PTR lookup) before accept()
  access_log = check.access_log,    -- { path = FILE | "syslog", format = "json" | "text" | TEMPLATE }
  bandwidth = bandwidth,            -- shaping, each way: per_conn, per_source, per_proxy
}

-- Parameters every connector takes, whatever its type.
local COMMON = {
  hook = check.func,
  hook_mode = check.one_of("chunk", "line"),
  proxy_protocol = check.one_of("v1", "v2", "any"),
  tcp_keepalive = function(v) return _M.check_keepalive(v) end,
}

-- tcp_keepalive = { idle = S, interval = S, count = N }: SO_KEEPALIVE, and the first probe
-- after idle seconds of silence, then one every interval, the peer dead after count
-- unanswered (each left out: the kernel's default, net.ipv4.tcp_keepalive_*).
function _M.check_keepalive(v)
  if type(v) ~= "table" then return nil, "want { idle = seconds, interval = seconds, count = probes }" end
  local most = { idle = 32767, interval = 32767, count = 127 }
  for k in pairs(v) do
    if not most[k] then return nil, ("unknown field '%s' (want idle, interval, count)"):format(tostring(k)) end
  end
  local out = {}
  for _, k in ipairs({ "idle", "interval", "count" }) do
    local n = v[k] ~= nil and tonumber(v[k])
    if v[k] ~= nil and (not n or n ~= math.floor(n) or n < 1 or n > most[k]) then
      return nil, ("%s: bad value '%s' (want 1..%d)"):format(k, tostring(v[k]), most[k])
    end
    out[k] = n or nil
  end
  return out
end

-- Guards: server{} ones apply to every proxy, a proxy's own come on top.
local GUARDS = {
  allow = check.cidrs,
  deny = check.cidrs,
  max_clients = check.count,
  accept = check.func,
  on_denied = check.func,         -- function(info): a client turned away by allow, deny or a limit
  per_source = gate.check_limit,  -- { max_conns = N, rate = "N/S", ipv6_prefix = 64 } per client address
  per_user = gate.check_limit,    -- the same per authenticated user (connect, socks5 with users)
}

local SERVER = {
  log_level = check.log_level,
  max_connections = check.count,
  pipe_size = check.bytes,
  connector_path = check.paths,
  resolvers = check.resolvers,
  stats = check.listen_address,
  workers = check.workers,
  reuseport = check.boolean,
  daemon = check.boolean,
  pid_file = check.string, user = check.string, group = check.string, chroot = check.string,
  log_file = check.string,
  -- runtime control: see docs/operations.md, "Runtime control"
  control = check.string,          -- the unix socket of `netproxy ctl`, opened before the privilege drop
  control_mode = function(v)       -- its mode, "0600" by default ("0660" with control_group)
    local s = tostring(v)
    if type(v) ~= "string" or not s:match("^0?[0-7][0-7][0-7]$") then return nil, "want an octal mode as a string, like \"0660\"" end
    return s
  end,
  control_group = check.string,    -- its group: members may connect too (SO_PEERCRED's gid)
  -- process life: see docs/operations.md
  drain_timeout = check.seconds,  -- a reload's old connections may run this long; 0 = no bound
  stop_timeout = check.seconds,   -- SIGTERM: live connections get this long
  max_draining = check.count,     -- old generations draining at once
  watchdog = check.seconds,       -- a worker whose loop stands still this long is replaced; 0 = off
  lua_memory = memory_size(1024 * 1024, 64 * 1024 ^ 3),    -- all of a worker's Lua; 0 = no cap
  syslog_ident = check.syslog_ident, syslog_facility = check.syslog_facility,
  syslog_logopt = check.syslog_logopt,
  -- lifecycle hooks and shared dicts: see docs/services.md
  on_start = check.func,          -- function(worker) in each serving process, after bind and privilege drop
  on_stop = check.func,           -- function() before a serving process exits
  on_bound = check.func,          -- function() once the listeners are bound, before the privilege drop
  on_log = check.func,            -- function(entry): the serving processes' log lines, instead of writing them
  shared = check.shared_dicts,    -- { name = "1m", ... }
  ticket_rotate = check.int_range(1, 30 * 24 * 3600, "seconds"),  -- TLS session ticket keys: a new one this often, 3 kept
  limits_table = check.int_range(16, 4 * 1024 * 1024),  -- per_source / per_user entries (a reload keeps the first)
}
for k, v in pairs(PER_PROXY) do SERVER[k] = v end
for k, v in pairs(GUARDS) do SERVER[k] = v end

-- What server{} and proxy{} accept, for the man page's spec and for tools.
_M.SERVER_OPTIONS, _M.PROXY_OPTIONS = SERVER, nil

local function as_is(v) return v end  -- from/to: checked by check_connector
local PROXY = { name = check.string, from = as_is, to = as_is, on_close = check.func,
                tls_accept = check.func }     -- function(conn) after a from = ssl handshake: conn.tls
for k, v in pairs(PER_PROXY) do PROXY[k] = v end
for k, v in pairs(GUARDS) do PROXY[k] = v end
_M.PROXY_OPTIONS = PROXY

-- Validators quote the value they refuse; a table or a function quoted is an address
-- ('table: 0x7f...'), so the message names its type instead.
local function typed(validate)
  return function(v)
    local value, err = validate(v)
    local t = type(v)
    if value == nil and err and (t == "table" or t == "function" or t == "userdata" or t == "boolean") then
      local quoted = " '" .. tostring(v) .. "'"
      local i, j = err:find(quoted, 1, true)
      if i then err = err:sub(1, i - 1) .. ": a " .. t .. err:sub(j + 1) end
    end
    return value, err
  end
end

local function fields(t, spec, ignore)
  local wrapped = setmetatable({}, { __index = function(_, k)
    local validate = spec[k]
    return validate and typed(validate)
  end })
  return check.fields(t, wrapped, ignore)
end

-- "file:line" of the script line that called the function calling this.
local function caller()
  local info = debug.getinfo(3, "Sl")
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return src .. ":" .. (info.currentline or 0)
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Where each checked `from` listens beyond its connector's host and port (listen.parse).
local parsed_ports = setmetatable({}, { __mode = "k" })

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Net::Server's port and host forms, turned into the plain host and port a connector
-- checks: a `from`'s port list and "host:port" entries are kept aside for the listen list,
-- host "*" is checked as 0.0.0.0; a service name is a port anywhere. Returns the table to
-- check, the parsed ports, whether host was "*"; or nil and the problem.
local function plain_ports(conf, position)
  local plain, parsed = conf, nil
  if position == "from" and conf.port ~= nil then
    local err
    parsed, err = listen.parse(conf.port)
    if not parsed then return nil, "port: " .. err end
    plain = copy(conf)
    plain.port = parsed[1].port
  end
  for _, k in ipairs(position == "to" and { "port", "proxy_port" } or { "proxy_port" }) do
    local v = conf[k]
    if type(v) == "table" and k == "port" then return nil, "port: a list of ports is for listening (from), not to" end
    if type(v) == "string" and not v:match("^%d+$") then
      local n, err = listen.port(v)
      if not n then return nil, k .. ": " .. err end
      if plain == conf then plain = copy(conf) end
      plain[k] = n
    end
  end
  local wildcard = position == "from" and conf.host == "*"
  if wildcard then
    if plain == conf then plain = copy(conf) end
    plain.host = "0.0.0.0"
  end
  return plain, parsed, wildcard
end

local check_connector
local pool_proxy = "?"   -- the name of the proxy being checked: pool rows are keyed by it
local proxy_sources = {} -- the source addresses its `to`s connect from: tried at start

-- A `to` with servers: the pool's settings checked, then the connector's as if each server
-- were its only one (so a per-server default, such as ssl's SNI, is that server's). Returns
-- the first server's normalised table, with the pool in _pool.
local function check_pool(conf, mod, say, ctx)
  pool = pool or require "netproxy.pool"
  local fields = mod.pool_fields or { "host", "port" }
  local spec, problems = pool.check(conf, fields, ctx and ctx.datagram)
  for _, p in ipairs(problems or {}) do say("to: %s", p) end
  if not spec then return end
  local base = {}
  for k, v in pairs(conf) do
    if not pool.PARAMS[k] then base[k] = v end
  end
  for _, f in ipairs(fields) do
    if base[f] ~= nil then return say("to: %s and servers: give one or the other", f) end
  end
  local first
  -- servers from DNS: the connector checks a template server, the DNS name as its host
  for i, s in ipairs(spec.dns and { spec.template } or spec.servers) do
    local one = {}
    for k, v in pairs(base) do one[k] = v end
    for k, v in pairs(s.fields) do one[k] = v end
    s.conf = check_connector(one, "to", i == 1 and say or function() end, ctx)
    if not s.conf then
      if i > 1 then say("to: servers[%d]: %s refused by the %s connector", i, s.name, conf.type) end
      return
    end
    first = first or s.conf
  end
  local out = {}
  for k, v in pairs(first) do out[k] = v end
  out._pool = pool.new(spec, pool_proxy)
  out._pool.conf = out       -- the table as configured (a client-named target is a copy)
  return out
end

-- Checks one connector table in position "from" or "to"; returns the normalised copy.
function check_connector(conf, position, say, ctx)
  if type(conf) ~= "table" then return say("%s: want a table like { type = \"tcp\", ... }", position) end
  if conf.type == nil then return say("%s: missing type", position) end
  -- a udp from's `to`: udp, or the datagram form of a service (netproxy.udp_service)
  local datagram = ctx and ctx.datagram
  local mod, err
  if datagram and conf.type == "service" then mod = udp_service else mod, err = connectors.get(conf.type) end
  if not mod then return say("%s: %s", position, err) end
  if datagram and not mod.datagram and mod ~= udp_service then
    return say("%s: a udp from wants a udp to or a datagram service, not %s", position, conf.type)
  end
  if position == "from" and (mod.positions or {}).from and type(mod.listen) ~= "function" then
    return say("%s: the %s connector has no listen() function", position, conf.type)
  end
  if not (mod.positions or {})[position] then
    return say("%s: the %s connector cannot be used as '%s'", position, conf.type, position)
  end
  local plain, parsed, wildcard = plain_ports(conf, position)
  if not plain then return say("%s: %s", position, parsed) end
  conf = plain
  if conf.servers ~= nil then
    if position ~= "to" then return say("%s: servers: only a `to` has a pool of servers", position) end
    if mod == udp_service then return say("%s: servers: a datagram service answers itself: it has no servers", position) end
    return check_pool(conf, mod, say, ctx)
  end
  local spec = setmetatable({}, { __index = function(_, k) return (mod.params or {})[k] or COMMON[k] end })
  local out, problems = fields(conf, spec, { type = true })
  out.type = conf.type
  for _, p in ipairs(problems) do say("%s: %s", position, p) end
  for _, k in ipairs({ "host", "proxy_host" }) do
    local ok, err = check.ipv4_literal(out[k])
    if not ok then problems[#problems + 1] = k; say("%s: %s: %s", position, k, err) end
  end
  if #problems > 0 then return end
  if out.hook_mode and not out.hook then return say("%s: hook_mode without a hook", position) end
  if out.source ~= nil then
    if position ~= "to" then return say("%s: source: only a `to` connects from an address", position) end
    proxy_sources[out.source] = true
  end
  if out.proxy_protocol and position == "to" then
    if out.proxy_protocol == "any" then return say("to: proxy_protocol: send \"v1\" or \"v2\" (\"any\" is for from)") end
    if not mod.sends_proxy_protocol then
      return say("to: the %s connector does not send the PROXY protocol", conf.type)
    end
  end
  if out.hook then
    -- Count hooks (the runaway-hook budget) do not run inside compiled traces.
    if jit then jit.off(out.hook, true) end
    if out.hook_mode == "line" then out.hook = lines.wrap(out.hook) end
  end
  if mod.check then
    ctx = ctx or {}
    -- connectors that hold other connectors (dual) have them checked as `to`s, or as a
    -- nested `from` that talks to the client after them (dual's socks5 branch): no listener
    local function sub_say(label)
      return function(fmt, ...) say(position .. "." .. label .. ": " .. fmt, ...) end
    end
    -- (what they hold is kept in ctx.subs: the sides a proxy may relay, for check_effects)
    local function keep(checked)
      if checked and ctx.subs then ctx.subs[#ctx.subs + 1] = checked end
      return checked
    end
    ctx.check_to = function(sub, label, subctx)
      return keep(check_connector(sub, "to", sub_say(label), subctx))
    end
    ctx.check_from = function(sub, label)
      return keep(check_connector(sub, "from", sub_say(label), { nested = true }))
    end
    local problem = mod.check(out, position, ctx)
    if problem == "" then return end           -- already reported through check_to
    if problem then return say("%s: %s", position, problem) end
  end
  if wildcard then out.host = "*" end
  parsed_ports[out] = parsed
  return out
end

-- Why the bytes of this side must pass through user space, or nil.
local function needs_copy(side)
  if side.hook then return "a hook" end
  if side._tls then return "TLS" end
end

-- Settings that would pass and then do nothing. Each is an error, except where it is
-- harmless (a relay mode inherited from server{} or the command line, which applies to
-- every proxy): a warning then, printed by --check and at start.
local function check_effects(proxy, spec, given, from_mod, dests, server, say, warn)
  local sides = { proxy.from }
  for _, d in ipairs(dests) do sides[#sides + 1] = d end

  -- (allow and deny apply to a stdio proxy whose standard input is a socket: inetd style)
  if proxy.listen.stdio and (given.max_clients ~= nil or server.set_at.max_clients) then
    say("%smax_clients does nothing on a stdio proxy: the process serves its one connection",
        given.max_clients == nil and "server{} " or "")
  end
  if from_mod.datagram and given.bandwidth ~= nil then
    say("bandwidth does nothing on a udp proxy: it shapes the relay of stream connections")
  end
  if from_mod.datagram and given.total_timeout ~= nil then
    say("total_timeout does nothing on a udp proxy: a flow ends by udp_idle_timeout (or max_flows)")
  end
  if from_mod.picks_to and spec.to ~= nil and not (type(spec.to) == "table" and spec.to.type == "dummy") then
    say("to: the %s connector picks the destination itself (server_first, client_first, probes): leave to out",
        proxy.from.type)
  end
  if from_mod.provides_target and type(spec.to) == "table" and (spec.to.host ~= nil or spec.to.port ~= nil) then
    say("to: host and port come from the client's request (from = %s): leave them out", proxy.from.type)
  end

  local why
  for _, side in ipairs(sides) do why = why or needs_copy(side) end
  if proxy.relay == "splice" and why and given.relay then
    say("relay = \"splice\" cannot be honoured: %s needs the bytes (the copying relay); use \"auto\"", why)
  elseif proxy.relay == "splice" and why then
    warn("relay \"splice\" (%s) cannot be honoured: %s needs the bytes, so this proxy copies",
         server.set_at.relay and "from server{}" or "from the command line", why)
  end

  -- a stream service answers the client itself: no relay runs, so no hook sees a byte
  if not from_mod.datagram then
    local relayed = false
    for i, d in ipairs(dests) do
      local served = connectors.get(d.type).serve ~= nil
      if served and d.hook then
        say("%s: hook does nothing on a service: no relay runs (the service reads and writes the client itself)",
            i == 1 and "to" or "a " .. proxy.from.type .. " destination")
      end
      relayed = relayed or not (served or (i == 1 and from_mod.picks_to))
    end
    if proxy.from.hook and not relayed then
      say("from: hook does nothing when the connection is answered by a service: no relay runs (read the client in the service)")
    end
  end

  -- a `from` that answers some requests itself (connect's plain http://): no hook sees them
  local unrelayed = from_mod.unrelayed and from_mod.unrelayed(proxy.from)
  if unrelayed then
    for i, side in ipairs(sides) do
      if side.hook then say("%s: hook does not see %s", i == 1 and "from" or "to", unrelayed) end
    end
  end

  local hooked = false
  for _, side in ipairs(sides) do hooked = hooked or side.hook ~= nil end
  for i, side in ipairs(sides) do
    if side._tls and side.start_cleartext and not side.starttls and not hooked then
      say("%s: start_cleartext = true without a starttls function or a hook calling conn:starttls(): it would stay in clear text",
          i == 1 and "from" or "to")
    end
  end
end

-- A listener only this host can reach: a loopback address (or a unix socket).
local function loopback(e)
  local host = e.host and tostring(e.host):gsub("^%[(.*)%]$", "%1")
  return e.path ~= nil or host == "localhost" or host == "::1" or (host or ""):match("^127%.") ~= nil
end

-- A PROXY-protocol header is believed as sent: any client that reaches such a listener
-- can claim any address (and pass allow/deny rules on the claimed one, logs, limits).
local function warn_proxy_protocol(proxy, server, warn)
  if not proxy.from.proxy_protocol or proxy.allow or proxy.deny or server.allow or server.deny then return end
  for _, e in ipairs(proxy.listen[1] and proxy.listen or { proxy.listen }) do
    if not loopback(e) then
      return warn("from: proxy_protocol on %s trusts the header of any client that can connect (it may claim "
                  .. "any address): restrict it to your load balancers with allow", e.host or "every address")
    end
  end
end

local function check_proxy(decl, index, server, say_at, warn_at)
  local where = decl.where
  local label = "proxy '" .. tostring(decl.spec.name or ("proxy" .. index)) .. "'"
  local function say(fmt, ...) say_at(where, label .. ": " .. fmt, ...) end
  local function warn(fmt, ...) warn_at(where, label .. ": " .. fmt, ...) end

  local given, problems = fields(decl.spec, PROXY)
  for _, p in ipairs(problems) do say("%s", p) end
  local proxy = { name = given.name or ("proxy" .. index), where = where }
  pool_proxy = proxy.name
  proxy_sources = {}
  for k in pairs(PER_PROXY) do
    if given[k] ~= nil then proxy[k] = given[k] else proxy[k] = server[k] end
  end
  if given.bandwidth and server.bandwidth then     -- a proxy's own rates on top of server{}'s
    proxy.bandwidth = copy(server.bandwidth)
    for k, v in pairs(given.bandwidth) do proxy.bandwidth[k] = v end
  end
  for k in pairs(GUARDS) do proxy[k] = given[k] end
  proxy.on_close = given.on_close
  proxy.tls_accept = given.tls_accept
  proxy.server_accept = server.accept
  proxy.server_on_denied = server.on_denied
  proxy.server_per_source, proxy.server_per_user = server.per_source, server.per_user
  local from_ctx = { subs = {} }      -- the destinations a `from` holds (dual's)
  if decl.spec.from == nil then say("missing from") else proxy.from = check_connector(decl.spec.from, "from", say, from_ctx) end
  local from_mod = proxy.from and connectors.get(proxy.from.type)
  if proxy.tls_accept and proxy.from and proxy.from.type ~= "ssl" then
    say("tls_accept goes with from = ssl (it runs after the client's handshake)")
  end
  -- a `from` that hears the target from its client (connect) lets `to` leave it out
  local ctx = { target_from_client = from_mod and from_mod.provides_target or false,
                datagram = from_mod and from_mod.datagram or false,
                -- a `from` that may replace `to` with a destination of its own (dual's
                -- picks, a connector's accept returning a connector table), for dummy's
                -- check (a bad `from` has said enough)
                from_chooses = not from_mod or from_mod.picks_to or (from_mod.accept ~= nil and not from_mod.provides_target),
                from_type = proxy.from and proxy.from.type }
  local to = decl.spec.to
  if to == nil and ctx.target_from_client then to = { type = "tcp" } end
  if to == nil and from_mod and from_mod.default_to then to = from_mod.default_to end
  if proxy.from and ctx.datagram and proxy.from.probes then
    -- a udp from with quic probes picks each flow's server: its fallback (checked with it, or
    -- none: a udp `to` without a server) stands as the proxy's `to`
    if to ~= nil then say("to: a udp from with probes picks the server itself: give fallback = { ... } in from") end
    proxy.to = proxy.from.fallback or { type = "udp" }
  elseif to ~= nil then proxy.to = check_connector(to, "to", say, ctx)
  elseif proxy.from or decl.spec.from == nil then say("missing to") end   -- (a bad from said enough)
  proxy.sources = {}
  for a in pairs(proxy_sources) do proxy.sources[#proxy.sources + 1] = a end
  table.sort(proxy.sources)
  if ctx.datagram and proxy.max_flows < 1 then say("max_flows: want at least 1 (the flow table is bounded)") end
  if proxy.from then
    local host, port = from_mod.listen(proxy.from)
    proxy.listen = type(host) == "table" and host
                   or listen.entries(host, port, parsed_ports[proxy.from], proxy.backlog)
    if proxy.listen.path and (proxy.allow or proxy.deny) then
      say("%s: a unix socket's clients have no address to match: use accept(conn) with conn.peer",
          proxy.allow and "allow" or "deny")
    end
    warn_proxy_protocol(proxy, server, warn)
  end
  if proxy.from then
    -- per_source is checked at accept by the C core, unless the client's address comes from
    -- a PROXY header or the `from` answers a refusal in its protocol (429, 0x02): then the
    -- session (netproxy.gate.admit) checks it
    proxy.limits_by_connector = from_mod.answers_limits or false
    proxy.limits_in_lua = proxy.from.proxy_protocol ~= nil or proxy.limits_by_connector
    if proxy.per_user and not from_mod.answers_limits then
      say("per_user: only a connect or socks5 `from` has users (this one is %s)", proxy.from.type)
    elseif proxy.per_user and not proxy.from.users then
      say("per_user without users: no client authenticates, so none is counted")
    end
    if from_mod.datagram and proxy.per_source then
      say("per_source does nothing on a udp proxy yet: use max_flows")
    end
  end
  if proxy.from and proxy.to then
    local dests = { proxy.to }
    for _, d in ipairs(from_ctx.subs) do dests[#dests + 1] = d end
    check_effects(proxy, decl.spec, given, from_mod, dests, server, say, warn)
  end
  return proxy
end

-- Runs the script with proxy{} and server{} in its environment.
local function run_script(path)
  local decls, servers = {}, {}
  local env = setmetatable({}, { __index = _G })
  function env.proxy(spec)
    if type(spec) ~= "table" then error("proxy wants a table: proxy { name = ..., from = ..., to = ... }", 2) end
    decls[#decls + 1] = { spec = spec, where = caller() }
  end
  function env.server(spec)
    if type(spec) ~= "table" then error("server wants a table: server { ... }", 2) end
    servers[#servers + 1] = { spec = spec, where = caller() }
  end
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  -- Every function the script defines (hooks, route, accept, their helpers) stays in the
  -- interpreter, where the budget's count hook sees it: compiled loops would escape it.
  if jit then jit.off(chunk, true) end
  setfenv(chunk, env)
  local ok, runerr = xpcall(chunk, sandbox.error_message)
  if not ok then return nil, runerr end
  return decls, servers
end

-- -P's schemes: the connector that speaks to such a proxy. socks5h is curl's name for
-- "the proxy resolves", which socks5 does here anyway (remote_dns).
-- https is an HTTPS proxy: connect with tls = true (verified against the system's CA store).
local SCHEMES = { http = "connect", https = "connect", socks5 = "socks5", socks5h = "socks5" }

-- "-P [SCHEME://]HOST:PORT" -> { type = ..., proxy_host = ..., proxy_port = ... }, or nil, why.
local function proxy_hop(s)
  local scheme, rest = s:match("^(%w+)://(.-)/?$")
  local kind = SCHEMES[scheme or "http"]
  if not kind then return nil, ("-P %s: unknown scheme '%s' (want http://, https:// or socks5://)"):format(s, scheme) end
  local host, port = addr.split(rest or s)
  if not host then return nil, "-P " .. s .. ": " .. port end
  return { type = kind, proxy_host = host, proxy_port = port, tls = scheme == "https" or nil }
end

-- The -P proxies as the `to` of HOST PORT: one proxy's connector, or a chain of them. The
-- credentials are the first proxy's (the one reached directly); proxy_agent goes to every
-- HTTP proxy.
local function oneline_to(o)
  local hops = {}
  for i, s in ipairs(o.via or {}) do
    local hop, err = proxy_hop(s)
    if not hop then return nil, err end
    if i == 1 then hop.proxy_user, hop.proxy_pass = o.proxy_user, o.proxy_pass end
    if hop.type == "connect" then hop.proxy_agent = o.proxy_agent end
    hops[i] = hop
  end
  if #hops == 0 then return { type = "tcp", host = o.host, port = o.port } end
  if #hops == 1 then
    hops[1].host, hops[1].port = o.host, o.port
    return hops[1]
  end
  return { type = "chain", host = o.host, port = o.port, hops = hops }
end

-- The one-line form as a proxy{} declaration: stdio (or -L) to HOST PORT, maybe via -P.
-- Returns the declaration, or nil and what is wrong with an address.
local function oneline_decl(o)
  local from = { type = "stdio" }
  if o.listen then
    local host, port = addr.split(o.listen, "localhost")
    if not host then return nil, "-L " .. o.listen .. ": " .. port end
    from = { type = "tcp", host = host, port = port }
  end
  local to, err = oneline_to(o)
  if not to then return nil, err end
  return { spec = { name = o.listen and "oneline" or "stdio", from = from, to = to }, where = "command line" }
end

-- Options whose --set value is a comma-separated list.
local LISTS = { allow = true, deny = true, resolvers = true, connector_path = true }

-- A --set value as the option wants it: the text itself when its validator takes it, else
-- true/false, else a list split on commas (allow, deny, ...). Returns value or nil, err.
local function set_value(key, text)
  local validate = typed(SERVER[key])
  local value, err = validate(text)
  if value ~= nil then return value end
  if text == "true" or text == "false" then
    local b = validate(text == "true")
    if b ~= nil then return b end
  end
  if LISTS[key] then
    local list = {}
    for item in text:gmatch("[^,%s]+") do list[#list + 1] = item end
    return validate(list)
  end
  return nil, err
end

-- --set KEY=VALUE (repeatable): any server{} option from the command line, over server{}.
local function apply_sets(server, sets, say_at)
  for _, pair in ipairs(sets or {}) do
    local key, text = pair:match("^([%w_]+)=(.*)$")
    if not key then
      say_at("command line", "--set %s: want KEY=VALUE", pair)
    elseif not SERVER[key] then
      say_at("command line", "--set %s: unknown server{} option '%s'", pair, key)
    elseif SERVER[key] == check.func then
      say_at("command line", "--set %s: %s wants a Lua function: set it in the config", pair, key)
    else
      local value, err = set_value(key, text)
      if value == nil then say_at("command line", "--set %s: %s", key, err)
      else server[key], server.set_at[key] = value, "command line" end
    end
  end
end

-- syslog's ident, facility and options go to the C core inside log_file:
-- "syslog:IDENT:FACILITY[:OPTS]" (src/log.c). They do nothing for a log that is not syslog:
-- a warning then.
local function syslog_target(server, warn_at)
  if server.on_log and server.log_file and server.log_file:match("^syslog") then
    warn_at(server.set_at.on_log or server.set_at.log_file, "server: on_log is not called when the log goes to syslog")
  end
  if not server.syslog_ident and not server.syslog_facility and not server.syslog_logopt then return end
  if server.log_file ~= "syslog" then
    warn_at(server.set_at.syslog_ident or server.set_at.syslog_facility or server.set_at.syslog_logopt,
            "server: syslog_ident, syslog_facility and syslog_logopt do nothing unless the log goes to syslog (log_file = \"syslog\", or -D)")
    return
  end
  server.log_file = ("syslog:%s:%s%s"):format(server.syslog_ident or "netproxy", server.syslog_facility or "daemon",
                                             server.syslog_logopt and ":" .. server.syslog_logopt or "")
end

-- server{} options, then the command line over them.
local function server_options(path, servers, cli, say_at, warn_at)
  local server = { set_at = {} }     -- set_at[option]: where server{} set it
  for k, v in pairs(_M.DEFAULTS) do server[k] = v end
  server.connector_path = {}
  local set_at = {}       -- option -> "file:line" of the server{} that set it
  for _, decl in ipairs(servers) do
    local given, problems = fields(decl.spec, SERVER)
    for _, p in ipairs(problems) do say_at(decl.where, "server: %s", p) end
    for k, v in pairs(given) do server[k] = v end
    for k in pairs(given) do server.set_at[k] = decl.where end
  end
  local base = dirname(path)
  for i, p in ipairs(server.connector_path) do
    if p:sub(1, 1) ~= "/" then server.connector_path[i] = base .. "/" .. p end
  end
  apply_sets(server, cli.set, say_at)        -- the options below win over it
  if cli.log_level then server.log_level = cli.log_level end
  server.log_level = math.max(0, math.min(4, server.log_level + (cli.verbose or 0)))
  if cli.max_connections then server.max_connections = cli.max_connections end
  server.workers = cli.workers or server.workers or math.min(cli.cpus or 1, check.MAX_WORKERS)
  for _, k in ipairs({ "daemon", "pid_file", "user", "group", "chroot", "log_file" }) do
    if cli[k] ~= nil then server[k] = cli[k] end
  end
  if server.daemon and not server.log_file then server.log_file = "syslog" end   -- stderr is gone
  if cli.relay then server.relay, server.set_at.relay = cli.relay, nil end
  syslog_target(server, warn_at)
  return server
end

-- A master keeps one slot of its 64 for the workers of a reload.
local MAX_WORKERS = 63

-- Warnings go to stderr under --check, else to the log (stderr at start, the log file on a
-- reload), and are also returned with the config.
local function report(warnings, cli)
  local ok, core = pcall(require, "netproxy.core")
  for _, w in ipairs(warnings) do
    if cli.on_warning then       -- a tool (or a spec) that reads them itself
      cli.on_warning(w)
    elseif cli.check or not (ok and type(core) == "table" and core.log) then
      io.stderr:write((w:gsub(": ", ": warning: ", 1)), "\n")
    else
      core.log("warning", w)
    end
  end
end


-- Two listeners on one address are an error, with or without reuseport (which would let
-- both bind and split the clients between them).
local function check_clashes(proxies, server, say_at)
  local listeners = {}
  for _, proxy in ipairs(proxies) do
    local l = proxy.listen
    -- a list of { host, port } entries (netproxy.listen), or one table (unix, udp)
    for _, e in ipairs(l and (l[1] and l or { l }) or {}) do
      if e.path or e.host and e.port then
        listeners[#listeners + 1] = { host = e.host, port = e.port, path = e.path, udp = e.udp or l.udp,
                                      label = "proxy '" .. proxy.name .. "'", where = proxy.where }
      end
    end
  end
  if server.stats then
    local host, port = server.stats:match("^%[(.*)%]:(%d+)$")
    if not host then host, port = server.stats:match("^(.*):(%d+)$") end
    listeners[#listeners + 1] = { host = host, port = port, label = "server: stats", where = server.set_at.stats }
  end
  for _, clash in ipairs(check.listen_clashes(listeners)) do say_at(clash.where, "%s", clash.message) end
end

local function load(path, cli)
  local errors, warnings = {}, {}
  local function say_at(where, fmt, ...) errors[#errors + 1] = where .. ": " .. fmt:format(...) end
  local function warn_at(where, fmt, ...) warnings[#warnings + 1] = where .. ": " .. fmt:format(...) end

  local decls, servers
  if cli.oneline then
    local decl, err = oneline_decl(cli.oneline)
    if not decl then return nil, { "command line: " .. err } end
    decls, servers = { decl }, {}
    -- ssh shows ProxyCommand's stderr on the terminal: warnings and errors only, unless -v
    if not cli.oneline.listen and not cli.log_level then cli.log_level = 1 end
  else
    decls, servers = run_script(path)
    if not decls then return nil, { servers } end
  end
  local server = server_options(path, servers, cli, say_at, warn_at)

  local folders = { cli.builtin_connectors }
  for _, p in ipairs(cli.connector_path or {}) do folders[#folders + 1] = p end
  for _, p in ipairs(server.connector_path) do folders[#folders + 1] = p end
  connectors.set_path(folders)

  if #decls == 0 then say_at(path .. ":1", "no proxy declared (want at least one proxy { ... })") end
  local proxies, names = {}, {}
  for i, decl in ipairs(decls) do
    local proxy = check_proxy(decl, i, server, say_at, warn_at)
    if names[proxy.name] then
      say_at(decl.where, "proxy '%s': name already used at %s", proxy.name, names[proxy.name])
    end
    names[proxy.name] = decl.where
    proxies[i] = proxy
  end
  for _, proxy in ipairs(proxies) do
    if proxy.listen and proxy.listen.stdio and #proxies > 1 then
      say_at(proxy.where, "proxy '%s': a stdio proxy must be the only proxy of its config", proxy.name)
    end
  end
  -- -m counts this process's connections, and stdio is one connection: a single process
  if server.max_connections > 0 or (proxies[1] and proxies[1].listen and proxies[1].listen.stdio) then
    server.workers = 1
  end
  if server.workers < 1 then say_at(path .. ":1", "server: workers: want at least 1") end
  if server.workers > MAX_WORKERS then
    say_at(server.set_at.workers or (path .. ":1"), "server: workers: at most %d, not %d", MAX_WORKERS, server.workers)
  end
  if server.reuseport and server.workers == 1 then
    warn_at(server.set_at.reuseport or "command line",
            "server: reuseport with one worker does nothing but let other processes bind the same ports")
  end
  check_clashes(proxies, server, say_at)
  report(warnings, cli)
  if #errors > 0 then return nil, errors, warnings end
  return { server = server, proxies = proxies, warnings = warnings }
end

-- load(path, cli) -> config | nil, { "file:line: message", ... }
-- Loading has a time bound of its own (netproxy.sandbox.bounded), for --check, start and
-- reload alike: a config that loops gives up with "file:line: config took longer than N s".
function _M.load(path, cli)
  cli = cli or {}
  -- from here on, user code cannot end the process (os.exit, ...): docs/hooks.md
  if sandbox.in_netproxy() then sandbox.lock() end
  local budget, berr = sandbox.load_budget()
  if not budget then return nil, { berr } end
  local ok, cfg, errors = pcall(sandbox.bounded, budget, load, path, cli)
  if not ok then return nil, { tostring(cfg) } end
  return cfg, errors
end

return _M
