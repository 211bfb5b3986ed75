-- dual: Net::Proxy's Y-shaped connector, then sslh's content probes. A client that says
-- nothing for `timeout` seconds goes to server_first (the server speaks first: SSH, SMTP);
-- a client that talks is matched against `probes` in order and goes to the first that
-- matches, else to client_first. The bytes looked at are not consumed: the chosen server
-- gets them first, unchanged. Waiting never blocks the loop.
--
--   from = { type = "dual", port = 443, timeout = 1,
--            server_first = { type = "tcp", host = "127.0.0.1", port = 22 },
--            client_first = { type = "tcp", host = "127.0.0.1", port = 8443 },
--            probes = {
--              { match = "ssh",  to = { type = "tcp", host = "127.0.0.1", port = 22 } },
--              { match = "tls",  sni = "*.example.org", to = { ... } },
--              { match = "http", to = { ... } },
--              { match = function(bytes) return bytes:sub(1, 4) == "PING" or nil end, to = { ... } },
--              { match = "socks5", from = { type = "socks5", allow = { "*.example.org:*" } } },
--            } }
--
-- A probe with `from` hands the client to a server-side connector that names the target
-- itself (socks5, connect): it speaks its protocol with the client, and the probe's `to` (tcp
-- when left out; connect, socks5 or chain) goes where the client asked.
local core = require "netproxy.core"
local probes = require "netproxy.probes"
local connectors = require "netproxy.connectors"
local check = require "netproxy.check"
local addr = require "netproxy.addr"

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring

local _M = {
  positions = { from = true },
  default_to = { type = "dummy" },   -- the destination is chosen here; `to` may be left out
  picks_to = true,                   -- and a `to` given would never be used
}

-- The default max_peek: a ClientHello of up to 16 KiB (the largest one TLS record carries,
-- 16,384 bytes and the record's 5-byte header on the wire) whether it comes in one record or
-- split over many (up to 204 of them: 5 bytes of header each in the 1 KiB beyond 16 KiB).
_M.MAX_PEEK = 16384 + 1024

local BUILTIN = { ssh = true, tls = true, http = true, socks5 = true }

local function probe_list(v)
  if type(v) ~= "table" then return nil, "want a list of { match = ..., to = { ... } }" end
  for i, p in ipairs(v) do
    if type(p) ~= "table" then return nil, "probe " .. i .. ": want a table" end
    if not (BUILTIN[p.match] or type(p.match) == "function") then
      return nil, "probe " .. i .. ": match wants ssh, tls, http, socks5 or a function, not " .. tostring(p.match)
    end
    if p.to == nil and p.from == nil then return nil, "probe " .. i .. ": missing to (or from)" end
    for k in pairs(p) do
      if k ~= "match" and k ~= "to" and k ~= "from" and k ~= "sni" and k ~= "alpn" and k ~= "ja4" then
        return nil, "probe " .. i .. ": unknown parameter '" .. tostring(k) .. "'"
      end
    end
    if (p.sni or p.alpn or p.ja4) and p.match ~= "tls" then return nil, "probe " .. i .. ": sni, alpn and ja4 go with match = \"tls\"" end
    if type(p.ja4) == "string" then p.ja4 = { p.ja4 } end
    if p.ja4 ~= nil then
      if type(p.ja4) ~= "table" or #p.ja4 == 0 then return nil, "probe " .. i .. ": ja4: want a fingerprint or a list of them" end
      local set = {}
      for _, f in ipairs(p.ja4) do
        if type(f) ~= "string" or not f:match("^[tqd]%w%w[di]%d%d%d%d%w%w_%x+_%x+$") then
          return nil, "probe " .. i .. ": ja4: bad fingerprint '" .. tostring(f) .. "' (like t13d1516h2_8daaf6152771_d8a2da3f94cd)"
        end
        set[f] = true
      end
      p._ja4 = set
    end
    local ok, why = addr.check_probe_names(p)
    if not ok then return nil, "probe " .. i .. ": " .. why end
  end
  return v
end

local function connector_table(v)
  if type(v) ~= "table" then return nil, "want a connector table like { type = \"tcp\", ... }" end
  return v
end

_M.params = {
  host = check.host, port = check.port, timeout = check.seconds,
  server_first = connector_table, client_first = connector_table, probes = probe_list,
  probe_timeout = check.seconds, max_peek = check.int_range(16, 65536, "bytes"),
}

-- A probe's `from`: a server side that hears the target from the client; its `to` (tcp by
-- default) is checked as the `to` of such a server. Returns a problem, or nil.
local function check_branch(p, i, ctx)
  local label = "probes[" .. i .. "]"
  if type(p.from) ~= "table" then return label .. ".from: want a connector table like { type = \"socks5\", ... }" end
  local mod = connectors.get(p.from.type)
  if mod and not mod.provides_target then
    return label .. ".from: the " .. tostring(p.from.type) .. " connector does not hear a target from the client (want socks5 or connect)"
  end
  p.from = ctx.check_from(p.from, label .. ".from")
  if not p.from then return "" end
  p.to = ctx.check_to(p.to or { type = "tcp" }, label .. ".to", { target_from_client = true })
  if not p.to then return "" end
