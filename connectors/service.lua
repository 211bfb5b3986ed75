-- service: netproxy answers the client itself (Net::Server's process_request and
-- Net::Server::Multiplex's mux_* callbacks). One of two forms:
--
--   to = { type = "service", serve = function(client, conn) ... end }
--     straight-line: client is a cosocket (read(n), read("*l"), read("*a"), lines(), write,
--     shutdown, close, settimeout); returning ends the connection (end=eof when the
--     client had ended its side, else end=closed).
--
--   to = { type = "service", input_mode = "line" | "chunk", timeout = 30,
--          on_connect = function(conn) end, on_input = function(conn, data) end,
--          on_eof = function(conn) end, on_close = function(conn, info) end,
--          on_timeout = function(conn) end }
--     callbacks, each bounded like a data hook (hook_budget) and never waiting:
--     conn:write(data) queues (past max_output bytes unsent that client is closed),
--     conn:close(), conn:set_timeout(s), conn.service:clients().
--
-- The connection is counted and logged like any other; idle_timeout applies to it,
-- negotiation_timeout does not (core.serving ends that phase).
local core = require "netproxy.core"
local check = require "netproxy.check"
local lines = require "netproxy.lines"

local pairs, setmetatable, type, tostring, tonumber = pairs, setmetatable, type, tostring, tonumber

local MAX_LINE = lines.MAX_LINE
local HIGH_WATER = 64 * 1024      -- bytes written to a client and not yet sent: read no more input

local _M = {
  positions = { to = true },
  params = {
    serve = check.func,
    input_mode = check.one_of("line", "chunk"),
    on_connect = check.func, on_input = check.func, on_eof = check.func,
    on_close = check.func, on_timeout = check.func,
    timeout = check.seconds,
    max_output = check.bytes,
  },
}

local CALLBACKS = { "on_connect", "on_input", "on_eof", "on_close", "on_timeout" }

function _M.check(conf, position)
  local mux = false
  for _, k in ipairs(CALLBACKS) do mux = mux or conf[k] ~= nil end
  if conf.serve and mux then return "serve and on_* callbacks are two forms: use one" end
  if not conf.serve and not (conf.on_input or conf.on_connect) then
    return "want serve = function(client, conn) or on_input = function(conn, data)"
  end
  if conf.serve and (conf.input_mode or conf.timeout) then
    return "input_mode and timeout go with the on_* callbacks"
  end
  conf.input_mode = conf.input_mode or "chunk"
  conf.max_output = conf.max_output or 1024 * 1024
  -- the budget's count hook does not run inside compiled traces
  if jit then for _, k in ipairs(CALLBACKS) do if conf[k] then jit.off(conf[k], true) end end end
end

---------------------------------------------------------------- taking turns

-- A client that sends at full speed never makes its connection wait: its bytes are there
-- when a read asks (it returns at once) and the socket has room when a write asks. Without a
-- wait the connection's coroutine is never suspended, so one resume would span the whole
-- stream: charged against hook_budget as one call (a busy echo was cut after a few hundred
-- MB), and holding every other connection of the worker meanwhile. So each connection gives
-- the loop a turn once it has run a slice (a few ms) since it was resumed: its next resume
-- starts a new budget, and the other connections run in between. The budget thus bounds one
-- callback, or one stretch of a serve function between two calls on its client.

-- core.turn() gives the loop that turn: the core knows when the task was resumed and its
-- limits (the slice is 10 ms, or a quarter of hook_budget when that is less).

---------------------------------------------------------------- the straight-line form

local Client = {}
Client.__index = Client

-- The service owns the client socket: reads take whatever has arrived (up to 64 KiB a
-- system call) into a buffer of its own (netproxy.lines), and lines and counts are cut from
-- it. One more chunk into the buffer; nil, err (and the client's end remembered) when there
-- is none.
function Client:_fill()
  local data, err = self._sock:read(nil, self._timeout)
  if not data then
    if err == "closed" then self._eof = true end
    return nil, err
  end
  self._buf:push(data)
  return true
end

-- read(n): exactly n bytes; read("*l"): a line without its end of line; read("*a"):
-- everything until the client ends its side. nil, err, partial on failure.
function Client:read(what)
  local buf = self._buf
  core.turn()
  if what == nil or what == "*l" or what == "l" then
    while true do
      local line = buf:line(true)
      if line then return line end
      if buf:size() > MAX_LINE then return nil, "line too long", buf:take_all() end
      local ok, err = self:_fill()
      if not ok then
        if err == "closed" and buf:size() > 0 then return buf:take_all() end  -- a last line without its newline
        return nil, err, buf:take_all()
      end
    end
  elseif what == "*a" or what == "a" then
    while true do
      local ok, err = self:_fill()
      if not ok then
        if err == "closed" then return buf:take_all() end
        return nil, err, buf:take_all()
      end
    end
  elseif type(what) == "number" and what > 0 then
    while buf:size() < what do
      local ok, err = self:_fill()
      if not ok then return nil, err, buf:take_all() end
    end
    return buf:take(what)
  end
  error("read: want a byte count, \"*l\" or \"*a\", not " .. tostring(what), 2)
end

-- for line in client:lines() do ... end: until the client ends its side (or an error).
function Client:lines()
  return function() return (self:read("*l")) end
end

-- Bytes as they come: up to max, at least one.
function Client:receive_some(max)
  core.turn()
  if self._buf:size() == 0 then
    local ok, err = self:_fill()
    if not ok then return nil, err end
  end
  return self._buf:take(max or self._buf:size())
end

function Client:write(data)
  core.turn()
  return self._sock:write(data)
end
function Client:shutdown() return self._sock:shutdown() end
function Client:close() return self._sock:close() end
function Client:peer() return self._sock:peer() end
function Client:settimeout(s)
  self._timeout = (s and s > 0) and s or 0
  self._sock:settimeout(self._timeout)
end

-- The client object serve(client, conn) gets, over a cosocket.
function _M.client(sock)
  return setmetatable({ _sock = sock, _buf = lines.buffer(), _timeout = 0 }, Client)
end

local function serve_straight(conf, sock, conn, proxy)
  local client = _M.client(sock)
  sock:settimeout(0)                  -- no bound but idle_timeout, unless the service sets one
  conf.serve(client, conn)
  if client._eof then return "eof" end
  return "closed", "by the service"
end

---------------------------------------------------------------- the callback form

local services = setmetatable({}, { __mode = "k" })   -- conf -> its service (this worker)

local Service = {}
Service.__index = Service

-- for c in conn.service:clients() do ... end: its open connections in this worker (a
-- snapshot: closing one while iterating is safe).
function Service:clients()
  local list, n = {}, 0
  for c in pairs(self._clients) do n = n + 1; list[n] = c end
  local i = 0
  return function() i = i + 1; return list[i] end
end

function Service:count()
  local n = 0
  for _ in pairs(self._clients) do n = n + 1 end
  return n
end

local function service_of(conf)
  local s = services[conf]
  if not s then
    s = setmetatable({ _clients = {} }, Service)
    services[conf] = s
  end
  return s
end

local Mux = {}
local MuxMT = { __index = function(self, k) return Mux[k] or self._conn[k] end }

-- conn:write(data) -> true | nil, err. Never waits; what the client has not taken yet is
-- kept up to max_output bytes; past that the client is closed (a slow reader).
function Mux:write(data)
  if self._gone then return nil, "closed" end
  local pending, err = self._sock:send(tostring(data))
  if not pending then return nil, err end
  if pending > self._conf.max_output then
    local why = ("write buffer over %d bytes (a slow reader)"):format(self._conf.max_output)
    local c = self._conn
    core.log("notice", ("#%d %s: %s: %s: closing"):format(c.id, c.proxy, c.client, why))
    self._gone = true
    self.service._clients[self] = nil
    core.close(self._conn._handle, "closed", why)
    return nil, "closed"
  end
  return true
end

-- conn:close(): from its own callback, once what was written is flushed; from another
-- connection's, at once (unsent output is dropped).
function Mux:close()
  if self._gone then return end
  if self._in_callback then
    self._closing = true
    return
  end
  self._gone = true
  self.service._clients[self] = nil
  core.close(self._conn._handle, "closed", "by the service")
end

-- conn:set_timeout(s): on_timeout after s seconds without input; 0 or nil: never.
function Mux:set_timeout(s)
  self.timeout = (s and s > 0) and s or nil
end

local function fire(mc, name, ...)
  local fn = mc._conf[name]
  if not fn or mc._gone then return true end
  mc._in_callback = true
  local ok, err = core.call(fn, mc, ...)
  mc._in_callback = false
  if not ok then return nil, name .. ": " .. tostring(err) end
  return true
end

-- Input in line mode: each whole line without its end of line, one call each; a partial
-- one stays in the buffer. nil, err on a callback's error; nil, nil, why past MAX_LINE.
local function feed_lines(mc, buf, data)
  buf:push(data)
  while not mc._closing and not mc._gone do
    local line = buf:line(true)
    if not line then break end
    core.turn()
    local ok, err = fire(mc, "on_input", line)
    if not ok then return nil, err end
  end
  if buf:size() > MAX_LINE then return nil, nil, "line longer than " .. MAX_LINE .. " bytes" end
  return true
end

local function finish(mc, how, detail)
  mc._sock:flush()
  return how, detail
end

local function serve_mux(conf, sock, conn, proxy)
  local svc = service_of(conf)
  local mc = setmetatable({ _conn = conn, _sock = sock, _conf = conf, service = svc }, MuxMT)
  mc:set_timeout(conf.timeout)
  svc._clients[mc] = true
  conn:_when_closed(function(info)
    svc._clients[mc] = nil
    mc._gone = true
    if conf.on_close then
      local ok, err = core.call(conf.on_close, mc, info)
      if not ok then conn:log("err", "on_close: %s", err) end
    end
  end)
  local ok, err = fire(mc, "on_connect")
  if not ok then error(err, 0) end
  local buf = lines.buffer()
  while true do
    if mc._closing then return finish(mc, "closed", "by the service") end
    if mc._gone then return end
    -- a client that sends faster than it reads the answers is read no more until they have
    -- gone (as a write waits in the straight-line form), rather than cut at max_output
    if sock:pending() >= HIGH_WATER then
      local fok, ferr = sock:flush()
      if not fok then return "client error", ferr end
    end
    core.turn()
    local data, rerr = sock:read(nil, mc.timeout or 0)
    if data then
      if conf.input_mode == "line" then
        local long
        ok, err, long = feed_lines(mc, buf, data)
        if long then return "client error", long end
      else
        ok, err = fire(mc, "on_input", data)
      end
      if not ok then error(err, 0) end
    elseif rerr == "timeout" then
      if not conf.on_timeout then return finish(mc, "timeout", "no input for " .. mc.timeout .. "s") end
      ok, err = fire(mc, "on_timeout")
      if not ok then error(err, 0) end
    elseif rerr == "closed" then
      if buf:size() > 0 then fire(mc, "on_input", buf:take_all()) end   -- a last line without its newline
      ok, err = fire(mc, "on_eof")
      if not ok then error(err, 0) end
      if mc._gone then return end
      return finish(mc, "eof")
    else
      return "client error", rerr
    end
  end
end

-- The session hands the client over here once the from side has accepted it.
function _M.serve(conf, sock, conn, proxy)
  if conf.serve then return serve_straight(conf, sock, conn, proxy) end
  return serve_mux(conf, sock, conn, proxy)
end

return _M
