-- netproxy.conn: the connection object that connectors (and hooks) are handed.
local core = require "netproxy.core"
local select, string_format, tostring = select, string.format, tostring

local _M = {}
local mt = { __index = _M }

function _M.new(proxy, id, client)
  return setmetatable({
    id = id,
    proxy = proxy.name,
    client = client,            -- "addr:port" of the client
    stash = {},                 -- shared by everything that handles this connection
    connect_timeout = proxy.connect_timeout,
  }, mt)
end

-- conn:log(level, fmt, ...): a line about this connection, formatted only when shown.
function _M.log(self, level, fmt, ...)
  if not core.log_enabled(level) then return end
  local msg = select("#", ...) > 0 and string_format(fmt, ...) or tostring(fmt)
  core.log(level, self.proxy .. ": " .. msg)
end

return _M
