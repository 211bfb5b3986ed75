-- netproxy.ngx: the part of OpenResty's `ngx` API that client libraries need (lua-resty-redis,
-- lua-resty-memcached, ...), over netproxy's cosockets, timers and shared dicts.
--
--   local ngx = require "netproxy.ngx"     -- also installs the global `ngx` those libraries read
--   local redis = require "nginx.redis"    -- Debian's lua-resty-redis, unchanged
--
-- What is offered is listed in docs/ngx.md; any other ngx.X raises
-- "ngx.X is not available in netproxy". Cosocket calls wait, so they work where netproxy's do:
-- routes, accept, services, timers and checks (a coroutine), not in a data hook.
local core = require "netproxy.core"
local ffi = require "ffi"

local type, tostring, select, error, setmetatable = type, tostring, select, error, setmetatable
local concat, floor, byte, char = table.concat, math.floor, string.byte, string.char
local find, sub, gsub = string.find, string.sub, string.gsub

local ngx = {}

local function unavailable(what)
  error("ngx." .. what .. " is not available in netproxy", 3)
end

local function strict(t, prefix)
  return setmetatable(t, { __index = function(_, k) unavailable(prefix .. tostring(k)) end })
end

-- ---------------------------------------------------------------- constants, clock, log

ngx.null = core.null                    -- a NULL light userdata, as OpenResty's
ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5
ngx.STDERR, ngx.EMERG, ngx.ALERT, ngx.CRIT, ngx.ERR = 0, 1, 2, 3, 4
ngx.WARN, ngx.NOTICE, ngx.INFO, ngx.DEBUG = 5, 6, 7, 8
ngx.config = { subsystem = "stream", ngx_lua_version = 0, nginx_version = 0, debug = false,
               prefix = function() return "" end }

ngx.now = core.now
function ngx.time() return floor(core.now()) end
function ngx.update_time() end
function ngx.sleep(seconds) return core.sleep(seconds or 0) end
function ngx.get_phase() return "content" end

-- nginx's levels onto netproxy's five (err, warning, notice, info, debug)
local LEVELS = { [0] = "err", "err", "err", "err", "err", "warning", "notice", "info", "debug" }

function ngx.log(level, ...)
  local name = LEVELS[level]
  if not name then error("ngx.log: bad log level " .. tostring(level), 2) end
  if not core.log_enabled(name) then return end
  local n = select("#", ...)
  local parts = { ... }
  for i = 1, n do parts[i] = tostring(parts[i]) end
  core.log(name, concat(parts, "", 1, n))
end

-- ---------------------------------------------------------------- workers, timers, dicts

ngx.worker = strict({
  id = function() return (core.worker()) end,
  count = function() return select(2, core.worker()) end,
  pid = function() return ffi.C.getpid() end,
  exiting = function() return false end,
}, "worker.")

-- fn(premature, ...) as OpenResty calls it; premature is always false (a stopping worker
-- cancels its timers instead of running them early).
local function timer(make, delay, fn, ...)
  if type(fn) ~= "function" then error("ngx.timer: a function expected", 3) end
  local n, args = select("#", ...), { ... }
  local ok, t = pcall(make, delay, function() fn(false, unpack(args, 1, n)) end)
  if not ok then return nil, t end
  return t
end

ngx.timer = strict({
  at = function(delay, fn, ...) return timer(core.after, delay > 0 and delay or 0.001, fn, ...) end,
  every = function(interval, fn, ...) return timer(core.every, interval, fn, ...) end,
}, "timer.")

-- ngx.shared.NAME: a server{ shared = { NAME = size } } dict with OpenResty's method names.
local Dict = {}
Dict.__index = Dict

function Dict:get(key) return self.d:get(key) end
function Dict:set(key, value, exptime)
  local ok, err = self.d:set(key, value, exptime)
  return ok, err, false
end
Dict.safe_set = Dict.set
-- add and replace are a get and a set: not atomic across workers (incr is).
function Dict:add(key, value, exptime)
  if self.d:get(key) ~= nil then return false, "exists", false end
  return self:set(key, value, exptime)
end
function Dict:replace(key, value, exptime)
  if self.d:get(key) == nil then return false, "not found", false end
  return self:set(key, value, exptime)
