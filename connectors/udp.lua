-- udp: Net::Server's udp proto. As `from` it listens on host:port (host defaults to
-- localhost) and each client address:port is a flow; as `to` each flow gets its own
-- connected socket toward host:port. The C core (src/udp.c) carries the datagrams: one
-- datagram is one datagram, never merged or split. See docs/udp.md.
--
-- A `from` with `probes` routes QUIC by its ClientHello (src/udp_probe.c reads the Initials):
--   from = { type = "udp", port = 443,
--            probes = { { match = "quic", sni = "*.a.example", to = { type = "udp", ... } },
--                       { match = "quic", alpn = "h3", to = { ... } },
--                       { match = function(hello, conn) return hello.sni == nil end, to = { ... } } },
--            fallback = { type = "udp", ... },      -- not QUIC, or no probe matched
--            probe_timeout = 5 }                    -- a ClientHello not whole by then: fallback
local check = require "netproxy.check"
local addr = require "netproxy.addr"
local ipairs, pairs, tostring, type = ipairs, pairs, tostring, type

local _M = {
  positions = { from = true, to = true },
  datagram = true,          -- a `from` of datagrams: its `to` is udp or a datagram service
}

local PROBE_KEYS = { match = true, sni = true, alpn = true, to = true }

local function probe_list(v)
  if type(v) ~= "table" or #v == 0 then return nil, "want a list of { match = \"quic\", sni = ..., to = { ... } }" end
  for i, p in ipairs(v) do
    if type(p) ~= "table" then return nil, "probe " .. i .. ": want a table" end
    if p.match ~= "quic" and type(p.match) ~= "function" then
      return nil, "probe " .. i .. ": match wants \"quic\" or a function, not " .. tostring(p.match)
    end
    if p.to == nil then return nil, "probe " .. i .. ": missing to" end
    for k in pairs(p) do
      if not PROBE_KEYS[k] then return nil, "probe " .. i .. ": unknown parameter '" .. tostring(k) .. "'" end
    end
    if (p.sni or p.alpn) and p.match ~= "quic" then return nil, "probe " .. i .. ": sni and alpn go with match = \"quic\"" end
    local ok, why = addr.check_probe_names(p)
    if not ok then return nil, "probe " .. i .. ": " .. why end
  end
  return v
end

local function connector_table(v)
  if type(v) ~= "table" then return nil, "want a connector table like { type = \"udp\", ... }" end
  return v
end

_M.params = { host = check.host, port = check.port, probes = probe_list, fallback = connector_table,
              probe_timeout = check.seconds }

function _M.check(conf, position, ctx)
  if conf.hook_mode then return "hook_mode: a udp hook sees whole datagrams" end
  if conf.proxy_protocol then return "proxy_protocol: not for udp" end
  if position == "from" then
    if conf.probes == nil then
      if conf.fallback ~= nil or conf.probe_timeout ~= nil then return "fallback and probe_timeout go with probes" end
      return check.listen(conf)
    end
    conf.probe_timeout = conf.probe_timeout or 5
    if conf.probe_timeout <= 0 then return "probe_timeout: want more than 0 seconds" end
    -- each destination is a `to` of a udp from: udp (a host and port, or a pool of servers)
    for i, p in ipairs(conf.probes) do
      p.to = ctx.check_to(p.to, "probes[" .. i .. "].to", { datagram = true })
      if not p.to then return "" end
      if p.to.type ~= "udp" then return "probes[" .. i .. "].to: want a udp to" end
      if p.to.hook then return "probes[" .. i .. "].to: hook: not here (the from's hook sees every flow's datagrams)" end
    end
    if conf.fallback then
      conf.fallback = ctx.check_to(conf.fallback, "fallback", { datagram = true })
      if not conf.fallback then return "" end
      if conf.fallback.type ~= "udp" then return "fallback: want a udp to" end
      if conf.fallback.hook then return "fallback: hook: not here (the from's hook sees every flow's datagrams)" end
    end
    return check.listen(conf)
  end
  if conf.probes ~= nil or conf.fallback ~= nil then return "probes and fallback go with a udp from" end
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
