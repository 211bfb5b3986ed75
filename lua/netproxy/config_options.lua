-- netproxy.config_options: what server{}, proxy{} and every connector accept: the defaults,
-- each option's validator, and fields(), which checks a table against them.
local check = require "netproxy.check"
local gate = require "netproxy.gate"

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
  defer_accept = check.int_range(0, 3600, "seconds"),  -- TCP_DEFER_ACCEPT on a tcp listener; 0 = off
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

_M.PER_PROXY, _M.COMMON, _M.GUARDS, _M.SERVER, _M.PROXY = PER_PROXY, COMMON, GUARDS, SERVER, PROXY
_M.typed, _M.fields = typed, fields

return _M
