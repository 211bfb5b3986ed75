-- netproxy.udp: the Lua side of a UDP flow. The C core (src/udp.c) calls start() at the
-- first datagram of a flow whose proxy has an accept(), a hook or a datagram service; the
-- conn it returns is what those see (its stash lasts as long as the flow).
local core = require "netproxy.core"
local Conn = require "netproxy.conn"
local addr = require "netproxy.addr"
local ipairs, setmetatable, tostring = ipairs, setmetatable, tostring

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
  for _, accept in ipairs({ proxy.server_accept or false, proxy.accept or false }) do
    if accept then
      local ok, why = accept(conn)
      if not ok then return nil, tostring(why or "by accept()") end
    end
  end
  return conn
end

return _M