end
function Dict:incr(key, value, init, init_ttl)
  local v, err = self.d:incr(key, value, init, init_ttl)
  return v, err, false
end
function Dict:delete(key) self.d:delete(key) end
function Dict:capacity() return self.d:capacity() end

ngx.shared = setmetatable({}, { __index = function(t, name)
  local d = core.shared(name)
  if not d then return nil end
  local dict = setmetatable({ d = d }, Dict)
  t[name] = dict
  return dict
end })

-- ---------------------------------------------------------------- digests, base64, URIs

ffi.cdef [[
int getpid(void);
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_md5(void);
const EVP_MD *EVP_sha1(void);
int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, void *impl);
]]

local md_buf, md_len = ffi.new("unsigned char[64]"), ffi.new("unsigned int[1]")

local function digest(md, s)
  ffi.C.EVP_Digest(s, #s, md_buf, md_len, md, nil)
  return ffi.string(md_buf, md_len[0])
end

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(byte(c)) end)) end

function ngx.md5_bin(s) return digest(ffi.C.EVP_md5(), tostring(s)) end
function ngx.md5(s) return hex(ngx.md5_bin(s)) end
function ngx.sha1_bin(s) return digest(ffi.C.EVP_sha1(), tostring(s)) end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_VALUE = {}
for i = 1, 64 do B64_VALUE[B64:sub(i, i)] = i - 1 end

