-- netproxy.socks5_udp: SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) for the socks5 `from`. The
-- reply names a relay socket (on the address the client reached us at); the client sends
-- each datagram there with the SOCKS UDP header, to any target the connector's route or
-- allow lets through (checked per datagram: a refused one is dropped); replies come back
-- with the header naming their source. The association ends with its TCP control
-- connection. The C side is src/udp_assoc.c.
local core = require "netproxy.core"
local addr = require "netproxy.addr"
local gate = require "netproxy.gate"
local socks5 = require "netproxy.socks5"

local _M = {}

-- check(target, conn) for each datagram, as a hook: nil keeps "host:port", a string
-- rewrites it (route), "" refuses it.
local function checker(conf)
  local function check(target, conn)
    local host, port = addr.split(target)
    if not host or port == 0 then return "" end
    local to_host, to_port = gate.target(conf, host, port, conn)
    if not to_host then return "" end
    local rewritten = addr.join(to_host, to_port)
    if rewritten ~= target then return rewritten end
  end
  if jit then jit.off(check, true) end     -- hook_budget's count hook needs the interpreter
  return check
end

-- Serves one UDP ASSOCIATE request on client; returns only when the control connection
-- ends: nil, what it carried, "eof" (the session's end word).
function _M.associate(conf, client, conn, req)
  local bind_ip = addr.split(client:localaddr() or "")
  local client_ip = addr.split(conn.client or "")
  if not bind_ip or not client_ip then
    client:write(socks5.reply(socks5.GENERAL_FAILURE))
    return nil, "UDP ASSOCIATE: no address to relay on"
  end
  local assoc, bound = core.udp_associate({ bind = bind_ip, client = client_ip, client_port = req.port,
                                            check = checker(conf), conn = conn })
  if not assoc then
    client:write(socks5.reply(socks5.GENERAL_FAILURE))
    return nil, "UDP ASSOCIATE: " .. tostring(bound)
  end
  local ip, port = addr.split(bound)
  local bin = core.pack_ip(ip)
  local ok, err = client:write(socks5.reply(socks5.SUCCEEDED, #bin == 4 and socks5.IPV4 or socks5.IPV6, bin, port))
  if not ok then return nil, "client: " .. tostring(err), "client error" end
  conn:log("info", "SOCKS5 UDP ASSOCIATE: relay %s for %s", bound, conn.client)
  conn.target = "udp relay " .. bound
  core.set_target(conn.target)
  repeat                                   -- nothing more is said on it: wait for its end
    local data = client:read(4096, 0)
  until not data
  return nil, "UDP ASSOCIATE ended: " .. (assoc:summary() or ""), "eof"
end

return _M
