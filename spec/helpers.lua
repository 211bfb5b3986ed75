-- spec/helpers.lua: start the real netproxy binary and real peers on loopback, wait for
-- conditions, and stop every process the spec started (by PID).
local ffi = require "ffi"

ffi.cdef [[
  int poll(void *fds, unsigned long nfds, int timeout);
  int kill(int pid, int sig);
  struct np_spec_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk_id, struct np_spec_timespec *tp);
]]

local CLOCK_MONOTONIC = 1   -- <linux/time.h>
local ts = ffi.new("struct np_spec_timespec")

local _M = {}

local ROOT = os.getenv("NETPROXY_ROOT") or (debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers.lua$") or ".")
ROOT = io.popen("cd '" .. ROOT .. "' && pwd"):read("*l")   -- absolute: configs live in /tmp
_M.root = ROOT
_M.build = os.getenv("NETPROXY_BUILD") or (ROOT .. "/build")
_M.netproxy = _M.build .. "/netproxy"
_M.peer = _M.build .. "/np-peer"
-- Under ASan, memory figures include shadow memory and the allocator's quarantine.
_M.sanitized = _M.build:match("asan/?$") ~= nil

package.path = ROOT .. "/lua/?.lua;" .. package.path

local started = {}   -- pid -> true, for stop_all
local tmpdir

-- Seconds (with millisecond precision and better) on a clock that never jumps.
function _M.now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

function _M.sleep(seconds)
  ffi.C.poll(nil, 0, math.floor(seconds * 1000))
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
    tmpdir = io.popen("mktemp -d /tmp/netproxy-spec.XXXXXX"):read("*l")
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

-- Starts argv (a list) in the background; returns { pid, out, err, rcfile }.
-- The shell wrapper records the exit status so that specs can check it.
function _M.spawn(argv, opts)
  opts = opts or {}
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local p = { out = _M.tmpfile("out"), err = _M.tmpfile("err"), rcfile = _M.tmpfile("rc") }
  local pidfile = _M.tmpfile("pid")
  local ulimit = opts.ulimit and ("ulimit -n " .. opts.ulimit .. "; ") or ""
  local inner = ulimit .. table.concat(words, " ") .. " >" .. quote(p.out) .. " 2>" .. quote(p.err) ..
      " </dev/null & echo $! >" .. quote(pidfile) .. "; wait $!; echo $? >" .. quote(p.rcfile)
  os.execute("sh -c " .. quote(inner) .. " >/dev/null 2>&1 &")
  p.pid = tonumber(_M.wait_until(function()
    local s = _M.read(pidfile)
    return s and s:match("%d+")
  end, 5, "a pid"))
  started[p.pid] = true
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
  started[pid] = true
  return { pid = pid }
end

function _M.stop_all()
  for pid in pairs(started) do _M.stop({ pid = pid }) end
end

-- Runs argv to completion; returns stdout, stderr, exit status.
function _M.run(argv)
  local p = _M.spawn(argv)
  local rc = _M.exit_status(p, 120)
  if rc == nil then _M.stop(p) end
  return _M.read(p.out) or "", _M.read(p.err) or "", rc
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
  function p.log() return _M.read(p.err) or "" end
  p.ports = {}
  _M.wait_until(function()
    local log = p.log()
    if log:find("running %d+ prox") then return true end
    if _M.read(p.rcfile) then error("netproxy exited at start:\n" .. log) end
  end, 10, "netproxy to start")
  for name, addr in p.log():gmatch("notice %[%d+%] ([^\n]-): listening on (%S+)") do
    p.ports[name] = tonumber(addr:match(":(%d+)$"))
  end
  return p
end

-- Waits until netproxy's log matches pattern; returns the capture (or whole match).
function _M.wait_log(p, pattern, timeout)
  return _M.wait_until(function() return p.log():match(pattern) end, timeout or 10, "log line " .. pattern)
end

-- A port number free on 127.0.0.1 just now (for peers that cannot take port 0).
function _M.free_port()
  local p = _M.peer_server("silent")
  _M.stop(p)
  return p.port
end

function _M.port_open(port)
  return os.execute("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null") == 0
end

-- tinyproxy, the real HTTP CONNECT proxy, with its own config file; users = { name = pass }.
function _M.tinyproxy(users)
  local port = _M.free_port()
  local lines = { "Port " .. port, "Listen 127.0.0.1", "Timeout 30", "MaxClients 200",
                  "Allow 127.0.0.1", "LogLevel Info" }
  for user, pass in pairs(users or {}) do lines[#lines + 1] = ("BasicAuth %s %s"):format(user, pass) end
  local conf = _M.write(_M.tmpfile("tinyproxy.conf"), table.concat(lines, "\n") .. "\n")
  local p = _M.spawn({ "tinyproxy", "-d", "-c", conf })
  p.port = port
  _M.wait_until(function() return _M.port_open(port) end, 10, "tinyproxy")
  return p
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
  local port = _M.free_port()
  local argv = { "microsocks", "-i", "127.0.0.1", "-p", tostring(port) }
  if user then for _, a in ipairs({ "-u", user, "-P", pass }) do argv[#argv + 1] = a end end
  local p = _M.spawn(argv)
  p.port = port
  _M.wait_until(function() return _M.port_open(port) end, 10, "microsocks")
  return p
end

-- dante-server (danted), a real SOCKS5 server, in the foreground with its own config file, on
-- a free port. method: "none" (default) or "username" (system users: needs root).
function _M.danted(method)
  local port = _M.free_port()
  local root = io.popen("id -u"):read("*l") == "0"
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
  local p = _M.spawn({ "danted", "-f", conf, "-N", "1", "-p", _M.tmpfile("danted.pid") })
  p.port = port
  _M.wait_until(function() return _M.port_open(port) end, 10, "danted")
  return p
end

return _M