function ngx.encode_base64(s, no_padding)
  s = tostring(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = { floor(n / 262144) % 64, floor(n / 4096) % 64, floor(n / 64) % 64, n % 64 }
    local keep = c and 4 or b and 3 or 2
    for j = 1, 4 do
      out[#out + 1] = j <= keep and B64:sub(q[j] + 1, q[j] + 1) or (no_padding and "" or "=")
    end
  end
  return concat(out)
end

function ngx.decode_base64(s)
  s = s:gsub("=+$", "")
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = B64_VALUE[s:sub(i, i)]
    if not v then return nil end
    bits, nbits = bits * 64 + v, nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      local b = floor(bits / 2 ^ nbits)
      out[#out + 1] = char(b)
      bits = bits - b * 2 ^ nbits
    end
  end
  return concat(out)
end

function ngx.escape_uri(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(byte(c)) end))
end

function ngx.unescape_uri(s)
  return (tostring(s):gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- ---------------------------------------------------------------- ngx.socket.tcp

-- An object's fields are never nil (a closed socket's sock is false): a missing name is a
-- method netproxy does not offer, and its __index says so. What was read and not yet
-- received is buf from pos on: a receive takes one sub of it and moves pos, so a reply's
-- pieces ("$32\r\n", the value, "\r\n") cost one string each, the rest never copied again.
local DEFAULT_TIMEOUT = 60               -- seconds: lua_socket_{connect,send,read}_timeout
local READ_SIZE = 16384

local Tcp = {}
Tcp.__index = function(_, k)
  local m = Tcp[k]
  if m == nil then unavailable("socket.tcp:" .. tostring(k)) end
  return m
end

local function ms(t)
  if t == nil or t == 0 then return DEFAULT_TIMEOUT end
  return t / 1000
end

function Tcp:settimeout(t)
  local s = ms(t)
  self.connect_timeout, self.send_timeout, self.read_timeout = s, s, s
end

function Tcp:settimeouts(c, s, r)
  self.connect_timeout, self.send_timeout, self.read_timeout = ms(c), ms(s), ms(r)
end

function Tcp:setoption() return true end

-- connect(host, port [, { pool = name }]) or connect("unix:/path" [, opts]) -> 1 | nil, err
-- A healthy idle connection of the pool (default "host:port") is taken first.
function Tcp:connect(host, port, opts)
  if self.sock then self.sock:close() self.sock = false end
  self.buf, self.pos = "", 1
  local sock, err
  if type(host) == "string" and host:sub(1, 5) == "unix:" then
    sock, err = core.connect_unix(host:sub(6), { timeout = self.connect_timeout })
  else
    if type(port) == "table" then opts = port end
    port = tonumber(port)
    if not port then return nil, "bad port" end
    local pool = type(opts) == "table" and opts.pool or (host .. ":" .. port)
    sock, err = core.connect(host, port, { timeout = self.connect_timeout, pool = pool })
  end
  if not sock then return nil, err end
  self.sock = sock
  return 1
end

function Tcp:sslhandshake(reused_session, server_name, ssl_verify)
  local sock = self.sock
  if not sock then return nil, "closed" end
  if sock:secure() then return true end     -- a pooled connection keeps its TLS session
  local ctx = core.tls_context { verify = ssl_verify and true or false }
  local ok, err = sock:tls(ctx, { sni = server_name, verify_name = server_name,
                                  timeout = self.connect_timeout })
  if not ok then return nil, "handshake failed: " .. tostring(err) end
  return true
end

-- A table of strings, numbers and tables of them (OpenResty's send), as one flat array.
local function flatten(t, out)
  for i = 1, #t do
    local v = t[i]
    if type(v) == "table" then flatten(v, out)
    elseif type(v) == "string" or type(v) == "number" then out[#out + 1] = v
    else error("send: bad data: " .. type(v) .. " in the table", 4) end
  end
  return out
end

-- Whether t holds strings and numbers only (lua-resty-redis' requests): sock:write takes
-- it as it is, its pieces written with one writev, never joined into one string.
local function flat(t)
  for i = 1, #t do
    local tv = type(t[i])
    if tv ~= "string" and tv ~= "number" then return false end
  end
  return true
end

function Tcp:send(data)
  local sock = self.sock
  if not sock then return nil, "closed" end
  if type(data) == "table" then
    if not flat(data) then data = flatten(data, {}) end
  elseif type(data) ~= "string" then data = tostring(data) end
  local n, err = sock:write(data, self.send_timeout)
  if not n then return nil, err end
  return n
end

-- Bytes read and not yet received.
function Tcp:pending()
  return #self.buf - self.pos + 1
end

-- Reads more behind what is pending: true, or nil, err (the pending data stays).
function Tcp:fill()
  local more, err = self.sock:read(READ_SIZE, self.read_timeout)
  if not more then return nil, err end
  if self.pos > #self.buf then self.buf = more
  else self.buf = sub(self.buf, self.pos) .. more end
  self.pos = 1
  return true
end

-- What was pending when a read failed: the error, and the partial data (OpenResty's third value).
function Tcp:fail(err)
  local partial = sub(self.buf, self.pos)
  self.buf, self.pos = "", 1
  if err ~= "timeout" then self:close() end
  return nil, err, partial
end

-- The next n pending bytes (at most what there is).
function Tcp:take(n)
  local pos = self.pos
  local data = sub(self.buf, pos, pos + n - 1)
  if pos + n > #self.buf then self.buf, self.pos = "", 1
  else self.pos = pos + n end
  return data
end

-- Where in buf the next LF is, reading more until one comes: its index, or nil, err.
function Tcp:next_lf()
  local at = find(self.buf, "\n", self.pos, true)
  while not at do
    local from = self:pending()                -- (fill moves what is pending to the front)
    local got, err = self:fill()
    if not got then return nil, err end
    at = find(self.buf, "\n", from + 1, true)
  end
  return at
end

-- "*l": the next line without its LF; all CRs are dropped (OpenResty's pattern).
function Tcp:line()
  local at, err = self:next_lf()
  if not at then return nil, err end
  local pos, stop = self.pos, at - 1
  self.pos = at + 1
  if stop >= pos and byte(self.buf, stop) == 13 then stop = stop - 1 end
  local line = sub(self.buf, pos, stop)
  if find(line, "\r", 1, true) then line = gsub(line, "\r", "") end
  return line
end

function Tcp:receive(pattern, prefix)
  if not self.sock then return nil, "closed" end
  pattern = pattern or "*l"
  local got, err
  if type(pattern) == "number" or tonumber(pattern) then
    local n = tonumber(pattern)
    if n < 0 then error("receive: bad size " .. n, 2) end
    while self:pending() < n do
      got, err = self:fill()
      if not got then return self:fail(err) end
    end
    got = self:take(n)
  elseif pattern == "*l" then
    got, err = self:line()
    if not got then return self:fail(err) end
  elseif pattern == "*L" then
    local at
    at, err = self:next_lf()
    if not at then return self:fail(err) end
    got = self:take(at - self.pos + 1)
  elseif pattern == "*a" then
    repeat got, err = self:fill() until not got
    if err ~= "closed" then return self:fail(err) end
    got = self:take(self:pending())
    self:close()
  else
    error("receive: bad pattern " .. tostring(pattern) .. " (want *l, *a or a size)", 2)
  end
  return prefix and prefix .. got or got
end

function Tcp:receiveany(max)
  if not self.sock then return nil, "closed" end
  if self:pending() > 0 then return self:take(max) end
  local data, err = self.sock:read(max, self.read_timeout)
  if not data then return self:fail(err) end
  return data
end

-- receiveuntil(pattern [, { inclusive = true }]) -> iterator([size]): the data up to the
-- pattern (consumed); with size, at most size bytes per call until the pattern, then nil.
function Tcp:receiveuntil(pattern, opts)
  if type(pattern) ~= "string" or pattern == "" then error("receiveuntil: a non-empty pattern", 2) end
  local inclusive = type(opts) == "table" and opts.inclusive
  local done = false
  return function(size)
    if done then done = false return nil end
    if not self.sock then return nil, "closed" end
    while true do
      local at = find(self.buf, pattern, self.pos, true)
      if at then
        at = at - self.pos + 1                  -- (counted from the first pending byte)
        if size and at - 1 > size then return self:take(size) end
        local data = self:take(at - 1)
        local sep = self:take(#pattern)
        if size then done = true end
        return inclusive and data .. sep or data
      end
      local safe = self:pending() - #pattern + 1   -- bytes that cannot begin the pattern
      if size and safe >= size then return self:take(size) end
      local got, err = self:fill()
      if not got then return self:fail(err) end
    end
  end
end

function Tcp:close()
  if not self.sock then return nil, "closed" end
  self.sock:close()
  self.sock = false
  return 1
end

-- setkeepalive([idle_ms [, size]]): into this worker's pool for the next connect to the same
-- pool; 0 idle_ms: no limit (OpenResty's meaning).
function Tcp:setkeepalive(idle_ms, size)
  local sock = self.sock
  if not sock then return nil, "closed" end
  if self:pending() > 0 then return nil, "unread data in buffer" end
  self.sock = false
  local idle = idle_ms == nil and DEFAULT_TIMEOUT or idle_ms / 1000
  return sock:setkeepalive(idle, size)
end

function Tcp:getreusedtimes()
  if not self.sock then return nil, "closed" end
  return self.sock:reusedtimes()
end

local function tcp()
  return setmetatable({ sock = false, buf = "", pos = 1, connect_timeout = DEFAULT_TIMEOUT, send_timeout = DEFAULT_TIMEOUT,
                        read_timeout = DEFAULT_TIMEOUT }, Tcp)
end

-- ---------------------------------------------------------------- ngx.socket.udp

local Udp = {}
Udp.__index = function(_, k)
  local m = Udp[k]
  if m == nil then unavailable("socket.udp:" .. tostring(k)) end
  return m
end

function Udp:settimeout(t) self.timeout = ms(t) end

function Udp:setpeername(host, port)
  if self.sock then self.sock:close() self.sock = false end
  local sock, err = core.connect_udp(host, tonumber(port) or 0, { timeout = self.timeout })
  if not sock then return nil, err end
  self.sock = sock
  return 1
end

function Udp:send(data)
  if not self.sock then return nil, "closed" end
  if type(data) == "table" then data = concat(flatten(data, {})) end
  local n, err = self.sock:write(tostring(data), self.timeout)
  if not n then return nil, err end
  return 1
end

function Udp:receive(size)
  if not self.sock then return nil, "closed" end
  return self.sock:read(size or 8192, self.timeout)
end

function Udp:close()
  if not self.sock then return nil, "closed" end
  self.sock:close()
  self.sock = false
  return 1
end

ngx.socket = strict({
  tcp = tcp,
  udp = function() return setmetatable({ sock = false, timeout = DEFAULT_TIMEOUT }, Udp) end,
}, "socket.")

-- ---------------------------------------------------------------- the rest: a clear refusal

strict(ngx, "")
if rawget(_G, "ngx") == nil then rawset(_G, "ngx", ngx) end
return ngx