end

function _M.check(conf, position, ctx)
  local problem = check.listen(conf)
  if problem then return problem end
  conf.timeout = conf.timeout or 1          -- Net::Proxy's default
  conf.probe_timeout = conf.probe_timeout or 5
  conf.max_peek = conf.max_peek or _M.MAX_PEEK
  if not conf.server_first and not conf.client_first and not conf.probes then
    return "needs server_first, client_first or probes"
  end
  -- the destinations are `to` connectors: check them as such
  for _, key in ipairs({ "server_first", "client_first" }) do
    if conf[key] then
      conf[key] = ctx.check_to(conf[key], key)
      if not conf[key] then return "" end
    end
  end
  for i, p in ipairs(conf.probes or {}) do
    local problem = p.from and check_branch(p, i, ctx)
    if problem then return problem end
    if not p.from then
      p.to = ctx.check_to(p.to, "probes[" .. i .. "].to")
      if not p.to then return "" end
    end
  end
end

function _M.listen(conf)
  return conf.host, conf.port
end

-- sni and alpn are patterns with netproxy.addr's meaning of `*` (within one label)
local function alpn_matches(wanted, offered)
  for _, proto in ipairs(offered) do
    if addr.host_matches(wanted, proto) then return true end
  end
  return false
end

-- The JA4 of the hello a tls probe read into `into`, worked out once (core.ja4, src/ja4.c).
local function ja4_of(into)
  local ja4 = rawget(into, "ja4")
  if ja4 == nil and rawget(into, "_hello") then
    ja4 = core.ja4(into._hello) or false
    rawset(into, "ja4", ja4)
  end
  return ja4 or nil
end

-- Runs one probe entry over buf: "match", "no" or "more". A tls probe's SNI goes to
-- into.sni (the connection's conn: for a pool's balance function, and hooks), its hello to
-- into._hello (conn.ja4 is made of it when asked).
local function run_probe(p, buf, into)
  if type(p.match) == "function" then
    local r = p.match(buf)
    if r == nil then return "more" end
    return r and "match" or "no"
  end
  local verdict, info = probes[p.match](buf)
  if verdict ~= "match" or p.match ~= "tls" then return verdict end
  if rawget(into, "_hello") ~= info.hello then into.ja4 = nil end
  into.sni, into._hello = info.sni, info.hello
  if p.sni and not addr.host_matches(p.sni, info.sni) then return "no" end
  if p.alpn and not alpn_matches(p.alpn, info.alpn) then return "no" end
  if p._ja4 and not p._ja4[ja4_of(into) or ""] then return "no" end
  return "match"
end

