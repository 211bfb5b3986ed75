-- spec/support/tcp.lua: a small blocking TCP client over LuaJIT's FFI, for specs that hold
-- a connection open while something else happens (a reload, a stop) and use it afterwards.
local ffi = require "ffi"

ffi.cdef [[
  typedef unsigned int socklen_t;
  struct np_sockaddr_in { unsigned short family; unsigned short port; unsigned int addr; char zero[8]; };
  struct np_timeval { long sec; long usec; };
  int socket(int domain, int type, int protocol);
  int connect(int fd, const void *addr, socklen_t len);
  int setsockopt(int fd, int level, int name, const void *val, socklen_t len);
  long send(int fd, const void *buf, unsigned long len, int flags);
  long recv(int fd, void *buf, unsigned long len, int flags);
  int shutdown(int fd, int how);
  int close(int fd);
  unsigned short htons(unsigned short v);
  int inet_pton(int af, const char *src, void *dst);
]]

local C = ffi.C
local AF_INET, SOCK_STREAM, SOL_SOCKET, SO_RCVTIMEO = 2, 1, 1, 20

local _M = {}
local mt = { __index = _M }

-- Connects to 127.0.0.1:port (or host, an IPv4 literal); nil, why when it cannot.
function _M.connect(port, host)
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  local sa = ffi.new("struct np_sockaddr_in")
  sa.family = AF_INET
  sa.port = C.htons(port)
  C.inet_pton(AF_INET, host or "127.0.0.1", ffi.cast("void *", ffi.cast("char *", sa) + 4))
  if C.connect(fd, sa, ffi.sizeof(sa)) ~= 0 then
    C.close(fd)
    return nil, "connect failed: " .. ffi.errno()
  end
  return setmetatable({ fd = fd }, mt)
end

function _M.send(self, data)
  local sent = 0
  while sent < #data do
    local n = C.send(self.fd, ffi.cast("const char *", data) + sent, #data - sent, 0x4000)  -- MSG_NOSIGNAL
    if n <= 0 then return nil, "send failed: " .. ffi.errno() end
    sent = sent + tonumber(n)
  end
  return true
end

-- Reads until want bytes have arrived, or EOF, or timeout seconds; returns what arrived and
-- "eof" or "timeout" when that is less.
function _M.receive(self, want, timeout)
  local tv = ffi.new("struct np_timeval", { math.floor(timeout or 5), ((timeout or 5) % 1) * 1e6 })
  C.setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, tv, ffi.sizeof(tv))
  local buf, parts, got = ffi.new("char[65536]"), {}, 0
  while got < want do
    local n = tonumber(C.recv(self.fd, buf, math.min(65536, want - got), 0))
    if n == 0 then return table.concat(parts), "eof" end
    if n < 0 then return table.concat(parts), "timeout" end
    parts[#parts + 1] = ffi.string(buf, n)
    got = got + n
  end
  return table.concat(parts)
end

-- Sends line and reads as many bytes back as expect has: an echo round trip.
function _M.exchange(self, line, expect, timeout)
  local ok, err = self:send(line)
  if not ok then return nil, err end
  return self:receive(#(expect or line), timeout)
end

-- No more writes: the peer reads EOF; reading goes on.
function _M.shutdown(self)
  return C.shutdown(self.fd, 1) == 0
end

function _M.close(self)
  if self.fd then C.close(self.fd) end
  self.fd = nil
end

return _M
