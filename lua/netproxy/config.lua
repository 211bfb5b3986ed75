-- netproxy.config: the config language. A script calls proxy{} and server{}; load() runs
-- it, checks every value and returns the normalised config for the C core, or the list of
-- problems, each as "file:line: message".
local check = require "netproxy.check"
local connectors = require "netproxy.connectors"
local lines = require "netproxy.lines"
local addr = require "netproxy.addr"

local _M = {}

_M.DEFAULTS = {
  log_level = 2,                -- notice
  connect_timeout = 10,         -- seconds to reach the server (DNS included)
  negotiation_timeout = 30,     -- seconds the connectors may take before the relay
  idle_timeout = 3600,          -- seconds without a byte either way; 0 = never
  relay = "auto",               -- splice whenever nothing needs to see the bytes
  buffer_size = 64 * 1024,      -- copying relay: bytes held per direction
  pipe_size = 64 * 1024,        -- splice relay: size asked of each pipe
  max_connections = 0,          -- 0 = serve forever
  hook_budget = 1,              -- seconds one hook call may run; 0 = unbounded
  max_negotiating = 4096,       -- connections at once before the relay (dual's sniffing)
  drain_timeout = 0,
  stop_timeout = 10,
  lua_memory = 0,
  lua_call_memory = 64 * 1024 * 1024,
  max_draining = 16,
  watchdog = 10,
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

-- Options a proxy may set for itself, falling back to server{}.
local PER_PROXY = {
  connect_timeout = check.seconds,
  negotiation_timeout = check.seconds,
  idle_timeout = check.seconds,
  relay = check.one_of("auto", "splice", "buffered"),
  buffer_size = check.bytes,
  hook_budget = check.seconds,
  max_negotiating = check.count,
  lua_call_memory = memory_size(64 * 1024, 4 * 1024 ^ 3),  -- one call into Lua (a hook, a resume)
}

-- Parameters every connector takes, whatever its type.
local COMMON = {
  hook = check.func,
  hook_mode = check.one_of("chunk", "line"),
  proxy_protocol = check.one_of("v1", "v2", "any"),
}

-- Guards: server{} ones apply to every proxy, a proxy's own come on top.
local GUARDS = {
  allow = check.cidrs,
  deny = check.cidrs,
  max_clients = check.count,
  accept = check.func,
}

local SERVER = {
  log_level = check.log_level,
  max_connections = check.count,
  pipe_size = check.bytes,
  connector_path = check.paths,
  resolvers = check.resolvers,
  stats = check.listen_address,
  workers = check.count,
  reuseport = function(v) if type(v) ~= "boolean" then return nil, "want true or false" end return v end,
  daemon = function(v) if type(v) ~= "boolean" then return nil, "want true or false" end return v end,
  pid_file = check.string, user = check.string, group = check.string, chroot = check.string,
  log_file = check.string,
  -- process life: see docs/operations.md
  drain_timeout = check.seconds,  -- a reload's old connections may run this long; 0 = no bound
  stop_timeout = check.seconds,   -- SIGTERM: live connections get this long
  max_draining = check.count,     -- old generations draining at once
  watchdog = check.seconds,       -- a worker whose loop stands still this long is replaced; 0 = off
  lua_memory = memory_size(1024 * 1024, 64 * 1024 ^ 3),    -- all of a worker's Lua; 0 = no cap
}
for k, v in pairs(PER_PROXY) do SERVER[k] = v end
for k, v in pairs(GUARDS) do SERVER[k] = v end

-- What server{} and proxy{} accept, for the man page's spec and for tools.
_M.SERVER_OPTIONS, _M.PROXY_OPTIONS = SERVER, nil

local function as_is(v) return v end  -- from/to: checked by check_connector
local PROXY = { name = check.string, from = as_is, to = as_is }
for k, v in pairs(PER_PROXY) do PROXY[k] = v end
for k, v in pairs(GUARDS) do PROXY[k] = v end
_M.PROXY_OPTIONS = PROXY

-- "file:line" of the script line that called the function calling this.
local function caller()
  local info = debug.getinfo(3, "Sl")
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return src .. ":" .. (info.currentline or 0)
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Checks one connector table in position "from" or "to"; returns the normalised copy.
local function check_connector(conf, position, say, ctx)
  if type(conf) ~= "table" then return say("%s: want a table like { type = \"tcp\", ... }", position) end
  if conf.type == nil then return say("%s: missing type", position) end
  local mod, err = connectors.get(conf.type)
  if not mod then return say("%s: %s", position, err) end
  if position == "from" and (mod.positions or {}).from and type(mod.listen) ~= "function" then
    return say("%s: the %s connector has no listen() function", position, conf.type)
  end
  if not (mod.positions or {})[position] then
    return say("%s: the %s connector cannot be used as '%s'", position, conf.type, position)
  end
  local spec = setmetatable({}, { __index = function(_, k) return (mod.params or {})[k] or COMMON[k] end })
  local out, problems = check.fields(conf, spec, { type = true })
  out.type = conf.type
  for _, p in ipairs(problems) do say("%s: %s", position, p) end
  if #problems > 0 then return end
  if out.hook_mode and not out.hook then return say("%s: hook_mode without a hook", position) end
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
    ctx.check_to = function(sub, label, subctx)
      return check_connector(sub, "to", sub_say(label), subctx)
    end
    ctx.check_from = function(sub, label)
      return check_connector(sub, "from", sub_say(label), { nested = true })
    end
    local problem = mod.check(out, position, ctx)
    if problem == "" then return end           -- already reported through check_to
    if problem then return say("%s: %s", position, problem) end
  end
  return out
end

local function check_proxy(decl, index, server, say_at)
  local where = decl.where
  local label = "proxy '" .. tostring(decl.spec.name or ("proxy" .. index)) .. "'"
  local function say(fmt, ...) say_at(where, label .. ": " .. fmt, ...) end

  local fields, problems = check.fields(decl.spec, PROXY)
  for _, p in ipairs(problems) do say("%s", p) end
  local proxy = { name = fields.name or ("proxy" .. index), where = where }
  for k in pairs(PER_PROXY) do
    if fields[k] ~= nil then proxy[k] = fields[k] else proxy[k] = server[k] end
  end
  for k in pairs(GUARDS) do proxy[k] = fields[k] end
  proxy.server_accept = server.accept
  if decl.spec.from == nil then say("missing from") else proxy.from = check_connector(decl.spec.from, "from", say) end
  local from_mod = proxy.from and connectors.get(proxy.from.type)
  -- a `from` that hears the target from its client (connect) lets `to` leave it out
  local ctx = { target_from_client = from_mod and from_mod.provides_target or false }
  local to = decl.spec.to
  if to == nil and ctx.target_from_client then to = { type = "tcp" } end
  if to == nil and from_mod and from_mod.default_to then to = from_mod.default_to end
  if to ~= nil then proxy.to = check_connector(to, "to", say, ctx)
  elseif proxy.from or decl.spec.from == nil then say("missing to") end   -- (a bad from said enough)
  if proxy.from then
    local host, port = from_mod.listen(proxy.from)
    proxy.listen = type(host) == "table" and host or { host = host, port = port }
    if proxy.listen.path and (proxy.allow or proxy.deny) then
      say("%s: a unix socket's clients have no address to match: use accept(conn) with conn.peer",
          proxy.allow and "allow" or "deny")
    end
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
  local ok, runerr = pcall(chunk)
  if not ok then return nil, tostring(runerr) end
  return decls, servers
end

-- -P's schemes: the connector that speaks to such a proxy. socks5h is curl's name for
-- "the proxy resolves", which socks5 does here anyway (remote_dns).
local SCHEMES = { http = "connect", socks5 = "socks5", socks5h = "socks5" }

-- "-P [SCHEME://]HOST:PORT" -> { type = ..., proxy_host = ..., proxy_port = ... }, or nil, why.
local function proxy_hop(s)
  local scheme, rest = s:match("^(%w+)://(.-)/?$")
  local kind = SCHEMES[scheme or "http"]
  if not kind then return nil, ("-P %s: unknown scheme '%s' (want http:// or socks5://)"):format(s, scheme) end
  local host, port = addr.split(rest or s)
  if not host then return nil, "-P " .. s .. ": " .. port end
  return { type = kind, proxy_host = host, proxy_port = port }
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

-- server{} options, then the command line over them.
local function server_options(path, servers, cli, say_at)
  local server = {}
  for k, v in pairs(_M.DEFAULTS) do server[k] = v end
  server.connector_path = {}
  for _, decl in ipairs(servers) do
    local fields, problems = check.fields(decl.spec, SERVER)
    for _, p in ipairs(problems) do say_at(decl.where, "server: %s", p) end
    for k, v in pairs(fields) do server[k] = v end
  end
  local base = dirname(path)
  for i, p in ipairs(server.connector_path) do
    if p:sub(1, 1) ~= "/" then server.connector_path[i] = base .. "/" .. p end
  end
  if cli.log_level then server.log_level = cli.log_level end
  server.log_level = math.max(0, math.min(4, server.log_level + (cli.verbose or 0)))
  if cli.max_connections then server.max_connections = cli.max_connections end
  server.workers = cli.workers or server.workers or cli.cpus or 1
  for _, k in ipairs({ "daemon", "pid_file", "user", "group", "chroot", "log_file" }) do
    if cli[k] ~= nil then server[k] = cli[k] end
  end
  if server.daemon and not server.log_file then server.log_file = "syslog" end   -- stderr is gone
  if cli.relay then server.relay = cli.relay end
  return server
end

-- load(path, cli) -> config | nil, { "file:line: message", ... }
function _M.load(path, cli)
  cli = cli or {}
  local errors = {}
  local function say_at(where, fmt, ...) errors[#errors + 1] = where .. ": " .. fmt:format(...) end

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
  local server = server_options(path, servers, cli, say_at)

  local folders = { cli.builtin_connectors }
  for _, p in ipairs(cli.connector_path or {}) do folders[#folders + 1] = p end
  for _, p in ipairs(server.connector_path) do folders[#folders + 1] = p end
  connectors.set_path(folders)

  if #decls == 0 then say_at(path .. ":1", "no proxy declared (want at least one proxy { ... })") end
  local proxies, names = {}, {}
  for i, decl in ipairs(decls) do
    local proxy = check_proxy(decl, i, server, say_at)
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
  if #errors > 0 then return nil, errors end
  return { server = server, proxies = proxies }
end

return _M
