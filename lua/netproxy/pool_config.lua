-- netproxy.pool_config: checking a `to`'s pool parameters (servers, their DNS forms, balance,
-- hash_key, retries, max_conns, check) into the spec netproxy.pool.new builds a pool from.
local addr = require "netproxy.addr"
local check = require "netproxy.check"
local luapattern = require "netproxy.luapattern"
local dns = require "netproxy.dns"
local pool_balance = require "netproxy.pool_balance"

local type, tostring, tonumber, ipairs, pairs, math_floor = type, tostring, tonumber, ipairs, pairs, math.floor
local balancers, HASH_KEYS, client_key = pool_balance.balancers, pool_balance.HASH_KEYS, pool_balance.client_key

local _M = {}

_M.MAX_WEIGHT = 256
_M.DEFAULTS = { balance = "roundrobin", retries = 2, max_fails = 1, fail_timeout = 10, max_queue = 100 }
_M.CHECK_DEFAULTS = { interval = 2, timeout = 1, rise = 2, fall = 3 }

-- servers from DNS: re-resolved at the answer's TTL, within these bounds (seconds)
_M.RESOLVE_DEFAULTS = { resolve_min = 1, resolve_max = 300 }

-- ---------------------------------------------------------------- checking a config

local function weight(v)
  local n = tonumber(v)
  if not n or n ~= math_floor(n) or n < 1 or n > _M.MAX_WEIGHT then
    return nil, ("weight %s out of range (want 1..%d)"):format(tostring(v), _M.MAX_WEIGHT)
  end
  return n
end

