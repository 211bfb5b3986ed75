-- netproxy.udp_service: the datagram form of `to = { type = "service" }`, for a udp from:
-- datagram(data, conn) is called for each datagram of a flow; the string it returns goes
-- back to that client (nil: no reply; conn:send("client", d) sends more). It runs like a
-- hook: in the main Lua state, never yielding, under hook_budget.
local check = require "netproxy.check"

local _M = {
  name = "service",
  positions = { to = true },
  params = { datagram = check.func },
}

function _M.check(conf, position, ctx)
  if not ctx.datagram then return "a datagram service wants a udp from" end
  if conf.datagram == nil then return "missing datagram = function(data, conn) ... end" end
  -- The C core calls it as a hook, where nil means "keep" and the very string it was given
  -- is also "keep": for a service nil is "no reply", so it becomes "" (nothing is sent).
  local datagram = conf.datagram
  conf.datagram = function(data, conn)
    local reply = datagram(data, conn)
    if reply == nil then return "" end
    return reply
  end
  if jit then   -- the budget's count hook needs the interpreter
    jit.off(datagram, true)
    jit.off(conf.datagram, true)
  end
end

return _M
