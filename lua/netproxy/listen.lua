-- netproxy.listen: where a `from` listens, in Net::Server's forms. `port` is a number, a
-- service name ("https", from /etc/services), "host:port" ("127.0.0.1:8080", "[::1]:8080",
-- "*:443") or a list of those; `host = "*"` is every address (0.0.0.0 and ::). The C core
-- gets a list of { host =, port =, backlog = } entries (proxy.listen).
local check = require "netproxy.check"
local services = require "netproxy.services"

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring

local _M = {}

_M.BACKLOG = 4096     -- listen(2)'s queue when neither proxy{} nor server{} says

-- A port as a number, digits or a service name -> number, or nil and why.
function _M.port(v)
  if type(v) == "string" and not v:match("^%d+$") then
    if v:match("^%a[%w%-_%.+]*$") then return services.port(v) end
    return nil, "bad port '" .. v .. "' (want 0..65535 or a service name)"
  end
  return check.port(v)
end

-- One element of `port` -> { host = (nil: the from's host), port = }, or nil and why.
local function element(v)
  if type(v) ~= "number" and type(v) ~= "string" then
    return nil, "bad port: a " .. type(v) .. " (want a port, a service name or \"host:port\")"
  end
  local host, port
  if type(v) == "string" then
    host, port = v:match("^%[(.+)%]:([^:]+)$")
    if not host then host, port = v:match("^([^:%[%]]+):([^:]+)$") end
  end
  local n, err = _M.port(port or v)
  if not n then return nil, err end
  if host and host ~= "*" then
    local h, herr = check.host(host)
    if not h then return nil, herr end
    local ok, verr = check.ipv4_literal(h)
    if not ok then return nil, verr end
    host = h
  end
  return { host = host, port = n }
end

-- from.port -> list of { host =, port = }, or nil and why.
function _M.parse(v)
  if type(v) ~= "table" then
    local e, err = element(v)
    return e and { e }, err
  end
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > #v or k % 1 ~= 0 then
      return nil, "want a list of ports, not a table with key '" .. tostring(k) .. "'"
    end
  end
  if #v == 0 then return nil, "want at least one port" end
  local list = {}
  for i, item in ipairs(v) do
    local e, err = element(item)
    if not e then return nil, "[" .. i .. "]: " .. err end
    list[i] = e
  end
  return list
end

-- The C core's list for a from that listens on host, port (its connector's listen()), with
-- the further entries parsed from its `port` (nil: that one address); defer_accept (seconds
-- of TCP_DEFER_ACCEPT) only when set.
function _M.entries(host, port, parsed, backlog, defer_accept)
  local list = {}
  local function add(h, p)
    if h == "*" then
      add("0.0.0.0", p)
      add("::", p)
    else
      list[#list + 1] = { host = h, port = p, backlog = backlog or _M.BACKLOG,
                          defer_accept = defer_accept ~= 0 and defer_accept or nil }
    end
  end
  if parsed and parsed[1].port == port then
    for _, e in ipairs(parsed) do add(e.host or host, e.port) end
  else
    add(host, port)
  end
  return list
end

return _M
