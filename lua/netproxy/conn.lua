-- netproxy.conn: the connection object handed to connectors and hooks.
local core = require "netproxy.core"
local select, string_format, tostring = select, string.format, tostring

local _M = {}

-- conn.reached, the address the client connected to, is looked up (getsockname) only when
-- something asks for it (the PROXY protocol does): most connections never do.
-- conn.peer, the uid, gid and pid of a unix client (SO_PEERCRED), likewise.
-- conn.stash, made when first used.
local lazy = {
  reached = function(self)
    local sock = rawget(self, "_client_sock")
    if sock then return sock:localaddr() end
    return core.reached(self._handle)          -- relayed: the relay has the socket
  end,
  peer = function(self)
    local sock = rawget(self, "_client_sock")
    local uid, gid, pid
    if sock then uid, gid, pid = sock:peercred() end
    return uid and { uid = uid, gid = gid, pid = pid }
  end,
  stash = function() return {} end,
}

local mt = { __index = function(self, key)
  local look = lazy[key]
  if look then
    local value = look(self)
    rawset(self, key, value or false)
    return value
  end
  return _M[key]
end }

function _M.new(proxy, id, client, handle)
  return setmetatable({
    id = id,
    proxy = proxy.name,
    client = client,            -- "addr:port" of the client
    server = nil,               -- "addr:port" of the server, once connected
    target = nil,               -- what the `to` connector was asked to reach ("host:port")
    -- stash: a table shared by everything that handles this connection (made when first used)
    connect_timeout = proxy.connect_timeout,
    _handle = handle,
  }, mt)
end

-- The loop's clock, for connectors that keep a deadline.
_M.now = core.now

-- conn:log(level, fmt, ...): a line about this connection, formatted only when shown.
function _M.log(self, level, fmt, ...)
  if not core.log_enabled(level) then return end
  local msg = select("#", ...) > 0 and string_format(fmt, ...) or tostring(fmt)
  core.log(level, self.proxy .. ": " .. msg)
end

-- conn:send("client" | "server", bytes): inject bytes toward one side, after the chunk
-- being handled. Returns true, or nil and why.
function _M.send(self, side, bytes)
  if side ~= "client" and side ~= "server" then
    error("send: side must be \"client\" or \"server\", not " .. tostring(side), 2)
  end
  return core.send(self._handle, side, bytes)
end

-- conn:starttls(["client" | "server"]): upgrade a side declared with start_cleartext = true
-- to TLS, right after the chunk being handled has been passed on. The side may be left out
-- when only one is so declared. Returns true, or nil and why.
function _M.starttls(self, side)
  local sides = self._starttls or {}   -- nil: no side is declared so
  if side == nil then
    if sides.client and sides.server then error("starttls: say which side, \"client\" or \"server\"", 2) end
    side = sides.client and "client" or "server"
  end
  local conf = sides[side]
  if not conf then error("starttls: the " .. tostring(side) .. " side is not declared with start_cleartext = true", 2) end
  return core.starttls(self._handle, side, conf._tls, conf._tls_names)
end

-- conn:_when_closed(fn): fn(info) once the connection has ended and been logged (info:
-- bytes_in, bytes_out, duration, reason, detail, server). Each fn's error is logged alone.
function _M._when_closed(self, fn)
  local list = rawget(self, "_closers")
  if not list then
    list = {}
    rawset(self, "_closers", list)
    local name, id = self.proxy, self.id
    core.when_closed(self._handle, function(info)
      for i = 1, #list do
        local ok, err = pcall(list[i], info)
        if not ok then core.log("err", ("%s: conn %d: on_close: %s"):format(name, id, tostring(err))) end
      end
    end)
  end
  list[#list + 1] = fn
end

-- conn:close(): end the connection (from a hook: once the hook returns).
function _M.close(self)
  core.close(self._handle)
end

return _M
