-- netproxy.gate: what a proxy server (connect and socks5 as `from`) lets through: which users
-- (a `users` table or function) and which targets (a `route` function, else an `allow` list of
-- host:port patterns). One implementation, so that both servers refuse alike.
local check = require "netproxy.check"
local addr = require "netproxy.addr"
local type, pairs, tostring, tonumber, pcall = type, pairs, tostring, tonumber, pcall
local format, concat, floor = string.format, table.concat, math.floor
local core              -- netproxy.core, when a connection runs (not in --check or unit specs)

local _M = {}

-- Validator for `users`: { name = "password" } or function(user, pass, conn).
function _M.check_users(v)
  if type(v) == "function" then return v end
  if type(v) ~= "table" then return nil, "want { user = \"password\" } or a function" end
  for k, p in pairs(v) do
    if type(k) ~= "string" or type(p) ~= "string" then return nil, "want { user = \"password\" }" end
  end
  return v
end

-- Are these credentials good for `users`? (nil user: no credentials given)
function _M.authorized(users, user, pass, conn)
  if user == nil then return false end
  if type(users) == "function" then return users(user, pass, conn) and true or false end
  return users[user] ~= nil and users[user] == pass
end

-- Validator for a server side: route or allow, or nothing is served (never an open proxy).
function _M.check_server(conf)
  if not conf.route and not conf.allow then
    return "needs route = function(host, port, conn) or an allow list: netproxy is no open proxy"
  end
end

-- What a proxy connector (connect, socks5) checks in either position: the other
-- position's parameters refused; as `from`, listen defaults (none as a branch of dual,
-- which listens) and never an open proxy; as `to`, the proxy's address (check_proxy) and
-- the target unless the client names it. only = { from = {...}, to = {...} }.
function _M.check_sides(conf, position, ctx, only, check_proxy)
  for k in pairs(position == "from" and only.to or only.from) do
    if conf[k] ~= nil then return ("'%s' is for the other position, not '%s'"):format(k, position) end
  end
  if position == "from" then
    if ctx and ctx.nested then
      if conf.host or conf.port then return "no host or port here: the enclosing connector listens" end
      return _M.check_server(conf)
    end
    return check.listen(conf) or _M.check_server(conf)
  end
  local problem = check_proxy(conf)
  if problem then return problem end
  if not (ctx and ctx.target_from_client) and (not conf.host or not conf.port) then
    return "missing host or port"
  end
end

-- The target to reach for what a client asked: route's answer, or the same when the allow
-- list has it. Returns host, port; or nil, why, false, reason (refused; reason: route's own
-- words, for the client); or nil, why, true when route returned something that is not a
-- target (a bug in the script: the caller raises it).
function _M.target(conf, host, port, conn)
  local asked = addr.join(host, port)
  if conf.route then
    local rhost, rport = conf.route(host, port, conn)
    if rhost == nil then
      return nil, ("route refused %s: %s"):format(asked, tostring(rport or "no reason")), false, rport
    end
    local to_host, to_port = check.host(rhost), check.port(rport or port)
    if not to_host or not to_port or to_port == 0 then
      return nil, ("route returned a bad target for %s: %s %s"):format(asked, tostring(rhost), tostring(rport)), true
    end
    return to_host, to_port
  end
  if not addr.allowed(conf.allow, host, port) then return nil, "not in the allow list: " .. asked end
  return host, port
end

-- ---------------------------------------------------------------- per_source, per_user

local LIMIT_KEYS = { max_conns = true, rate = true, ipv6_prefix = true }

