-- netproxy.services: port numbers for service names ("https" -> 443), as getservbyname()
-- would give them, read from /etc/services (names and aliases, tcp entries only). Read once,
-- at config time: nothing here runs while connections are served.
local io_open, tonumber = io.open, tonumber

local _M = {}

_M.FILE = "/etc/services"

local cache    -- name -> port, once read

local function parse(text)
  local ports = {}
  for line in text:gmatch("[^\n]+") do
    line = line:gsub("#.*", "")
    local name, port, rest = line:match("^%s*([%w%-_%.+]+)%s+(%d+)/tcp%f[%s%z]%s*(.*)$")
    if name then
      port = tonumber(port)
      if not ports[name] then ports[name] = port end
      for alias in rest:gmatch("%S+") do
        if not ports[alias] then ports[alias] = port end
      end
    end
  end
  return ports
end

-- The tcp port of a service name, or nil and why.
function _M.port(name)
  if not cache then
    local f = io_open(_M.FILE, "r")
    if not f then return nil, "unknown service '" .. name .. "' (" .. _M.FILE .. " cannot be read)" end
    cache = parse(f:read("*a"))
    f:close()
  end
  local port = cache[name]
  if not port then return nil, "unknown service '" .. name .. "' (not a tcp service in " .. _M.FILE .. ")" end
  return port
end

-- For specs: forget what was read.
function _M.reset()
  cache = nil
end

return _M
