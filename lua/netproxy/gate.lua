-- netproxy.gate: what a proxy server (connect and socks5 as `from`) lets through: which users
-- (a `users` table or function) and which targets (a `route` function, else an `allow` list of
-- host:port patterns). One implementation, so that both servers refuse alike.
local check = require "netproxy.check"
local addr = require "netproxy.addr"
local type, pairs, tostring = type, pairs, tostring

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

return _M
