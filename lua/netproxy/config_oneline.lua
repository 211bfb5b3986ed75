-- netproxy.config_oneline: the one-line form (HOST PORT, -L, -P) as a proxy{} declaration.
local addr = require "netproxy.addr"

local _M = {}

-- -P's schemes: the connector that speaks to such a proxy. socks5h is curl's name for
-- "the proxy resolves", which socks5 does here anyway (remote_dns).
-- https is an HTTPS proxy: connect with tls = true (verified against the system's CA store).
local SCHEMES = { http = "connect", https = "connect", socks5 = "socks5", socks5h = "socks5" }

-- "-P [SCHEME://]HOST:PORT" -> { type = ..., proxy_host = ..., proxy_port = ... }, or nil, why.
local function proxy_hop(s)
  local scheme, rest = s:match("^(%w+)://(.-)/?$")
  local kind = SCHEMES[scheme or "http"]
  if not kind then return nil, ("-P %s: unknown scheme '%s' (want http://, https:// or socks5://)"):format(s, scheme) end
  local host, port = addr.split(rest or s)
  if not host then return nil, "-P " .. s .. ": " .. port end
  return { type = kind, proxy_host = host, proxy_port = port, tls = scheme == "https" or nil }
end

-- The -P proxies as the `to` of HOST PORT: one proxy's connector, or a chain of them. The
-- credentials are the first proxy's (the one reached directly); proxy_agent goes to every
-- HTTP proxy.
local function oneline_to(o)
  local hops = {}
  for i, s in ipairs(o.via or {}) do
    local hop, err = proxy_hop(s)
    if not hop then return nil, err end
    if i == 1 then hop.proxy_user, hop.proxy_pass = o.proxy_user, o.proxy_pass end
    if hop.type == "connect" then hop.proxy_agent = o.proxy_agent end
    hops[i] = hop
  end
  if #hops == 0 then return { type = "tcp", host = o.host, port = o.port } end
  if #hops == 1 then
    hops[1].host, hops[1].port = o.host, o.port
    return hops[1]
  end
  return { type = "chain", host = o.host, port = o.port, hops = hops }
end

-- The one-line form as a proxy{} declaration: stdio (or -L) to HOST PORT, maybe via -P.
-- Returns the declaration, or nil and what is wrong with an address.
local function oneline_decl(o)
  local from = { type = "stdio" }
  if o.listen then
    local host, port = addr.split(o.listen, "localhost")
    if not host then return nil, "-L " .. o.listen .. ": " .. port end
    from = { type = "tcp", host = host, port = port }
  end
  local to, err = oneline_to(o)
  if not to then return nil, err end
  return { spec = { name = o.listen and "oneline" or "stdio", from = from, to = to }, where = "command line" }
end

_M.decl = oneline_decl

return _M
