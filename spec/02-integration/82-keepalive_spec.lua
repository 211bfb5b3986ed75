-- tcp_keepalive = { idle, interval, count } on `from` (each accepted socket) and on `to` (the
-- socket dialled: the routed proxy's core connect, and core.connect of a session), read back
-- from netproxy's own sockets: ss names each socket's pid and fd, pidfd_getfd copies it into
-- the spec's process, and getsockopt says what is set (issue 28).
local h = require "spec.helpers"
local ffi = require "ffi"

pcall(ffi.cdef, "long syscall(long number, ...);")
local SYS_pidfd_open, SYS_pidfd_getfd = 434, 438
local SOL_SOCKET, SO_KEEPALIVE, IPPROTO_TCP, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 1, 9, 6, 4, 5, 6

-- The fd of netproxy's socket (pid) whose local or peer port is port, as ss says.
local function socket_of(pid, local_port, peer_port)
  for line in h.lines("ss -tnpH state established") do
    local lport, pport = line:match("^%d+%s+%d+%s+%S-:(%d+)%s+%S-:(%d+)")
    local fd = line:match("pid=" .. pid .. ",fd=(%d+)")
    if fd and (tonumber(lport) == local_port or tonumber(pport) == peer_port) then return tonumber(fd) end
  end
end

-- What is set on that socket: keepalive on (0/1), idle, interval, count.
local function keepalive_of(pid, fd)
  local pidfd = ffi.C.syscall(SYS_pidfd_open, ffi.cast("int", pid), ffi.cast("unsigned int", 0))
  assert(pidfd >= 0, "pidfd_open")
  local copy = ffi.C.syscall(SYS_pidfd_getfd, ffi.cast("int", pidfd), ffi.cast("int", fd), ffi.cast("unsigned int", 0))
  ffi.C.close(pidfd)
  assert(copy >= 0, "pidfd_getfd")
  local out = {}
  for i, opt in ipairs({ { SOL_SOCKET, SO_KEEPALIVE }, { IPPROTO_TCP, TCP_KEEPIDLE }, { IPPROTO_TCP, TCP_KEEPINTVL },
                         { IPPROTO_TCP, TCP_KEEPCNT } }) do
    local v, len = ffi.new("int[1]"), ffi.new("unsigned int[1]", 4)
    assert(ffi.C.getsockopt(copy, opt[1], opt[2], v, len) == 0)
    out[i] = v[0]
  end
  ffi.C.close(copy)
  return out
end

-- A connection through port, once an echo through it proves it is relayed, and its local port.
local function hold(port)
  local c = assert(h.connect(port))
  c:send("held\n")
  assert.are.same({ "held\n", "want" }, { c:read(5) })
  local sa, len = ffi.new("char[128]"), ffi.new("unsigned int[1]", 128)
  assert(ffi.C.getsockname(c.fd, ffi.cast("void *", sa), len) == 0)
  local p = ffi.cast("unsigned char *", sa)
  return c, p[2] * 256 + p[3]
end

describe("tcp_keepalive", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
local ka = { from = { idle = 7, interval = 3, count = 4 }, to = { idle = 11, interval = 5, count = 2 } }
proxy { name = "routed",
        from = { type = "tcp", host = "127.0.0.1", port = 0, tcp_keepalive = ka.from },
        to = { type = "tcp", host = "127.0.0.1", port = %d, tcp_keepalive = ka.to } }
proxy { name = "session", accept = function(conn) return true end,
        from = { type = "tcp", host = "127.0.0.1", port = 0, tcp_keepalive = ka.from },
        to = { type = "tcp", host = "127.0.0.1", port = %d, tcp_keepalive = ka.to } }
proxy { name = "plain",
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port, echo.port))
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  for _, name in ipairs({ "routed", "session" }) do
    it("sets them on both sockets of a " .. name .. " connection", function()
      h.wait_until(function() return not socket_of(np.pid, -1, echo.port) end, 5, "the last test's connections gone")
      local c, client_port = hold(np.ports[name])
      local accepted = assert(socket_of(np.pid, np.ports[name], client_port))
      assert.are.same({ 1, 7, 3, 4 }, keepalive_of(np.pid, accepted))
      local dialled = assert(socket_of(np.pid, -1, echo.port))
      assert.are.same({ 1, 11, 5, 2 }, keepalive_of(np.pid, dialled))
      c:close()
    end)
  end

  it("leaves the kernel's default without tcp_keepalive", function()
    local c, client_port = hold(np.ports.plain)
    local accepted = assert(socket_of(np.pid, np.ports.plain, client_port))
    assert.are.equal(0, keepalive_of(np.pid, accepted)[1])
    c:close()
  end)

  it("refuses a bad tcp_keepalive with a clear error", function()
    local path = h.write(h.tmpfile("ka.lua"), [[
proxy { from = { type = "tcp", host = "127.0.0.1", port = 0, tcp_keepalive = { idle = 0, every = 3 } },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("from: tcp_keepalive: unknown field 'every'", 1, true), err)
    h.write(path, (h.read(path):gsub(", every = 3", "")))
    _, err = h.run({ h.netproxy, "--check", path })
    assert.truthy(err:find("from: tcp_keepalive: idle: bad value '0' (want 1..32767)", 1, true), err)
  end)
end)
