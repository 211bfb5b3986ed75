-- udp: Net::Server's udp proto. As `from` it listens on host:port (host defaults to
-- localhost) and each client address:port is a flow; as `to` each flow gets its own
-- connected socket toward host:port. The C core (src/udp.c) carries the datagrams: one
-- datagram is one datagram, never merged or split. See docs/udp.md.
local check = require "netproxy.check"

local _M = {
  positions = { from = true, to = true },
  params = { host = check.host, port = check.port },
  datagram = true,          -- a `from` of datagrams: its `to` is udp or a datagram service
}

function _M.check(conf, position, ctx)
  if conf.hook_mode then return "hook_mode: a udp hook sees whole datagrams" end
  if conf.proxy_protocol then return "proxy_protocol: not for udp" end
  if position == "from" then return check.listen(conf) end
  if not ctx.datagram then return "a udp to wants a udp from" end
  if conf.port == nil then return "missing port" end
  if conf.host == nil then return "missing host" end
  if conf.port == 0 then return "port 0 is not a port to send to" end
end

-- What the C core binds: a UDP socket per address host resolves to.
function _M.listen(conf)
  return { host = conf.host, port = conf.port, udp = true }
end

return _M
