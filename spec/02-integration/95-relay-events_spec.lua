-- The relay's plain sockets are edge-triggered (src/relay.c, "arming"): each is registered
-- once (EPOLL_CTL_ADD) and stays so to its end, so neither backpressure nor a peer's EOF
-- costs an epoll_ctl; level-triggered, the side that reached EOF first had to be taken out
-- (a successful EPOLL_CTL_DEL per connection). Counted with strace over short connections;
-- the DELs libevent still makes after closing a socket fail with EBADF in the kernel's first
-- check (the close took the socket out). Bytes and ends are checked as usual: an edge the
-- relay missed would hang a connection (the FIN that comes with the last bytes, a splice that
-- stops short when the pipe's slots are full).
local h = require "spec.helpers"

local CONNS = 20

local function have_strace()
  return os.execute("command -v strace >/dev/null 2>&1") == 0
end

-- The lines strace writes of the calls (a trace= list) process pid makes while fn runs.
local function traced(pid, calls, fn)
  local out = h.tmpfile("strace")
  local tracer = h.spawn({ "strace", "-f", "-e", "trace=" .. calls, "-o", out, "-p", tostring(pid) })
  h.wait_until(function()
    return (h.read("/proc/" .. pid .. "/status") or ""):match("TracerPid:%s*[1-9]")
  end, 5, "strace attached")
  fn()
  h.stop(tracer)
  local lines = {}
  for line in (h.read(out) or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

-- The epoll_ctl calls of process pid while fn runs: { ADD = n, MOD = n, DEL = n (succeeded) }.
local function epoll_ctls(pid, fn)
  local n = { ADD = 0, MOD = 0, DEL = 0 }
  for _, line in ipairs(traced(pid, "epoll_ctl", fn)) do
    local op, rc = line:match("EPOLL_CTL_(%u+).-%) = (%-?%d+)")
    if op and rc == "0" then n[op] = n[op] + 1 end
  end
  return n
end

describe("relay events", function()
  local np, echo

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
proxy { name = "plain", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "deferred", defer_accept = 5, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port))
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("registers each socket of a plain connection once and never changes it", function()
    if not have_strace() then return pending("strace is not installed") end
    local r
    local n = epoll_ctls(np.pid, function()
      r = h.client("127.0.0.1", np.ports.plain, { "--bytes", "100", "--conns", tostring(CONNS), "--parallel", "1" })
    end)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(CONNS, r.ok)
    assert.are.same({ ADD = 2 * CONNS, MOD = 0, DEL = 0 }, n)
  end)

  -- TCP_DEFER_ACCEPT hands the client over with its bytes: the relay reads them in the turn
  -- that accepted it, instead of waiting for the loop to report them.
  it("reads a deferred client's first bytes without waiting for the loop", function()
    if not have_strace() then return pending("strace is not installed") end
    local r
    local lines = traced(np.pid, "accept4,read,epoll_wait", function()
      r = h.client("127.0.0.1", np.ports.deferred, { "--bytes", "100", "--conns", "3", "--parallel", "1" })
    end)
    assert.are.equal(0, r.rc, r.err)
    local seen = 0
    for i, line in ipairs(lines) do
      local fd = line:match("accept4%(.-%) = (%d+)$")
      if fd then
        local j = i + 1
        while lines[j] and not lines[j]:find("read(" .. fd .. ",", 1, true) do
          assert.is_nil(lines[j]:find("epoll_wait", 1, true), table.concat(lines, "\n", i, j))
          j = j + 1
        end
        assert.truthy(lines[j], "no read of the accepted client " .. fd)
        seen = seen + 1
      end
    end
    assert.are.equal(3, seen)
  end)

  it("moves bulk both ways and half-closes each way, edge-triggered", function()
    for _, args in ipairs({ { "--bytes", "8M" }, { "--bytes", "8M", "--half-close" },
                            { "--bytes", "1M", "--conns", "8", "--parallel", "4" } }) do
      local r = h.client("127.0.0.1", np.ports.plain, args)
      assert.are.equal(0, r.rc, table.concat(args, " ") .. ": " .. tostring(r.err))
    end
    h.wait_log(np, "plain: [^\n]* in=8388608 out=8388608 [^\n]*end=eof")
  end)
end)
