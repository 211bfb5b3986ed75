-- tcp: Net::Proxy's simplest connector. As `from` it listens on host:port (host defaults
-- to localhost); as `to` it connects to host:port (from the address `source`, if given). The
-- bytes are left alone.
local core = require "netproxy.core"
local check = require "netproxy.check"
local proxy_protocol = require "netproxy.proxy_protocol"

local _M = {
  positions = { from = true, to = true },
  params = { host = check.host, port = check.port, source = check.address },
  sends_proxy_protocol = true,
}

function _M.check(conf, position, ctx)
  if position == "from" then
    return check.listen(conf)
  elseif not ctx.target_from_client then   -- else the client names host and port
    if conf.port == nil then return "missing port" end
    if conf.host == nil then return "missing host" end
    if conf.port == 0 then return "port 0 is not a port to connect to" end
  end
end

-- What the C core binds for this connector in the `from` position.
function _M.listen(conf)
  return conf.host, conf.port
end

-- Where connect() goes when it has nothing else to do: the C core may then connect by
-- itself (netproxy.session.route).
function _M.fixed(conf)
  if conf.proxy_protocol == nil then return { host = conf.host, port = conf.port, source = conf.source } end
end

-- Reaches the server (and tells it who the client is, with proxy_protocol); the socket is
-- relayed as it is.
function _M.connect(conf, conn)
  local opts = conn.connect_timeout       -- a bare number: no table to make per connection
  if conf.source or conf.tcp_keepalive then
    opts = { timeout = opts, source = conf.source, keepalive = conf.tcp_keepalive }
  end
  local sock, err = core.connect(conf.host, conf.port, opts)
  if not sock then return nil, err end
  return proxy_protocol.send(sock, conf, conn)
end

return _M