-- Each probe as one function of the bytes (and where a tls probe puts the SNI) answering
-- "match", "no" or "more", worked out once: a built-in without sni or alpn is
-- netproxy.probes' own function.
local function probe_check(p)
  if type(p.match) ~= "function" and not (p.sni or p.alpn or p.ja4) and p.match ~= "tls" then return probes[p.match] end
  return function(buf, into) return run_probe(p, buf, into) end
end

-- The probes as one pick(bytes [, into]) function, kept with the config table: the index of
-- the first probe that matches, nil while one wants more bytes, false when none can; a tls
-- probe's SNI goes to into (the session's conn), or to a scratch table (the core's path,
-- where no conn is). The timing around it (first bytes, silence, probe_timeout, max_peek)
-- is the core's one loop (src/sniffer.c), for both paths below.
local function picker(conf)
  if conf._pick then return conf._pick end
  local checks, scratch = {}, {}
  for i, p in ipairs(conf.probes or {}) do checks[i] = probe_check(p) end
  local n = #checks
  conf._pick = function(buf, into)
    local more = false
    into = into or scratch
    for i = 1, n do
      local verdict = checks[i](buf, into)
      if verdict == "match" then return i end
      if verdict == "more" then more = true end
    end
    if more then return nil end
    return false
  end
  return conf._pick
end

-- What the C core needs to sniff by itself (netproxy.session.route): the probes as one
-- pure function of the bytes read so far, and the connector tables it picks among. A probe
-- with a server side of its own (`from`) talks to the client: then every connection runs
-- accept() below.
function _M.sniff(conf)
  local targets, notes, tls = {}, {}, false
  for i, p in ipairs(conf.probes or {}) do
    if p.from then return nil end
    targets[i] = p.to
    notes[i] = ("dual: probe %d (%s) matched"):format(i, tostring(p.match))
    tls = tls or p.match == "tls"
  end
  return {
    pick = picker(conf),
    targets = targets, notes = notes, reads_sni = tls,
    silent = conf.server_first, fallback = conf.client_first,
    timeout = conf.timeout, probe_timeout = conf.probe_timeout, max_peek = conf.max_peek,
  }
end

-- A branch with a server side of its own: it talks to the client and names the target,
-- which the probe's `to` reaches. Its connected/failed answer the client later.
local function serve(p, client, conn)
  local mod = connectors.get(p.from.type)
  local asked, err = mod.accept(p.from, client, conn)
  if not asked then return nil, err end
  conn._dual_branch = { mod = mod, conf = p.from }
  local target = {}
  for k, v in pairs(p.to) do target[k] = v end
  target.host, target.port = asked.host, asked.port
  return target
end

-- The session's path: the same loop (core.sniff), the bytes left in the client socket for
-- the branch or the relay.
function _M.accept(conf, client, conn)
  local pick = picker(conf)
  local how, value, held = core.sniff(client, function(buf) return pick(buf, conn) end, conf)
  if how == "picked" then
    local chosen = conf.probes[value]
    conn:log("info", "dual: probe %d (%s) matched after %d bytes", value, tostring(chosen.match), held)
    if chosen.match == "tls" and ja4_of(conn) then core.set_ja4(conn.ja4) end   -- for the log line
    if chosen.from then return serve(chosen, client, conn) end
    return chosen.to
  elseif how == "silent" then
    if conf.server_first then return conf.server_first end
    return nil, "client silent for " .. conf.timeout .. "s"
  elseif how == "closed" then
    return nil, "client " .. value
  elseif how == "error" then
    error(value, 0)
  end
  if conf.client_first then return conf.client_first end
  return nil, ("no probe matched the first %d bytes"):format(held)
end

-- The server is reached (or not): a branch's server side answers its client.
function _M.connected(conf, client, conn, server)
  local b = conn._dual_branch
  if b and b.mod.connected then return b.mod.connected(b.conf, client, conn, server) end
  return true
end

function _M.failed(conf, client, conn, err)
  local b = conn._dual_branch
  if b and b.mod.failed then b.mod.failed(b.conf, client, conn, err) end
end

return _M