-- One entry of servers: "host:port" or { host =, port =, weight =, backup = } (fields are
-- the connector's: { "host", "port" }, { "proxy_host", "proxy_port" } or { "path" }).
local function entry(e, fields)
  local s = { weight = 1, backup = false, fields = {} }
  local f1, f2 = fields[1], fields[2]
  if type(e) == "string" then
    if f2 then
      local host, port = addr.split(e)
      if not host then return nil, "'" .. e .. "': " .. port end
      e = { [f1] = host, [f2] = port }
    else
      e = { [f1] = e }
    end
  elseif type(e) ~= "table" then
    return nil, "want \"HOST:PORT\" or a table, not " .. type(e)
  else
    -- a table says host and port by those names, whatever the connector calls them
    local t = {}
    for k, v in pairs(e) do t[k] = v end
    if f2 and f1 ~= "host" then
      t[f1], t[f2], t.host, t.port = t[f1] or t.host, t[f2] or t.port, nil, nil
    end
    e = t
  end
  for k, v in pairs(e) do
    if k == "weight" then
      local w, err = weight(v)
      if not w then return nil, err end
      s.weight = w
    elseif k == "backup" then
      if type(v) ~= "boolean" then return nil, "backup: want true or false" end
      s.backup = v
    elseif k == "max_conns" then
      local n, err = check.count(v)
      if n == nil then return nil, "max_conns: " .. err end
      s.max_conns = n        -- 0: no cap (over the `to`'s max_conns)
    elseif k == f1 or k == f2 then
      local ok, err
      if k == "port" or k == "proxy_port" then ok, err = check.port(v)
      elseif k == "path" then ok, err = check.string(v)
      else ok, err = check.host(v) end
      if ok == nil then return nil, k .. ": " .. err end
      if ok == 0 and (k == "port" or k == "proxy_port") then return nil, "port 0 is not a port to connect to" end
      s.fields[k] = ok
    else
      return nil, "unknown parameter '" .. tostring(k) .. "'"
    end
  end
  for _, f in ipairs(fields) do
    if s.fields[f] == nil then return nil, "missing " .. (f:gsub("^proxy_", "")) end
  end
  s.name = f2 and addr.join(s.fields[f1], s.fields[f2]) or s.fields[f1]
  return s
end

-- servers = { resolve = "NAME:PORT" } or { srv = "_service._proto.NAME" }: the DNS name and
-- a template server (the name as its host: the connector checks it, a server found later
-- copies its table).
local function dns_form(t, fields)
  local f1, f2 = fields[1], fields[2]
  if not f2 then return nil, "resolve and srv want a connector with a host and a port (not a path)" end
  for k in pairs(t) do
    if k ~= "resolve" and k ~= "srv" then
      return nil, "unknown parameter '" .. tostring(k) .. "' next to resolve/srv"
    end
  end
  if t.resolve ~= nil and t.srv ~= nil then return nil, "resolve or srv, not both" end
  local d = { template = { weight = 1, backup = false, fields = {} } }
  if t.resolve ~= nil then
    local host, port = addr.split(t.resolve)
    if not host then return nil, "resolve: '" .. tostring(t.resolve) .. "': " .. tostring(port) end
    if port == 0 then return nil, "resolve: port 0 is not a port to connect to" end
    local ok = check.host(host)
    local wire, err = dns.encode_name(host)
    if not ok or host:find(":", 1, true) or host:match("^[%d%.]+$") or not wire then
      return nil, "resolve: '" .. host .. "' is not a DNS name" .. (err and " (" .. err .. ")" or "")
    end
    d.kind, d.name, d.port = "resolve", host, port
  else
    if type(t.srv) ~= "string" then return nil, "srv: want \"_service._proto.NAME\"" end
    local wire, err = dns.encode_name(t.srv)
    local domain = t.srv:match("^_[%w%-]+%._[%a]+%.(.+)$")
    if not wire or not domain then
      return nil, "srv: '" .. t.srv .. "' is not \"_service._proto.NAME\"" .. (err and " (" .. err .. ")" or "")
    end
    d.kind, d.name, d.port, d.host = "srv", t.srv, 1, domain
  end
  d.template.fields[f1], d.template.fields[f2] = d.host or d.name, d.port
  d.template.name = d.kind == "resolve" and t.resolve or t.srv
  return d
end

-- A udp pool's check sends a datagram (send) and waits for the reply (matching expect, when
-- given): without send there is nothing to wait for, as a connect is for TCP.
local function check_check(v, datagram)
  if type(v) == "function" then
    if jit then jit.off(v, true) end
    return { fn = v, interval = _M.CHECK_DEFAULTS.interval, timeout = _M.CHECK_DEFAULTS.timeout,
             rise = _M.CHECK_DEFAULTS.rise, fall = _M.CHECK_DEFAULTS.fall }
  end
  if type(v) ~= "table" then return nil, "want a table { interval =, timeout =, rise =, fall =, send =, expect = } or a function(sock, server)" end
  local c = {}
  for k, d in pairs(_M.CHECK_DEFAULTS) do c[k] = d end
  for k, x in pairs(v) do
    if k == "interval" or k == "timeout" then
      local n = tonumber(x)
      if not n or n <= 0 then return nil, k .. ": want seconds > 0" end
      c[k] = n
    elseif k == "rise" or k == "fall" then
      local n = tonumber(x)
      if not n or n ~= math_floor(n) or n < 1 then return nil, k .. ": want an integer >= 1" end
      c[k] = n
    elseif k == "send" then
      if type(x) ~= "string" then return nil, "send: want a string" end
      c.send = x
    elseif k == "expect" then
      local ok, err = luapattern.check(x)
      if not ok then return nil, "expect: bad pattern: " .. err end
      c.expect = x
    elseif k == "fn" then
      if type(x) ~= "function" then return nil, "fn: want a function(sock, server)" end
      if jit then jit.off(x, true) end
      c.fn = x
    else
      return nil, "unknown parameter '" .. tostring(k) .. "'"
    end
  end
  if datagram and not c.fn and not c.send then
    return nil, "send: required for udp (a check sends one datagram and waits for a reply" ..
                (c.expect and " matching expect" or "") .. "), or give a function(sock, server)"
  end
  return c
end

-- servers = { resolve = } or { srv = }, and resolve_min, resolve_max: into spec.
local function check_dns(conf, fields, spec, say)
  local list = conf.servers
  if type(list) ~= "table" or (list.resolve == nil and list.srv == nil) then
    return say("resolve_min, resolve_max: only with servers = { resolve = \"NAME:PORT\" } or { srv = \"_service._proto.NAME\" }")
  end
  local d, err = dns_form(list, fields)
  if not d then say("servers: %s", err)
  else spec.dns, spec.servers, spec.template = d, {}, d.template end
  for _, k in ipairs({ "resolve_min", "resolve_max" }) do
    local v = conf[k] == nil and _M.RESOLVE_DEFAULTS[k] or tonumber(conf[k])
    if not v or v <= 0 then say("%s: want seconds > 0", k) else spec[k] = v end
  end
  if spec.resolve_min and spec.resolve_max and spec.resolve_min > spec.resolve_max then
    say("resolve_min (%g) is above resolve_max (%g)", spec.resolve_min, spec.resolve_max)
  end
end

-- check(conf, fields [, datagram]) -> spec, or nil and a list of problems. spec: the servers
-- (each with the connector fields it fills) and the pool's settings, defaults applied.
-- datagram: the servers are UDP servers (a udp to: its checks send datagrams).
function _M.check(conf, fields, datagram)
  fields = fields or { "host", "port" }
  local problems = {}
  local function say(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  local spec = {}
  for k, d in pairs(_M.DEFAULTS) do spec[k] = d end
  local list = conf.servers
  local from_dns = type(list) == "table" and (list.resolve ~= nil or list.srv ~= nil)
  if conf.resolve_min ~= nil or conf.resolve_max ~= nil or from_dns then check_dns(conf, fields, spec, say) end
  if from_dns then
    -- checked by check_dns
  elseif type(list) ~= "table" then
    say("servers: want a list of \"HOST:PORT\" or { host =, port =, weight =, backup = }")
  elseif #list == 0 then
    say("servers: empty list (want at least one server)")
  else
    spec.servers = {}
    local seen = {}
    for i, e in ipairs(list) do
      local s, err = entry(e, fields)
      if not s then say("servers[%d]: %s", i, err)
      elseif seen[s.name] then say("servers[%d]: %s is already servers[%d]", i, s.name, seen[s.name])
      else
        seen[s.name] = i
        spec.servers[#spec.servers + 1] = s
      end
    end
  end
  local b = conf.balance
  if b ~= nil then
    if type(b) == "function" then
      if jit then jit.off(b, true) end
    elseif not balancers[b] then
      say("balance: unknown '%s' (want roundrobin, leastconn, source, hash, random, first or a function(servers, conn))", tostring(b))
    end
    spec.balance = b
  end
  local k = conf.hash_key
  if k ~= nil then
    if spec.balance ~= "hash" then
      say("hash_key: only with balance = \"hash\"")
    elseif type(k) == "function" then
      if jit then jit.off(k, true) end
      spec.key_of = k
    elseif HASH_KEYS[k] then
      spec.key_of = HASH_KEYS[k]
    else
      say("hash_key: unknown '%s' (want source, sni or a function(conn) returning the key)", tostring(k))
    end
  end
  if spec.balance == "hash" and not spec.key_of then spec.key_of = client_key end
  for _, k in ipairs({ "retries", "max_fails" }) do
    if conf[k] ~= nil then
      local n, err = check.count(conf[k])
      if n == nil then say("%s: %s", k, err) else spec[k] = n end
    end
  end
  if conf.fail_timeout ~= nil then
    local n = tonumber(conf.fail_timeout)
    if not n or n <= 0 then say("fail_timeout: want seconds > 0") else spec.fail_timeout = n end
  end
  for _, k in ipairs({ "max_conns", "max_queue" }) do
    if conf[k] ~= nil then
      local n, err = check.count(conf[k])
      if n == nil then say("%s: %s", k, err) else spec[k] = n end
    end
  end
  if spec.max_conns == 0 then spec.max_conns = nil end
  local capped = spec.max_conns ~= nil
  for _, s in ipairs(spec.servers or {}) do
    if s.max_conns == nil then s.max_conns = spec.max_conns end
    if s.max_conns == 0 then s.max_conns = nil end
    capped = capped or s.max_conns ~= nil
  end
  if capped and datagram then say("max_conns: not for udp (a flow is not refused for its server's load)") end
  spec.capped = capped or nil
  if conf.check ~= nil then
    local c, err = check_check(conf.check, datagram)
    if not c then say("check: %s", err) else spec.check = c end
  end
  if #problems > 0 then return nil, problems end
  spec.proxies = fields[1] == "proxy_host"   -- a pool of proxies, not of servers
  spec.fields = fields
  spec.datagram = datagram or nil
  if spec.check then spec.check.datagram = spec.datagram end
  return spec
end

_M.entry = entry

return _M
