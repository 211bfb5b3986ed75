-- netproxy.config_connector: checks one connector table (a `from`, a `to`, a pool of
-- servers) and returns its normalised copy.
local check = require "netproxy.check"
local connectors = require "netproxy.connectors"
local lines = require "netproxy.lines"
local udp_service = require "netproxy.udp_service"
local listen = require "netproxy.listen"
local options = require "netproxy.config_options"
local pool          -- netproxy.pool, loaded by the first `to` with servers
local COMMON, fields = options.COMMON, options.fields

local _M = {}

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

-- The proxy about to be checked: its name keys pool rows; its `to`s' sources start empty.
function _M.begin(name)
  pool_proxy = name
  proxy_sources = {}
end

-- The set of source addresses the checked proxy's `to`s connect from.
function _M.sources() return proxy_sources end

_M.check, _M.copy, _M.parsed_ports = check_connector, copy, parsed_ports

return _M
