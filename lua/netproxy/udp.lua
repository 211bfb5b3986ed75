-- netproxy.udp: the Lua side of a UDP flow. The C core (src/udp.c) calls start() at the
-- first datagram of a flow whose proxy has an accept(), a hook, a datagram service or a pool
-- of servers; the conn it returns is what those see (its stash lasts as long as the flow).
-- With a pool, pick() chooses the flow's server once, and again only when that server
-- fails before its first reply (failed()).
local core = require "netproxy.core"
local Conn = require "netproxy.conn"
local addr = require "netproxy.addr"
local ipairs, setmetatable, tostring = ipairs, setmetatable, tostring
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
  for _, accept in ipairs({ proxy.server_accept or false, proxy.accept or false }) do
    if accept then
      local ok, why = accept(conn)
      if not ok then return nil, tostring(why or "by accept()") end
    end
  end
  return conn
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
