-- spec/support/udp.lua: a small UDP client socket over LuaJIT's FFI, for specs that keep one
-- client address:port (one flow) across events: send, then wait for a reply with a timeout.
local ffi = require "ffi"

-- each declaration alone: another support file may have declared some already
for _, decl in ipairs({
  "typedef unsigned int socklen_t;",
  "struct np_udp_sa { unsigned short family; unsigned short port; unsigned char rest[24]; };",
  "struct np_udp_pollfd { int fd; short events; short revents; };",
  "int socket(int domain, int type, int protocol);",
  "int bind(int fd, const void *addr, socklen_t len);",
  "int getsockname(int fd, void *addr, socklen_t *len);",
  "long sendto(int fd, const void *buf, unsigned long len, int flags, const void *addr, socklen_t alen);",
  "long recvfrom(int fd, void *buf, unsigned long len, int flags, void *addr, socklen_t *alen);",
  "int close(int fd);",
  "unsigned short htons(unsigned short v);",
  "unsigned short ntohs(unsigned short v);",
  "int inet_pton(int af, const char *src, void *dst);",
  "int poll(void *fds, unsigned long nfds, int timeout);",
}) do pcall(ffi.cdef, decl) end

local C = ffi.C
local AF_INET, AF_INET6, SOCK_DGRAM, POLLIN = 2, 10, 2, 1

local _M = {}
local mt = { __index = _M }

local function sockaddr(host, port)
  local sa = ffi.new("struct np_udp_sa")
  local v6 = host:find(":") ~= nil
  sa.family = v6 and AF_INET6 or AF_INET
  sa.port = C.htons(port)
  -- sockaddr_in: the address at offset 4; sockaddr_in6: flowinfo at 4, the address at 8
  local at = ffi.cast("char *", sa) + (v6 and 8 or 4)
  assert(C.inet_pton(sa.family, host, at) == 1, "not an IP literal: " .. host)
  return sa, v6 and 28 or 16
end

-- A socket bound to an ephemeral port of host's family (127.0.0.1 or ::1).
function _M.new(host)
  host = host or "127.0.0.1"
  local local_host = host:find(":") and "::1" or "127.0.0.1"
  local sa, len = sockaddr(local_host, 0)
  local fd = C.socket(sa.family, SOCK_DGRAM, 0)
  assert(fd >= 0 and C.bind(fd, sa, len) == 0, "udp socket: errno " .. ffi.errno())
  local out, outlen = ffi.new("struct np_udp_sa"), ffi.new("socklen_t[1]", 28)
  C.getsockname(fd, out, outlen)
  return setmetatable({ fd = fd, host = host, port = C.ntohs(out.port), buf = ffi.new("char[65536]") }, mt)
end

function _M.send(self, port, data, host)
  local sa, len = sockaddr(host or self.host, port)
  local n = C.sendto(self.fd, data, #data, 0, sa, len)
  assert(n == #data, "sendto: errno " .. ffi.errno())
end

-- The next datagram within timeout seconds, or nil.
function _M.recv(self, timeout)
  local pfd = ffi.new("struct np_udp_pollfd", { fd = self.fd, events = POLLIN })
  if C.poll(pfd, 1, math.floor((timeout or 2) * 1000)) <= 0 then return nil end
  local n = C.recvfrom(self.fd, self.buf, 65536, 0, nil, nil)
  if n < 0 then return nil end
  return ffi.string(self.buf, n)
end

-- Sends data and returns the reply (or nil after timeout).
function _M.ask(self, port, data, timeout)
  self:send(port, data)
  return self:recv(timeout)
end

function _M.close(self)
  if self.fd >= 0 then C.close(self.fd) end
  self.fd = -1
end

return _M
