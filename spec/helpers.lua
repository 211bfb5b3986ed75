-- spec/helpers.lua: start the real netproxy binary and real peers on loopback, wait for
-- conditions, and stop every process the spec started (by PID).
local ffi = require "ffi"

ffi.cdef [[
  int poll(void *fds, unsigned long nfds, int timeout);
  int kill(int pid, int sig);
  int getpid(void);
  struct np_spec_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk_id, struct np_spec_timespec *tp);
  struct np_spec_pollfd { int fd; short events; short revents; };
  struct np_spec_sockaddr_in { uint16_t family; uint16_t port; uint8_t addr[4]; uint8_t zero[8]; };
  struct np_spec_sockaddr_in6 { uint16_t family; uint16_t port; uint32_t flowinfo; uint8_t addr[16]; uint32_t scope; };
  int socket(int domain, int type, int protocol);
  int bind(int fd, const void *addr, unsigned int len);
  int connect(int fd, const void *addr, unsigned int len);
  int getsockname(int fd, void *addr, unsigned int *len);
  int getsockopt(int fd, int level, int name, void *val, unsigned int *len);
  int setsockopt(int fd, int level, int name, const void *val, unsigned int len);
  long send(int fd, const void *buf, unsigned long n, int flags);
  long recv(int fd, void *buf, unsigned long n, int flags);
  int shutdown(int fd, int how);
  int close(int fd);
  int inet_pton(int af, const char *src, void *dst);
  char *strerror(int errnum);
]]

local CLOCK_MONOTONIC = 1   -- <linux/time.h>
local ts = ffi.new("struct np_spec_timespec")

local _M = {}

