-- netproxy.udp: the Lua side of a UDP flow. The C core (src/udp.c) calls start() at the
-- first datagram of a flow whose proxy has an accept(), a hook, a datagram service or a pool
-- of servers; the conn it returns is what those see (its stash lasts as long as the flow).
-- With a pool, pick() chooses the flow's server once, and again only when that server
-- fails before its first reply (failed()).
local core = require "netproxy.core"
local Conn = require "netproxy.conn"
local addr = require "netproxy.addr"
local probes = require "netproxy.probes"
local ipairs, pcall, setmetatable, tostring, type = ipairs, pcall, setmetatable, tostring, type
local concat = table.concat

local _M = {}

local Flow = setmetatable({}, { __index = Conn })
local mt = { __index = Flow }

-- conn:send("client" | "server", datagram): one datagram toward that side, now.
function Flow.send(self, side, datagram)
  if side ~= "client" and side ~= "server" then
    error("send: side must be \"client\" or \"server\", not " .. tostring(side), 2)
  end
  return core.flow_send(self._handle, side, datagram)
end

-- conn:close(): the flow ends (the client's next datagram starts a new one).
function Flow.close(self)
  core.flow_close(self._handle)
end

function Flow.starttls()
  error("starttls: a UDP flow has no TLS", 2)
end

-- start(proxy, id, client, handle) -> conn | nil, why (refused by an accept hook)
function _M.start(proxy, id, client, handle)
  local conn = setmetatable({
    id = id,
    proxy = proxy.name,
    client = client,
    target = proxy.to.host and addr.join(proxy.to.host, proxy.to.port) or "service",
    stash = {},
    udp = true,
    _handle = handle,
  }, mt)
  local pool = proxy.to._pool
  if pool then   -- the target is the server pick() chooses
    conn.target, conn._pool, conn._attempts = nil, pool, 0
  end
  if proxy.from and proxy.from.probes then conn._from, conn.target = proxy.from, nil end   -- route() picks
  for _, accept in ipairs({ proxy.server_accept or false, proxy.accept or false }) do
    if accept then
      local ok, why = accept(conn)
      if not ok then return nil, tostring(why or "by accept()") end
    end
  end
  return conn
end

-- ---------------------------------------------------------------- quic probes

-- sni and alpn are patterns with netproxy.addr's meaning of `*` (within one label), as dual's
local function alpn_matches(wanted, offered)
  for _, proto in ipairs(offered) do
    if addr.host_matches(wanted, proto) then return true end
  end
  return false
end

local function matches(p, info, conn)
  if type(p.match) == "function" then return p.match(info, conn) and true or false end
  if p.sni and not addr.host_matches(p.sni, info.sni) then return false end
  if p.alpn and not alpn_matches(p.alpn, info.alpn) then return false end
  return true
end

-- The `to` a flow goes to: host, port, or true for a pool (conn._pool set), or nil and why.
local function target(conn, to, why)
  if not to then return nil, why end
  if to._pool then
    conn._pool, conn._attempts, conn.target = to._pool, 0, nil
    return true
  end
  conn.target = addr.join(to.host, to.port)
  return to.host, to.port
end

-- route(conn, hello | nil, why) -> host, port | true | nil, why; and sni, alpn for the log line:
-- the server of a flow whose `from` has quic probes, picked once from its ClientHello (read
-- from its QUIC Initials by the core: src/udp_probe.c) by the first probe that matches, else
-- the fallback. hello nil: not QUIC (why), which goes to the fallback too.
function _M.route(conn, hello, why)
  local from = conn._from
  local ok, info = true, nil
  if hello then ok, info = pcall(probes.client_hello, hello) end
  if not (ok and info) then
    local a, b = target(conn, from.fallback, "not QUIC (" .. tostring(why or "a ClientHello that does not parse") .. ") and no fallback")
    return a, b
  end
  conn.sni, conn.alpn = info.sni, info.alpn
  local ja4 = core.ja4(hello)             -- JA4's transport letter: q for QUIC (t over TCP)
  conn.ja4 = ja4 and "q" .. ja4:sub(2) or nil
  local alpn = #info.alpn > 0 and concat(info.alpn, ",") or nil
  for i, p in ipairs(from.probes) do
    if matches(p, info, conn) then
      conn.probe = i
      local a, b = target(conn, p.to)
      return a, b, info.sni, alpn
    end
  end
  local a, b = target(conn, from.fallback, "no probe matched and no fallback")
  return a, b, info.sni, alpn
end

-- ---------------------------------------------------------------- a pool per flow

-- pick(conn) -> name, host, port, row, failed | nil, why, failed: the flow's server (row: its
-- row in the shared table, or nil), and the servers that failed before it ("a,b" or nil).
-- At most 1 + retries servers, never one twice.
function _M.pick(conn)
  local p = conn._pool
  local failed = conn._failed and concat(conn._failed, ",")
  if conn._attempts > p.retries then return nil, conn._last, failed end
  local s, why = p:pick(conn, conn._tried)
  if not s then return nil, conn._last or why, failed end
  conn._server, conn._attempts, conn.target = s, conn._attempts + 1, s.name
  return s.name, s.fields.host, s.fields.port, s.row, failed
end

-- failed(conn, why): the flow's server failed (refused, or its name did not resolve) before
-- replying: counted against it. Returns the warning to log when that marked it down.
function _M.failed(conn, why)
  local p, s = conn._pool, conn._server
  conn._tried, conn._failed = conn._tried or {}, conn._failed or {}
  conn._tried[s] = true
  conn._failed[#conn._failed + 1] = s.name
  conn._last = s.name .. ": " .. tostring(why)
  if s.row and core.pool_failed(s.row, p.max_fails, p.fail_timeout) then
    return ("server %s down for %gs after %d failure%s (%s)"):format(s.name, p.fail_timeout, p.max_fails,
                                                                   p.max_fails > 1 and "s" or "", tostring(why))
  end
end

return _M