-- Validator for per_source / per_user: { max_conns = N, rate = "N/S" (N new connections per
-- S seconds), ipv6_prefix = P (per_source: IPv6 clients grouped by /P, 64 unless told) }.
-- Normalised to { max_conns, rate_n, rate_s, ipv6_prefix } for the C core.
function _M.check_limit(v)
  if type(v) ~= "table" then return nil, 'want { max_conns = N, rate = "N/S" }' end
  for k in pairs(v) do
    if not LIMIT_KEYS[k] then return nil, ("unknown field '%s' (want max_conns, rate, ipv6_prefix)"):format(tostring(k)) end
  end
  local out = { ipv6_prefix = 64 }
  if v.max_conns ~= nil then
    local n = tonumber(v.max_conns)
    if not n or n ~= floor(n) or n < 1 or n > 65535 then
      return nil, ("max_conns: bad count '%s' (want 1..65535)"):format(tostring(v.max_conns))
    end
    out.max_conns = n
  end
  if v.rate ~= nil then
    local n, s = tostring(v.rate):match("^(%d+)/(%d+%.?%d*)s?$")
    n, s = tonumber(n), tonumber(s)
    if not n or n < 1 or n > 1000000 or not s or s <= 0 or s > 86400 then
      return nil, ("rate: bad rate '%s' (want \"N/S\": N new connections per S seconds, e.g. \"10/60\")"):format(tostring(v.rate))
    end
    out.rate_n, out.rate_s = n, s
  end
  if v.ipv6_prefix ~= nil then
    local n = tonumber(v.ipv6_prefix)
    if not n or n ~= floor(n) or n < 1 or n > 128 then
      return nil, ("ipv6_prefix: bad prefix '%s' (want 1..128)"):format(tostring(v.ipv6_prefix))
    end
    out.ipv6_prefix = n
  end
  if not out.max_conns and not out.rate_n then return nil, "want max_conns or rate (or both)" end
  return out
end

-- The key a client address counts under: IPv4 (and IPv4-mapped IPv6) as a dotted quad, IPv6
-- as eight groups of four hex digits masked to prefix bits, then "/prefix". The C core
-- makes the same text at accept (limits.c), so a server-wide rule counts a client alike on
-- every proxy. nil for what is not an IP address.
function _M.source_key(ip, prefix)
  local q = check.ipv4(ip)
  if q then return concat(q, ".") end
  local g = check.ipv6(ip)
  if not g then return nil end
  if g[1] == 0 and g[2] == 0 and g[3] == 0 and g[4] == 0 and g[5] == 0 and g[6] == 0xffff then
    return format("%d.%d.%d.%d", floor(g[7] / 256), g[7] % 256, floor(g[8] / 256), g[8] % 256)
  end
  prefix = prefix or 64
  local out = {}
  for i = 1, 8 do
    local keep = prefix - 16 * (i - 1)
    local v = g[i]
    if keep <= 0 then v = 0
    elseif keep < 16 then v = v - v % 2 ^ (16 - keep) end
    out[i] = format("%04x", v)
  end
  return concat(out, ":") .. "/" .. prefix
end

-- One more connection for conn under server{}'s rule then the proxy's, of one kind:
-- per_user when user is given, else per_source (by conn.client: the PROXY header's client
-- when there was one). Counted once per connection. true, or nil and why.
local function count(proxy, conn, user)
  local kind = user and "user" or "source"
  if conn["_counted_" .. kind] then return true end
  conn["_counted_" .. kind] = true
  local rules = user and { proxy.server_per_user, proxy.per_user } or { proxy.server_per_source, proxy.per_source }
  local key = user
  core = core or require "netproxy.core"
  for i = 1, 2 do
    local r = rules[i]
    if r then
      if not user then key = _M.source_key((addr.split(conn.client)), r.ipv6_prefix) end
      if key then
        local ok, why = core.limit(kind, i == 1 and "" or proxy.name, key, r.max_conns or 0, r.rate_n or 0, r.rate_s or 0)
        if not ok then
          conn._limited = why
          return nil, why
        end
      end
    end
  end
  return true
end

-- The limits the session checks (netproxy.config's limits_in_lua: a PROXY header, or a
-- `from` that answers a refusal in its protocol): per_source, then per_user once the
-- client authenticated (conn.stash.user). true, or nil and why (counted by reason in the
-- core; conn._limited keeps why, for on_denied). proxy nil (a dual branch): nothing.
function _M.admit(proxy, conn)
  if not proxy then return true end
  local ok, why = true, nil
  if proxy.limits_in_lua and (proxy.server_per_source or proxy.per_source) then ok, why = count(proxy, conn) end
  local user = conn.stash.user
  if ok and user and (proxy.server_per_user or proxy.per_user) then ok, why = count(proxy, conn, user) end
  return ok, why
end

-- Net::Server's request_denied_hook: server{ on_denied } then the proxy's, given { proxy,
-- client, reason }; an error is logged and changes nothing.
function _M.denied(proxy, conn, why)
  local info = { proxy = proxy.name, client = conn.client, reason = why }
  local fns = { proxy.server_on_denied or false, proxy.on_denied or false }
  for i = 1, 2 do
    local fn = fns[i]
    if fn then
      local ok, err = pcall(fn, info)
      if not ok then conn:log("err", "on_denied: %s", tostring(err)) end
    end
  end
end

return _M
