-- The bystander of the specs on faults in user code: a second proxy in the config (a plain
-- tcp relay to an echo server, its %d the echo's port) that still serves after the fault
-- shows the fault cost its own connection only.
local tcp = require "spec.support.tcp"

local _M = {}

_M.PROXY = [[
proxy { name = "plain", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]

-- Whether a line sent through port comes back.
function _M.served(port)
  local c = tcp.connect(port)
  if not c then return false end
  local got = c:exchange("still here\n", nil, 5)
  c:close()
  return got == "still here\n"
end

return _M
