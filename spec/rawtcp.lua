-- spec/rawtcp.lua: a plain TCP client on real loopback sockets (LuaJIT FFI), for specs that
-- must send exact bytes (hostile requests, long PROXY headers) and time round trips from the
-- spec process itself. Blocking connect and send; receives wait with poll() and a timeout.
local ffi = require "ffi"
local bit = require "bit"

-- spec/helpers.lua declares some of these too: each declaration on its own, once.
for _, decl in ipairs({
  "int poll(void *fds, unsigned long nfds, int timeout);",
  "int socket(int domain, int type, int protocol);",
  "int connect(int fd, const void *addr, unsigned int len);",
  "long send(int fd, const void *buf, unsigned long len, int flags);",
  "long recv(int fd, void *buf, unsigned long len, int flags);",
  "int close(int fd);",
  "int shutdown(int fd, int how);",
  "int inet_pton(int af, const char *src, void *dst);",
  "struct np_rawtcp_pollfd { int fd; short events; short revents; };",
  "struct np_rawtcp_timespec { long tv_sec; long tv_nsec; };",
  'int np_rawtcp_clock_gettime(int clk, struct np_rawtcp_timespec *ts) __asm__("clock_gettime");',
  "char *strerror(int errnum);",
}) do pcall(ffi.cdef, decl) end

local C = ffi.C
local AF_INET, AF_INET6, SOCK_STREAM, POLLIN, MSG_NOSIGNAL = 2, 10, 1, 1, 0x4000
local CLOCK_MONOTONIC = 1

local _M = {}

-- Seconds on a monotonic clock, as a float.
function _M.now()
  local ts = ffi.new("struct np_rawtcp_timespec")
  C.np_rawtcp_clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local function sockaddr(host, port)
  local hi, lo = bit.rshift(port, 8), bit.band(port, 255)
  if host:find(":", 1, true) then
    local sa = ffi.new("uint8_t[28]")
    sa[0], sa[1] = AF_INET6 % 256, 0          -- sin6_family, little-endian
    sa[2], sa[3] = hi, lo
    assert(C.inet_pton(AF_INET6, host, sa + 8) == 1, "bad address " .. host)
    return AF_INET6, sa, 28
  end
  local sa = ffi.new("uint8_t[16]")
  sa[0], sa[1] = AF_INET, 0
  sa[2], sa[3] = hi, lo
  assert(C.inet_pton(AF_INET, host, sa + 4) == 1, "bad address " .. host)
  return AF_INET, sa, 16
end

local Conn = {}
Conn.__index = Conn

-- A connected socket to host:port, or nil and why.
function _M.connect(host, port)
  local family, sa, len = sockaddr(host, port)
  local fd = C.socket(family, SOCK_STREAM, 0)
  if fd < 0 then return nil, ffi.string(C.strerror(ffi.errno())) end
  if C.connect(fd, sa, len) ~= 0 then
    local err = ffi.string(C.strerror(ffi.errno()))
    C.close(fd)
    return nil, err
  end
  return setmetatable({ fd = fd }, Conn)
end

-- Sends all of data; true, or nil and why.
function Conn:send(data)
  local sent = 0
  while sent < #data do
    local n = C.send(self.fd, ffi.cast("const char *", data) + sent, #data - sent, MSG_NOSIGNAL)
    if n < 0 then return nil, ffi.string(C.strerror(ffi.errno())) end
    sent = sent + tonumber(n)
  end
  return true
end

-- What has arrived (waiting up to timeout seconds for something): the bytes, or nil and
-- "timeout" or "closed".
function Conn:recv(timeout)
  local pfd = ffi.new("struct np_rawtcp_pollfd", { fd = self.fd, events = POLLIN })
  if C.poll(pfd, 1, math.floor((timeout or 5) * 1000)) <= 0 then return nil, "timeout" end
  local buf = ffi.new("char[65536]")
  local n = C.recv(self.fd, buf, 65536, 0)
  if n <= 0 then return nil, "closed" end
  return ffi.string(buf, n)
end

-- Everything until the peer closes (or timeout seconds in all pass): the bytes, and "closed"
-- or "timeout".
function Conn:recv_all(timeout)
  local parts, deadline = {}, _M.now() + (timeout or 5)
  while true do
    local left = deadline - _M.now()
    if left <= 0 then return table.concat(parts), "timeout" end
    local chunk, err = self:recv(left)
    if not chunk then return table.concat(parts), err end
    parts[#parts + 1] = chunk
  end
end

-- Exactly n bytes (or what came before the peer closed or timeout seconds passed).
function Conn:recv_n(n, timeout)
  local parts, have, deadline = {}, 0, _M.now() + (timeout or 5)
  while have < n do
    local left = deadline - _M.now()
    if left <= 0 then break end
    local chunk = self:recv(left)
    if not chunk then break end
    parts[#parts + 1] = chunk
    have = have + #chunk
  end
  return table.concat(parts)
end

function Conn:shutdown_write()
  C.shutdown(self.fd, 1)
end

function Conn:close()
  if self.fd >= 0 then C.close(self.fd) end
  self.fd = -1
end

return _M
