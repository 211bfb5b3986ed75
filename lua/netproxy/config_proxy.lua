-- netproxy.config_proxy: checks one proxy{} declaration against server{}: its options, its
-- `from` and `to`, and settings that would pass and then do nothing.
local connectors = require "netproxy.connectors"
local listen = require "netproxy.listen"
local options = require "netproxy.config_options"
local connector = require "netproxy.config_connector"
local PER_PROXY, GUARDS, PROXY, fields = options.PER_PROXY, options.GUARDS, options.PROXY, options.fields
local check_connector, copy, parsed_ports = connector.check, connector.copy, connector.parsed_ports

local _M = {}

-- Why the bytes of this side must pass through user space, or nil.
local function needs_copy(side)
  if side.hook then return "a hook" end
  if side._tls then return "TLS" end
end

-- Settings that would pass and then do nothing. Each is an error, except where it is
-- harmless (a relay mode inherited from server{} or the command line, which applies to
-- every proxy): a warning then, printed by --check and at start.
local function check_effects(proxy, spec, given, from_mod, dests, server, say, warn)
  local sides = { proxy.from }
  for _, d in ipairs(dests) do sides[#sides + 1] = d end

  -- (allow and deny apply to a stdio proxy whose standard input is a socket: inetd style)
  if proxy.listen.stdio and (given.max_clients ~= nil or server.set_at.max_clients) then
    say("%smax_clients does nothing on a stdio proxy: the process serves its one connection",
        given.max_clients == nil and "server{} " or "")
  end
  if (given.defer_accept or 0) > 0 and (from_mod.datagram or proxy.listen.path or proxy.listen.stdio) then
    say("defer_accept does nothing here: it waits for a TCP client's first bytes (this from listens on %s)",
        from_mod.datagram and "udp" or proxy.listen.path and "a unix socket" or "standard input")
  end
  if from_mod.datagram and given.bandwidth ~= nil then
    say("bandwidth does nothing on a udp proxy: it shapes the relay of stream connections")
  end
  if from_mod.datagram and given.total_timeout ~= nil then
    say("total_timeout does nothing on a udp proxy: a flow ends by udp_idle_timeout (or max_flows)")
  end
  if from_mod.picks_to and spec.to ~= nil and not (type(spec.to) == "table" and spec.to.type == "dummy") then
    say("to: the %s connector picks the destination itself (server_first, client_first, probes): leave to out",
        proxy.from.type)
  end
  if from_mod.provides_target and type(spec.to) == "table" and (spec.to.host ~= nil or spec.to.port ~= nil) then
    say("to: host and port come from the client's request (from = %s): leave them out", proxy.from.type)
  end

  local why
  for _, side in ipairs(sides) do why = why or needs_copy(side) end
  if proxy.relay == "splice" and why and given.relay then
    say("relay = \"splice\" cannot be honoured: %s needs the bytes (the copying relay); use \"auto\"", why)
  elseif proxy.relay == "splice" and why then
    warn("relay \"splice\" (%s) cannot be honoured: %s needs the bytes, so this proxy copies",
         server.set_at.relay and "from server{}" or "from the command line", why)
  end

  -- a stream service answers the client itself: no relay runs, so no hook sees a byte
  if not from_mod.datagram then
    local relayed = false
    for i, d in ipairs(dests) do
      local served = connectors.get(d.type).serve ~= nil
      if served and d.hook then
        say("%s: hook does nothing on a service: no relay runs (the service reads and writes the client itself)",
            i == 1 and "to" or "a " .. proxy.from.type .. " destination")
      end
      relayed = relayed or not (served or (i == 1 and from_mod.picks_to))
    end
    if proxy.from.hook and not relayed then
      say("from: hook does nothing when the connection is answered by a service: no relay runs (read the client in the service)")
    end
  end

  -- a `from` that answers some requests itself (connect's plain http://): no hook sees them
  local unrelayed = from_mod.unrelayed and from_mod.unrelayed(proxy.from)
  if unrelayed then
    for i, side in ipairs(sides) do
      if side.hook then say("%s: hook does not see %s", i == 1 and "from" or "to", unrelayed) end
    end
  end

  local hooked = false
  for _, side in ipairs(sides) do hooked = hooked or side.hook ~= nil end
  for i, side in ipairs(sides) do
    if side._tls and side.start_cleartext and not side.starttls and not hooked then
      say("%s: start_cleartext = true without a starttls function or a hook calling conn:starttls(): it would stay in clear text",
          i == 1 and "from" or "to")
    end
  end
end

-- A listener only this host can reach: a loopback address (or a unix socket).
local function loopback(e)
  local host = e.host and tostring(e.host):gsub("^%[(.*)%]$", "%1")
  return e.path ~= nil or host == "localhost" or host == "::1" or (host or ""):match("^127%.") ~= nil
end

-- A PROXY-protocol header is believed as sent: any client that reaches such a listener
-- can claim any address (and pass allow/deny rules on the claimed one, logs, limits).
local function warn_proxy_protocol(proxy, server, warn)
  if not proxy.from.proxy_protocol or proxy.allow or proxy.deny or server.allow or server.deny then return end
  for _, e in ipairs(proxy.listen[1] and proxy.listen or { proxy.listen }) do
    if not loopback(e) then
      return warn("from: proxy_protocol on %s trusts the header of any client that can connect (it may claim "
                  .. "any address): restrict it to your load balancers with allow", e.host or "every address")
    end
  end
end

local function check_proxy(decl, index, server, say_at, warn_at)
  local where = decl.where
  local label = "proxy '" .. tostring(decl.spec.name or ("proxy" .. index)) .. "'"
  local function say(fmt, ...) say_at(where, label .. ": " .. fmt, ...) end
  local function warn(fmt, ...) warn_at(where, label .. ": " .. fmt, ...) end

  local given, problems = fields(decl.spec, PROXY)
  for _, p in ipairs(problems) do say("%s", p) end
  local proxy = { name = given.name or ("proxy" .. index), where = where }
  connector.begin(proxy.name)
  for k in pairs(PER_PROXY) do
    if given[k] ~= nil then proxy[k] = given[k] else proxy[k] = server[k] end
  end
  if given.bandwidth and server.bandwidth then     -- a proxy's own rates on top of server{}'s
    proxy.bandwidth = copy(server.bandwidth)
    for k, v in pairs(given.bandwidth) do proxy.bandwidth[k] = v end
  end
  for k in pairs(GUARDS) do proxy[k] = given[k] end
  proxy.on_close = given.on_close
  proxy.tls_accept = given.tls_accept
  proxy.server_accept = server.accept
  proxy.server_on_denied = server.on_denied
  proxy.server_per_source, proxy.server_per_user = server.per_source, server.per_user
  local from_ctx = { subs = {} }      -- the destinations a `from` holds (dual's)
  if decl.spec.from == nil then say("missing from") else proxy.from = check_connector(decl.spec.from, "from", say, from_ctx) end
  local from_mod = proxy.from and connectors.get(proxy.from.type)
  if proxy.tls_accept and proxy.from and proxy.from.type ~= "ssl" then
    say("tls_accept goes with from = ssl (it runs after the client's handshake)")
  end
  -- a `from` that hears the target from its client (connect) lets `to` leave it out
  local ctx = { target_from_client = from_mod and from_mod.provides_target or false,
                datagram = from_mod and from_mod.datagram or false,
                -- a `from` that may replace `to` with a destination of its own (dual's
                -- picks, a connector's accept returning a connector table), for dummy's
                -- check (a bad `from` has said enough)
                from_chooses = not from_mod or from_mod.picks_to or (from_mod.accept ~= nil and not from_mod.provides_target),
                from_type = proxy.from and proxy.from.type }
  local to = decl.spec.to
  if to == nil and ctx.target_from_client then to = { type = "tcp" } end
  if to == nil and from_mod and from_mod.default_to then to = from_mod.default_to end
  if proxy.from and ctx.datagram and proxy.from.probes then
    -- a udp from with quic probes picks each flow's server: its fallback (checked with it, or
    -- none: a udp `to` without a server) stands as the proxy's `to`
    if to ~= nil then say("to: a udp from with probes picks the server itself: give fallback = { ... } in from") end
    proxy.to = proxy.from.fallback or { type = "udp" }
  elseif to ~= nil then proxy.to = check_connector(to, "to", say, ctx)
  elseif proxy.from or decl.spec.from == nil then say("missing to") end   -- (a bad from said enough)
  proxy.sources = {}
  for a in pairs(connector.sources()) do proxy.sources[#proxy.sources + 1] = a end
  table.sort(proxy.sources)
  if ctx.datagram and proxy.max_flows < 1 then say("max_flows: want at least 1 (the flow table is bounded)") end
  if proxy.from then
    local host, port = from_mod.listen(proxy.from)
    proxy.listen = type(host) == "table" and host
                   or listen.entries(host, port, parsed_ports[proxy.from], proxy.backlog,
                                                 proxy.defer_accept)
    if proxy.listen.path and (proxy.allow or proxy.deny) then
      say("%s: a unix socket's clients have no address to match: use accept(conn) with conn.peer",
          proxy.allow and "allow" or "deny")
    end
    warn_proxy_protocol(proxy, server, warn)
  end
  if proxy.from then
    -- per_source is checked at accept by the C core, unless the client's address comes from
    -- a PROXY header or the `from` answers a refusal in its protocol (429, 0x02): then the
    -- session (netproxy.gate.admit) checks it
    proxy.limits_by_connector = from_mod.answers_limits or false
    proxy.limits_in_lua = proxy.from.proxy_protocol ~= nil or proxy.limits_by_connector
    if proxy.per_user and not from_mod.answers_limits then
      say("per_user: only a connect or socks5 `from` has users (this one is %s)", proxy.from.type)
    elseif proxy.per_user and not proxy.from.users then
      say("per_user without users: no client authenticates, so none is counted")
    end
    if from_mod.datagram and proxy.per_source then
      say("per_source does nothing on a udp proxy yet: use max_flows")
    end
  end
  if proxy.from and proxy.to then
    local dests = { proxy.to }
    for _, d in ipairs(from_ctx.subs) do dests[#dests + 1] = d end
    check_effects(proxy, decl.spec, given, from_mod, dests, server, say, warn)
  end
  return proxy
end

_M.check = check_proxy

return _M
