-- connect_ssl: Net::Proxy's connect_ssl: CONNECT through an HTTP proxy (the connect
-- connector), then TLS to the target through the tunnel (the ssl connector). Parameters are
-- those of both: host, port, proxy_host, proxy_port, proxy_user, proxy_pass, proxy_agent,
-- and the TLS ones of `to = ssl` (ca, verify, sni, verify_name, alpn, cert, key, ...).
local connectors = require "netproxy.connectors"

local connect = assert(connectors.get("connect"))
local ssl = assert(connectors.get("ssl"))

local _M = {
  positions = { to = true },
  params = {},
  sends_proxy_protocol = true,
  pool_fields = { "proxy_host", "proxy_port" },   -- `servers` is a pool of proxies
}
for k, v in pairs(connect.params) do _M.params[k] = v end
for k, v in pairs(ssl.params) do _M.params[k] = v end

function _M.check(conf, position, ctx)
  return connect.check(conf, "to", ctx) or ssl.check_tls(conf, false)
end

function _M.connect(conf, conn)
  -- the PROXY header, if any, goes through the tunnel in clear: client_handshake sends it
  local tunnel, err = connect.tunnel(conf, conn)
  if not tunnel then return nil, err end
  return ssl.client_handshake(tunnel, conf, conn)
end

return _M