local ROOT = os.getenv("NETPROXY_ROOT") or (debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers.lua$") or ".")
do   -- absolute: configs live in /tmp
  local f = io.popen("cd '" .. ROOT .. "' && pwd")
  ROOT = f:read("*l")
  f:close()
end
_M.root = ROOT
_M.build = os.getenv("NETPROXY_BUILD") or (ROOT .. "/build")
_M.netproxy = _M.build .. "/netproxy"
_M.peer = _M.build .. "/np-peer"
-- Under ASan, memory figures include shadow memory and the allocator's quarantine.
_M.sanitized = _M.build:match("asan/?$") ~= nil

package.path = ROOT .. "/lua/?.lua;" .. package.path

-- What the spec started, for stop_all and test_end: pid -> sequence number, and the sockets it
-- holds (closed_port, connect): fd -> sequence number.
local started, held = {}, {}
local seq, test_from = 0, nil
local function stamp() seq = seq + 1 return seq end
local tmpdir

-- Seconds (with millisecond precision and better) on a clock that never jumps.
function _M.now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

function _M.sleep(seconds)
  ffi.C.poll(nil, 0, math.floor(seconds * 1000))
end

-- The spec process's own pid: for names that parallel runs must not share (system users...).
function _M.pid()
  return ffi.C.getpid()
end

function _M.alive(pid)
  return ffi.C.kill(pid, 0) == 0
end

-- Polls fn every 10 ms until it returns a true value (returned) or timeout seconds pass
-- (an error naming `what`). fn is always tried once more at the deadline.
function _M.wait_until(fn, timeout, what)
  local deadline = _M.now() + (timeout or 10)
  while true do
    local v = fn()
    if v then return v end
    if _M.now() >= deadline then break end
    _M.sleep(0.01)
  end
  error(("timed out after %gs waiting for %s"):format(timeout or 10, what or "a condition"), 2)
end

function _M.tmp()
  if not tmpdir then
    -- in $TMPDIR (run-tests gives each run its own); short: Lua shortens chunk names past 60
    -- characters, and specs match "file:line: message"
    tmpdir = _M.lines("mktemp -d -t np.XXXXXX")()
  end
  return tmpdir
end

local counter = 0
function _M.tmpfile(name)
  counter = counter + 1
  return _M.tmp() .. "/" .. counter .. "-" .. (name or "file")
end

function _M.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- The lines a shell command prints, as an iterator (its pipe is closed at once: a popen
-- handle left to the garbage collector is a descriptor every later child inherits).
function _M.lines(cmd)
  local f = io.popen(cmd)
  local text = f:read("*a")
  f:close()
  return text:gmatch("[^\n]+")
end

function _M.read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.quote = quote

-- Starts argv (a list) in the background (opts.ulimit: its descriptors, opts.env: variables
-- set for it); returns { pid, out, err, rcfile }.
-- The shell wrapper records the exit status so that specs can check it.
function _M.spawn(argv, opts)
  opts = opts or {}
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local p = { out = _M.tmpfile("out"), err = _M.tmpfile("err"), rcfile = _M.tmpfile("rc") }
  local pidfile = _M.tmpfile("pid")
  local ulimit = opts.ulimit and ("ulimit -n " .. opts.ulimit .. "; ") or ""
  local env = ""                        -- opts.env: { NAME = value }, for this command only
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. quote(v) .. " " end
  local inner = ulimit .. env .. table.concat(words, " ") .. " >" .. quote(p.out) .. " 2>" .. quote(p.err) ..
      " </dev/null & echo $! >" .. quote(pidfile) .. "; wait $!; echo $? >" .. quote(p.rcfile)
  os.execute("sh -c " .. quote(inner) .. " >/dev/null 2>&1 &")
  p.pid = tonumber(_M.wait_until(function()
    local s = _M.read(pidfile)
    return s and s:match("%d+")
  end, 5, "a pid"))
  started[p.pid] = stamp()
  return p
end

-- Sanitizer reports in a process's stderr (the specs also run against an ASan/UBSan build).
local function sanitizer_report(p)
  local err = p.err and _M.read(p.err) or ""
  return err:match("==%d+==ERROR: %w+Sanitizer.-\n\n") or err:match("[^\n]*runtime error:[^\n]*")
end

-- The exit status once the process has ended (waits up to timeout), else nil.
function _M.exit_status(p, timeout)
  local ok, rc = pcall(_M.wait_until, function()
    local s = _M.read(p.rcfile)
    return s and tonumber(s:match("%d+"))
  end, timeout or 10, "exit")
  if ok then started[p.pid] = nil end
  local report = sanitizer_report(p)
  if report then error("sanitizer report from pid " .. p.pid .. ":\n" .. report, 2) end
  return ok and rc or nil
end

function _M.stop(p)
  if not p or not started[p.pid] then return end
  ffi.C.kill(p.pid, 15)
  local ok = pcall(_M.wait_until, function() return not _M.alive(p.pid) end, 10)
  if not ok then ffi.C.kill(p.pid, 9) end
  started[p.pid] = nil
  local report = sanitizer_report(p)
  if report then error("sanitizer report from pid " .. p.pid .. ":\n" .. report, 2) end
end

-- Takes a process this spec did not spawn itself (a daemon) under stop_all's care.
function _M.adopt(pid)
  started[pid] = stamp()
  return { pid = pid }
end

-- Sockets first: netproxy's graceful stop would wait for the connections they hold.
local function stop_from(first)
  for fd, n in pairs(held) do
    if n >= first then
      held[fd] = nil
      ffi.C.close(fd)
    end
  end
  for pid, n in pairs(started) do
    if n >= first then _M.stop({ pid = pid }) end
  end
end

-- Stops every process the spec started and closes every socket it holds.
function _M.stop_all()
  stop_from(0)
end

-- For a describe whose setup starts peers that its tests share: before_each(h.test_begin) and
-- after_each(h.test_end) stop what each test started itself, and only that, even when it fails.
-- test_begin(np) also marks np's log, so that each test's wait_log reads its own lines.
function _M.test_begin(np)
  test_from = seq + 1
  if np then np.mark() end
end

function _M.test_end()
  if test_from then stop_from(test_from) end
  test_from = nil
end

-- Runs argv to completion; returns stdout, stderr, exit status.
function _M.run(argv)
  local p = _M.spawn(argv)
  local rc = _M.exit_status(p, 120)
  if rc == nil then _M.stop(p) end
  return _M.read(p.out) or "", _M.read(p.err) or "", rc
end

-- Runs argv with its standard input held open: input is written first, and stdin stays open
-- until the output so far (stdout .. stderr) satisfies opts.want (a Lua pattern or a function
-- of it), or the process exits, or opts.timeout seconds (default 10) pass. Then stdin is closed
-- (or, with opts.stop, the process is stopped: for clients that ignore the end of their input)
-- and the exit awaited. For clients that quit at the end of their input before the answer is
-- in (s_client, socat, netproxy's stdio form). Returns stdout, stderr, exit status, and whether
-- want was met.
function _M.interact(argv, input, opts)
  opts = opts or {}
  local want = opts.want
  local function met(out)
    if type(want) == "function" then return want(out) and true or false end
    return want ~= nil and out:find(want) ~= nil
  end
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local infile, release, pidfile = _M.write(_M.tmpfile("stdin"), input or ""), _M.tmpfile("release"), _M.tmpfile("pid")
  local feeder = ("{ cat %s; while [ ! -e %s ]; do sleep 0.02; done; }"):format(quote(infile), quote(release))
  -- (the pid file is in the spec's mktemp folder: no quoting needed inside the quotes)
  local cmd = ("sh -c 'echo $$ >%s; exec \"$@\"' sh %s"):format(pidfile, table.concat(words, " "))
  local p = _M.spawn({ "sh", "-c", feeder .. " | " .. cmd })
  local function output() return (_M.read(p.out) or "") .. (_M.read(p.err) or "") end
  -- the client exited (the pipeline itself waits for the feeder, which waits for release)
  local function exited()
    local pid = tonumber(_M.read(pidfile) or "")
    if not pid then return false end
    local state = (_M.read("/proc/" .. pid .. "/stat") or ""):match("^%d+ %(.*%) (%a)")
    return state == nil or state == "Z"
  end
  pcall(_M.wait_until, function() return _M.read(p.rcfile) or met(output()) or exited() end, opts.timeout or 10)
  local ok = met(output())
  local pid = tonumber(_M.read(pidfile) or "")
  if opts.stop and pid and not _M.read(p.rcfile) then ffi.C.kill(pid, 15) end
  _M.write(release, "")
  local rc = _M.exit_status(p, 10)
  if rc == nil then
    -- still running with its input ended: stopped, and the client too (the pipeline's shell
    -- going alone would leave it behind)
    if pid then
      for child in _M.lines("pgrep -P " .. pid) do ffi.C.kill(tonumber(child), 15) end
      ffi.C.kill(pid, 15)
    end
    _M.stop(p)
  end
  return _M.read(p.out) or "", _M.read(p.err) or "", rc, ok
end

-- A real peer server (np-peer MODE) on an ephemeral loopback port.
function _M.peer_server(mode, args, host)
  local portfile = _M.tmpfile("port")
  local argv = { _M.peer, mode, "--listen", (host or "127.0.0.1") .. ":0", "--port-file", portfile }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = _M.spawn(argv)
  p.port = tonumber(_M.wait_until(function() return _M.read(portfile) end, 5, "the peer's port"))
  return p
end

-- The np-peer client; returns its summary fields (numbers), its stderr and exit status.
function _M.client(host, port, args)
  local target = (host:find(":") and "[" .. host .. "]" or host) .. ":" .. port
  local argv = { _M.peer, "client", "--connect", target }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local out, err, rc = _M.run(argv)
  local r = { rc = rc, err = err, out = out }
  for k, v in out:gmatch("([%w_]+)=([%d%.]+)") do r[k] = tonumber(v) end
  return r
end

-- True once process pid has a handler for each signal number in sigs (its SigCgt mask).
function _M.catches(pid, sigs)
  local mask = (_M.read("/proc/" .. pid .. "/status") or ""):match("SigCgt:%s*(%x+)")
  if not mask then return false end
  local low = tonumber(mask:sub(-8), 16)
  for _, sig in ipairs(sigs) do
    if bit.band(low, bit.lshift(1, sig - 1)) == 0 then return false end
  end
  return true
end

-- netproxy logs "running" (and says READY=1) before its loop watches for signals: until then
-- SIGHUP, SIGUSR1 or SIGUSR2 would kill it. This waits for its handlers of HUP, USR1, USR2, TERM.
function _M.wait_signals(pid)
  _M.wait_until(function() return _M.catches(pid, { 1, 10, 12, 15 }) end, 10, "netproxy's signal handlers")
end

-- The port of server{ stats = ... } once netproxy has started, from its log line. That line
-- gives the address as configured: for port 0, the port bound is the one left in the socket
-- table once the proxies' ports are set aside.
local function stats_port(p)
  local addr = p.full_log():match("stats: serving /metrics on (%S+)")
  local port = addr and tonumber(addr:match(":(%d+)$"))
  if port ~= 0 then return port end
  local proxies = {}
  for n in p.full_log():gmatch(": listening on %S-:(%d+)\n") do proxies[tonumber(n)] = true end
  for n in pairs(_M.listening_ports(p.pid)) do
    if not proxies[n] then return n end
  end
end

-- Starts netproxy on a config (text written to a file, or a path); waits until each of its
-- proxies listens. Returns the process with .ports[name] and .log().
function _M.netproxy_start(config, args, opts)
  local path = config
  if config:find("\n") or config:find("proxy%s*{") then
    path = _M.write(_M.tmpfile("config.lua"), config)
  end
  local argv = { _M.netproxy }
  local workers_given = false
  for _, a in ipairs(args or {}) do
    argv[#argv + 1] = a
    if a == "-w" or a == "--workers" then workers_given = true end
  end
  -- one process unless a spec asks for workers: the process model has specs of its own
  if not workers_given then argv[#argv + 1] = "-w"; argv[#argv + 1] = "1" end
  argv[#argv + 1] = path
  local p = _M.spawn(argv, opts)
  p.config = path
  -- p.log(): the log since the last p.mark() (a spec sharing one netproxy between tests marks
  -- it before each, so that no test sees the lines of another); p.full_log(): all of it.
  local from = 0
  function p.full_log() return _M.read(p.err) or "" end
  function p.log() return p.full_log():sub(from + 1) end
  function p.mark() from = #p.full_log() end
  p.ports = {}
  _M.wait_until(function()
    local log = p.log()
    if log:find("running %d+ prox") then return true end
    if _M.read(p.rcfile) then error("netproxy exited at start:\n" .. log) end
  end, 10, "netproxy to start")
  _M.wait_signals(p.pid)
  for name, addr in p.full_log():gmatch("notice %[%d+%] ([^\n]-): listening on (%S+)") do
    p.ports[name] = tonumber(addr:match(":(%d+)$"))
  end
  p.stats_port = stats_port(p)
  return p
end

-- Waits until master pid has n workers, each with its SIGTERM handler: a worker signalled in
-- the moment after its fork loses the signal (src/master.c: it still has the master's handler),
-- and the master then waits for it for ever. Returns the workers' pids.
function _M.wait_workers(pid, n)
  return _M.wait_until(function()
    local kids = {}
    for line in _M.lines("pgrep -P " .. pid) do
      if not _M.catches(tonumber(line), { 15 }) then return false end
      kids[#kids + 1] = tonumber(line)
    end
    return #kids == n and kids
  end, 10, n .. " workers of " .. pid .. " with their handlers")
end

-- After a SIGHUP to a master run with -v: waits until generation n has started and every worker
-- of an older one has stopped accepting (or is gone), so that new connections get the new config.
function _M.wait_reloaded(p, n)
  _M.wait_log(p, "master: generation " .. n .. " started")
  local old = {}
  for pid, g in p.full_log():gmatch("master: worker (%d+) started %(generation (%d+)%)") do
    if tonumber(g) < n then old[#old + 1] = pid end
  end
  assert(#old > 0, "no \"worker started\" lines: wait_reloaded needs netproxy -v")
  _M.wait_until(function()
    local log = p.full_log()
    for _, pid in ipairs(old) do
      if _M.alive(tonumber(pid)) and not log:find("%[" .. pid .. "%] draining: no new connections") then return false end
    end
    return true
  end, 10, "the old workers to stop accepting")
end

-- Waits until netproxy's log matches pattern; returns the capture (or whole match).
-- A logged duration ("time=0.997s") against a timeout of want seconds: the loop's clock may
-- fire a few ms early, and a loaded machine late.
function _M.about(seconds, want)
  seconds = tonumber(seconds)
  return seconds ~= nil and seconds >= want - 0.05 and seconds < want + 1.5
end

-- On a timeout, the error shows the end of the log (since the mark).
function _M.wait_log(p, pattern, timeout)
  local ok, v = pcall(_M.wait_until, function() return p.log():match(pattern) end, timeout or 10, "log line " .. pattern)
  if ok then return v end
  local tail = p.log():sub(-3000)
  error(v:gsub("^.-:%d+: ", "") .. "\n--- the log" .. (#tail < #p.log() and " (its end)" or "") .. ":\n" .. tail, 2)
end

-- ---- sockets in the spec process: real TCP on loopback, driven with poll() ----

local AF_INET, AF_INET6, SOCK_STREAM = 2, 10, 1
local SOCK_NONBLOCK, SOCK_CLOEXEC = 0x800, 0x80000
local SOL_SOCKET, SO_ERROR, IPPROTO_TCP, TCP_NODELAY = 1, 4, 6, 1
local POLLIN, POLLOUT = 1, 4
local EINTR, EAGAIN, EINPROGRESS = 4, 11, 115
local MSG_NOSIGNAL = 0x4000
local ERRNO_WORDS = { [104] = "reset", [111] = "refused", [32] = "reset", [110] = "timeout" }

local function swap16(n) return (n % 256) * 256 + math.floor(n / 256) end   -- x86: little-endian

-- A sockaddr for host ("127.0.0.1", "::1", "[::1]") and port.
local function sockaddr(host, port)
  host = host:gsub("^%[(.*)%]$", "%1")
  local family = host:find(":") and AF_INET6 or AF_INET
  local sa = ffi.new(family == AF_INET6 and "struct np_spec_sockaddr_in6" or "struct np_spec_sockaddr_in")
  sa.family, sa.port = family, swap16(port)
  assert(ffi.C.inet_pton(family, host, sa.addr) == 1, "not an IP address: " .. host)
  return sa, ffi.sizeof(sa), family
end

local function bound_socket(host, port)
  local sa, len, family = sockaddr(host, port)
  local fd = ffi.C.socket(family, SOCK_STREAM + SOCK_NONBLOCK + SOCK_CLOEXEC, 0)
  assert(fd >= 0, "socket: " .. ffi.string(ffi.C.strerror(ffi.errno())))
  if ffi.C.bind(fd, sa, len) ~= 0 then
    local e = ffi.errno()
    ffi.C.close(fd)
    error(("bind %s:%d: %s"):format(host, port, ffi.string(ffi.C.strerror(e))), 3)
  end
  local len_out = ffi.new("unsigned int[1]", len)
  ffi.C.getsockname(fd, sa, len_out)
  return fd, swap16(sa.port)
end

local function poll1(fd, events, ms)
  local pfd = ffi.new("struct np_spec_pollfd[1]")
  pfd[0].fd, pfd[0].events = fd, events
  local n = ffi.C.poll(pfd, 1, ms)
  return n > 0 and pfd[0].revents or 0
end

-- A port on 127.0.0.1 where connections are refused, and stay refused: a socket bound there
-- without listen() is held until stop_all, so nobody else can take the port meanwhile.
function _M.closed_port()
  local fd, port = bound_socket("127.0.0.1", 0)
  held[fd] = stamp()
  return port
end

local Conn = {}
Conn.__index = Conn

-- Connects to host:port (opts.host, default 127.0.0.1; opts.from binds the source address,
-- e.g. "127.0.0.2"; opts.nodelay: each send its own segment). Returns a connection (send, read, shutdown, close; held until stop_all
-- if the spec does not close it), or nil and "refused", "reset", "timeout"...
function _M.connect(port, opts)
  opts = opts or {}
  local host = opts.host or "127.0.0.1"
  local sa, len, family = sockaddr(host, port)
  local fd = ffi.C.socket(family, SOCK_STREAM + SOCK_NONBLOCK + SOCK_CLOEXEC, 0)
  assert(fd >= 0, "socket failed")
  if opts.from then
    local from = sockaddr(opts.from, 0)
    assert(ffi.C.bind(fd, from, ffi.sizeof(from)) == 0, "bind " .. opts.from)
  end
  if opts.nodelay then ffi.C.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, ffi.new("int[1]", 1), 4) end
  if ffi.C.connect(fd, sa, len) ~= 0 and ffi.errno() ~= EINPROGRESS then
    local e = ffi.errno()
    ffi.C.close(fd)
    return nil, ERRNO_WORDS[e] or ffi.string(ffi.C.strerror(e))
  end
  poll1(fd, POLLOUT, math.floor((opts.timeout or 5) * 1000))
  local soerr, elen = ffi.new("int[1]"), ffi.new("unsigned int[1]", 4)
  ffi.C.getsockopt(fd, SOL_SOCKET, SO_ERROR, soerr, elen)
  if soerr[0] ~= 0 then
    ffi.C.close(fd)
    return nil, ERRNO_WORDS[soerr[0]] or ffi.string(ffi.C.strerror(soerr[0]))
  end
  held[fd] = stamp()
  return setmetatable({ fd = fd, pending = {}, got = {}, nrecv = 0 }, Conn)
end

-- The bytes received so far, as one string.
function Conn:received()
  if #self.got > 1 then self.got = { table.concat(self.got) } end
  return self.got[1] or ""
end

local function satisfied(self, want)
  if want == nil then return false end
  if want == true then return true end
  if type(want) == "number" then return self.nrecv >= want end
  if type(want) == "function" then return want(self:received()) end
  return self:received():find(want) ~= nil
end

-- Moves bytes both ways (sending what is queued, reading what comes) until nothing is left to
-- send and want is met (a byte count, a Lua pattern, a function of the bytes received, or true:
-- at once), or the server closes, or the deadline. Returns how it ended: "want", "eof",
-- "reset", "timeout".
function Conn:pump(want, timeout)
  local deadline = _M.now() + (timeout or 5)
  local buf = ffi.new("uint8_t[?]", 65536)
  while true do
    if #self.pending == 0 and satisfied(self, want) then return "want" end
    if self.ended then return self.ended end
    local left = deadline - _M.now()
    if left <= 0 then return "timeout" end
    local events = POLLIN + (#self.pending > 0 and POLLOUT or 0)
    local revents = poll1(self.fd, events, math.min(math.ceil(left * 1000), 100))
    if bit.band(revents, POLLOUT) ~= 0 and #self.pending > 0 then
      local chunk = self.pending[1]
      local n = tonumber(ffi.C.send(self.fd, chunk, #chunk, MSG_NOSIGNAL))
      if n > 0 then
        if n == #chunk then table.remove(self.pending, 1) else self.pending[1] = chunk:sub(n + 1) end
      elseif ffi.errno() ~= EAGAIN and ffi.errno() ~= EINTR then
        self.pending = {}
      end
      if #self.pending == 0 and self.shut_after then ffi.C.shutdown(self.fd, 1) end
    end
    if bit.band(revents, 0x19) ~= 0 then   -- POLLIN, POLLERR, POLLHUP
      local n = tonumber(ffi.C.recv(self.fd, buf, 65536, 0))
      if n > 0 then
        self.got[#self.got + 1] = ffi.string(buf, n)
        self.nrecv = self.nrecv + n
      elseif n == 0 then
        self.ended = "eof"
      elseif ffi.errno() ~= EAGAIN and ffi.errno() ~= EINTR then
        self.ended = "reset"
      end
    end
  end
end

-- Queues data and sends it (reading meanwhile, so that an echo never deadlocks us).
function Conn:send(data, timeout)
  if #data > 0 then self.pending[#self.pending + 1] = data end
  return self:pump(true, timeout) == "want"
end

-- Reads until want (see pump) or the end; returns the bytes received so far and how it ended.
function Conn:read(want, timeout)
  local how = self:pump(want, timeout)
  return self:received(), how
end

-- Half-closes (SHUT_WR) once everything queued is sent.
function Conn:shutdown()
  self.shut_after = true
  if #self.pending == 0 then ffi.C.shutdown(self.fd, 1) end
end

function Conn:close()
  if held[self.fd] then
    held[self.fd] = nil
    ffi.C.close(self.fd)
  end
end

-- One exchange: connects, sends input, half-closes (unless opts.keep_open), and reads until
-- opts.want (a byte count, a Lua pattern or a function) is met or the server closes; then
-- closes. Returns the bytes received and how it ended ("want", "eof", "reset", "timeout",
-- "refused"). opts: host, from (source address), want, keep_open, timeout (default 5 s).
function _M.talk(port, input, opts)
  opts = opts or {}
  local c, err = _M.connect(port, opts)
  if not c then return "", err end
  c.pending[1] = input ~= "" and input or nil
  if not opts.keep_open then c:shutdown() end
  local out, how = c:read(opts.want, opts.timeout)
  c:close()
  return out, how
end

-- The TCP ports (UDP with udp = true) process pid listens on, read from ss, as a set.
function _M.listening_ports(pid, udp)
  local ports = {}
  for line in _M.lines(udp and "ss -lunpH 2>/dev/null" or "ss -ltnpH 2>/dev/null") do
    if line:find("pid=" .. pid .. ",", 1, true) then
      local port = line:match("^%S+%s+%d+%s+%d+%s+%S-:(%d+)%s")
      if port then ports[tonumber(port)] = true end
    end
  end
  return ports
end

function _M.port_open(port)
  local c = _M.connect(port)
  if c then c:close() end
  return c ~= nil
end

-- A port the kernel would give a socket bound to port 0 just now: free at this instant only
-- (somebody may take it before it is used), so it is for on_free_port alone, which retries.
local function unused_port()
  local fd, port = bound_socket("127.0.0.1", 0)
  ffi.C.close(fd)
  return port
end

-- Starts a peer that cannot take port 0 itself (tinyproxy, sshd, haproxy, s_server, netproxy
-- with reuseport and workers): start(port) spawns it on a port just seen free. If it did not
-- come up there (it exited, or start raised an error: the port was taken meanwhile), it is
-- started again on another port. Returns the process with .port once that process listens on
-- it (a UDP port with opts.udp). opts.ports: a function giving the port to try next, or nil
-- for one just seen free (for the spec of this helper).
function _M.on_free_port(what, start, opts)
  opts = opts or {}
  local last
  for _ = 1, 5 do
    local port = opts.ports and opts.ports() or unused_port()
    local ok, p = pcall(start, port)
    local up = ok and _M.wait_until(function()
      if _M.listening_ports(p.pid, opts.udp)[port] then return "up" end
      if _M.read(p.rcfile) then return "exited" end
    end, opts.timeout or 10, what .. " on port " .. port)
    if up == "up" then
      p.port = port
      return p
    end
    last = ok and (_M.read(p.err) or "") .. (_M.read(p.out) or "") or tostring(p)
    if ok then _M.stop(p) end
  end
  error(what .. " did not start on any of 5 free ports; last said:\n" .. last, 2)
end

-- tinyproxy, the real HTTP CONNECT proxy, with its own config file; users = { name = pass }.
function _M.tinyproxy(users)
  return _M.on_free_port("tinyproxy", function(port)
    local lines = { "Port " .. port, "Listen 127.0.0.1", "Timeout 30", "MaxClients 200",
                    "Allow 127.0.0.1", "LogLevel Info" }
    for user, pass in pairs(users or {}) do lines[#lines + 1] = ("BasicAuth %s %s"):format(user, pass) end
    local conf = _M.write(_M.tmpfile("tinyproxy.conf"), table.concat(lines, "\n") .. "\n")
    return _M.spawn({ "tinyproxy", "-d", "-c", conf })
  end)
end

-- A throw-away PKI: a CA, certificates it signs (for names, 127.0.0.1 included), a client
-- certificate, an expired one, and a second CA that signs nothing here. Returns the folder;
-- files are NAME.pem and NAME.key.
local pki_dir
function _M.pki()
  if pki_dir then return pki_dir end
  pki_dir = _M.tmp() .. "/pki"
  local key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local function sh(cmd) assert(os.execute("cd " .. pki_dir .. " && " .. cmd .. " 2>/dev/null") == 0, cmd) end
  local function signed(name, days, ext)
    sh(("openssl req %s -keyout %s.key -out %s.csr -subj /CN=%s"):format(key, name, name, name))
    _M.write(pki_dir .. "/" .. name .. ".ext", ext)
    sh(("openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out %s.pem -days %d -extfile %s.ext")
       :format(name, name, days, name))
  end
  os.execute("mkdir -p " .. pki_dir)
  sh(("openssl req -x509 %s -keyout ca.key -out ca.pem -subj /CN=netproxy-spec-ca -days 2"):format(key))
  sh(("openssl req -x509 %s -keyout other-ca.key -out other-ca.pem -subj /CN=another-ca -days 2"):format(key))
  for _, name in ipairs({ "localhost", "a.test", "wild.b.test", "backend.test" }) do
    local alt = name == "wild.b.test" and "DNS:*.b.test" or ("DNS:" .. name)
    signed(name, 2, "subjectAltName=" .. alt .. ",IP:127.0.0.1\n")
  end
  signed("client", 2, "extendedKeyUsage=clientAuth\n")
  signed("expired", -1, "subjectAltName=DNS:expired.test,IP:127.0.0.1\n")
  sh(("openssl req -x509 %s -keyout stranger.key -out stranger.pem -subj /CN=stranger -days 2"):format(key))
  return pki_dir
end

-- Resident memory (KiB) and CPU time used so far (seconds) of a running process.
function _M.usage(pid)
  local status = _M.read("/proc/" .. pid .. "/status") or ""
  local stat = _M.read("/proc/" .. pid .. "/stat") or ""
  local fields = {}
  for f in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = f end
  -- after the command name: field 12 is utime, 13 stime, in clock ticks (100 a second)
  return tonumber(status:match("VmRSS:%s+(%d+)")), (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

-- A config proxying name: from 127.0.0.1:0 to 127.0.0.1:port.
function _M.tcp_proxy(name, port, extra)
  return ([[
proxy {
  name = %q,
  from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to   = { type = "tcp", host = "127.0.0.1", port = %d },
  %s
}
]]):format(name, port, extra or "")
end

-- microsocks, a real SOCKS5 server, on a free port; with user and pass it wants them.
function _M.microsocks(user, pass)
  return _M.on_free_port("microsocks", function(port)
    local argv = { "microsocks", "-i", "127.0.0.1", "-p", tostring(port) }
    if user then for _, a in ipairs({ "-u", user, "-P", pass }) do argv[#argv + 1] = a end end
    return _M.spawn(argv)
  end)
end

-- dante-server (danted), a real SOCKS5 server, in the foreground with its own config file, on
-- a free port. method: "none" (default) or "username" (system users: needs root).
function _M.danted(method)
  local root = _M.lines("id -u")() == "0"
  return _M.on_free_port("danted", function(port)
    local lines = { "logoutput: stderr", "internal: 127.0.0.1 port = " .. port, "external: 127.0.0.1",
                    "external: ::1", "socksmethod: " .. (method or "none"),
                    "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
                    "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: error connect }",
                    "socks pass { from: 127.0.0.0/8 to: ::/0 log: error connect }" }
    if root then
      table.insert(lines, 4, "user.privileged: root")
      table.insert(lines, 5, "user.unprivileged: nobody")
    end
    local conf = _M.write(_M.tmpfile("danted.conf"), table.concat(lines, "\n") .. "\n")
    return _M.spawn({ "danted", "-f", conf, "-N", "1", "-p", _M.tmpfile("danted.pid") })
  end)
end

-- The Python UDP echo server of spec/support/udp_peer.py on host (127.0.0.1 by default; "::"
-- takes both families), once it listens: p.port.
-- A UDP "nameserver" on 127.0.0.1 that swallows every query and never answers; .port.
function _M.silent_dns()
  return _M.on_free_port("a silent UDP nameserver", function(port)
    return _M.spawn({ "socat", "-u", "UDP-RECV:" .. port .. ",bind=127.0.0.1", "/dev/null" })
  end, { udp = true })
end

-- dnsmasq on 127.0.0.1 answering from its records only (records: options such as
-- "--address=/test.example/192.0.2.1" or "--ptr-record=..."); .port, once it listens.
function _M.dnsmasq(records)
  local user = io.popen("id -un"):read("*l")
  return _M.on_free_port("dnsmasq", function(port)
    local argv = { "dnsmasq", "--no-daemon", "--port=" .. port, "--listen-address=127.0.0.1", "--bind-interfaces",
                   "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--user=" .. user, "--pid-file=" }
    for _, r in ipairs(records) do argv[#argv + 1] = r end
    return _M.spawn(argv)
  end, { udp = true })
end

function _M.udp_echo_server(host)
  local portfile = _M.tmpfile("udp-port")
  local p = _M.spawn({ "python3", _M.root .. "/spec/support/udp_peer.py", "echo", host or "127.0.0.1", portfile })
  p.port = tonumber(_M.wait_until(function() return _M.read(portfile) end, 10, "the udp echo server"))
  return p
end

return _M
