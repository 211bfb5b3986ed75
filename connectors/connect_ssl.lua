-- connect_ssl: Net::Proxy's connect_ssl: CONNECT through an HTTP proxy (the connect
-- connector), then TLS to the target through the tunnel (the ssl connector). Parameters are
-- those of both: host, port, proxy_host, proxy_port, proxy_user, proxy_pass, proxy_agent,
-- and the TLS ones of `to = ssl` (ca, verify, sni, verify_name, alpn, cert, key, ...).
local connectors = require "netproxy.connectors"
local gate = require "netproxy.gate"

local connect = assert(connectors.get("connect"))
local ssl = assert(connectors.get("ssl"))

local _M = {
  positions = { to = true },
  params = {},
  sends_proxy_protocol = true,
  pool_fields = { "proxy_host", "proxy_port" },   -- `servers` is a pool of proxies
}
for k, v in pairs(connect.params) do _M.params[k] = v end
_M.params.tls = nil      -- TLS to the proxy too would be TLS inside TLS, which sock:tls does not do

for k, v in pairs(ssl.params) do _M.params[k] = v end

function _M.check(conf, position, ctx)
  -- the TLS parameters here are the target's (ssl's), not the proxy's: the address checks only
  return gate.check_sides(conf, "to", ctx, { from = connect.from_only, to = {} }, connect.check_proxy_address)
      or ssl.check_tls(conf, false)
end

function _M.connect(conf, conn)
  -- the PROXY header, if any, goes through the tunnel in clear: client_handshake sends it
  local tunnel, err = connect.tunnel(conf, conn)
  if not tunnel then return nil, err end
  return ssl.client_handshake(tunnel, conf, conn)
end

return _M
