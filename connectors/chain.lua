-- chain: reach host:port through several proxies in turn. `hops` lists them, each a connect
-- (HTTP CONNECT) or socks5 proxy given as in that connector's `to` (proxy_host, proxy_port,
-- proxy_user, ...) but without host and port: the first hop is connected to, each next hop
-- is reached through the ones before it, and the target through the last.
--
--   to = { type = "chain", host = "target", port = 22, hops = {
--            { type = "connect", proxy_host = "a", proxy_port = 3128 },
--            { type = "socks5", proxy_host = "b", proxy_port = 1080, proxy_user = "u", proxy_pass = "p" } } }
--
-- A connect hop may be an HTTPS proxy (its tls = true, as in connect's `to`): one such hop a
-- chain, since what follows it already runs inside its TLS (TLS inside TLS is not done).
-- tls = true adds TLS to the target over the chain's tunnel (connect_ssl's way), with the
-- ssl connector's client parameters (ca, verify, verify_name, sni, alpn, cert, key, ...).
local core = require "netproxy.core"
local check = require "netproxy.check"
local addr = require "netproxy.addr"
local connectors = require "netproxy.connectors"
local proxy_protocol = require "netproxy.proxy_protocol"

local ssl = assert(connectors.get("ssl"))
local HOPS = { connect = true, socks5 = true }
local MAX_HOPS = 8

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring

local _M = {
  positions = { to = true },
  sends_proxy_protocol = true,  -- through the whole chain, to the target
}

-- Checks one hop against its connector's parameters; returns the normalised copy or a problem.
local function check_hop(hop, i)
  local label = "hop " .. i
  if type(hop) ~= "table" then return nil, label .. ": want a table like { type = \"socks5\", proxy_host = ..., proxy_port = ... }" end
  if not HOPS[hop.type] then return nil, label .. ": type wants connect or socks5, not " .. tostring(hop.type) end
  if hop.source ~= nil then return nil, label .. ": source is the chain's (its first hop is reached from it), not a hop's" end
  if hop.host ~= nil or hop.port ~= nil then
    return nil, label .. ": no host or port in a hop (its target is the next hop, or the chain's host and port)"
  end
  local mod = assert(connectors.get(hop.type))
  local out, problems = check.fields(hop, mod.params, { type = true })
  if #problems > 0 then return nil, label .. ": " .. problems[1] end
  for k in pairs(out) do
    if mod.from_only and mod.from_only[k] then return nil, ("%s: '%s' is for a server, not a hop"):format(label, k) end
  end
  out.type = hop.type
  local problem = mod.check_proxy(out)
  if problem then return nil, label .. ": " .. problem end
  return out
end

local function hop_list(v)
  if type(v) ~= "table" or #v == 0 then return nil, "want a list of { type = \"connect\" | \"socks5\", proxy_host = ..., proxy_port = ... }" end
  if #v > MAX_HOPS then return nil, "at most " .. MAX_HOPS .. " hops" end
  local out, tls_hop = {}, nil
  for i, hop in ipairs(v) do
    local checked, err = check_hop(hop, i)
    if not checked then return nil, err end
    if checked.tls then
      if tls_hop then return nil, ("hop %d: tls = true after hop %d's: TLS inside TLS is not supported (one HTTPS proxy a chain)"):format(i, tls_hop) end
      tls_hop = i
    end
    out[i] = checked
  end
  return out
end

_M.params = { host = check.host, port = check.port, hops = hop_list, tls = check.boolean,
              source = check.address }     -- the first hop is reached from it
local TLS_PARAMS = {}
for k, v in pairs(ssl.params) do
  if not _M.params[k] then
    _M.params[k] = v
    TLS_PARAMS[k] = true
  end
end

function _M.check(conf, position, ctx)
  if not conf.hops then return "missing hops" end
  if not (ctx and ctx.target_from_client) and (not conf.host or not conf.port) then return "missing host or port" end
  if conf.port == 0 then return "port 0 is not a port to connect to" end
  if conf.tls then
    for i, hop in ipairs(conf.hops) do
      if hop.tls then return ("tls = true to the target over hop %d's TLS: TLS inside TLS is not supported"):format(i) end
    end
    return ssl.check_tls(conf, false)
  end
  for k in pairs(TLS_PARAMS) do
    if conf[k] ~= nil then return ("'%s' goes with tls = true"):format(k) end
  end
end

-- The hop's table with the target it must ask for: the next hop, or the chain's target.
local function ask(hop, host, port)
  local t = {}
  for k, v in pairs(hop) do t[k] = v end
  t.host, t.port = host, port
  return t
end

function _M.connect(conf, conn)
  local hops = conf.hops
  local sock, err = core.connect(hops[1].proxy_host, hops[1].proxy_port, { timeout = conn.connect_timeout, source = conf.source })
  if not sock then return nil, "hop 1: proxy " .. addr.join(hops[1].proxy_host, hops[1].proxy_port) .. ": " .. err end
  for i, hop in ipairs(hops) do
    local next_hop = hops[i + 1]
    local host, port = conf.host, conf.port
    if next_hop then host, port = next_hop.proxy_host, next_hop.proxy_port end
    sock, err = connectors.get(hop.type).handshake(sock, ask(hop, host, port), conn)
    if not sock then return nil, "hop " .. i .. ": " .. err end
  end
  if conf.tls then return ssl.client_handshake(sock, conf, conn) end   -- PROXY header first, in clear
  return proxy_protocol.send(sock, conf, conn)
end

return _M
