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

-- The epoll_ctl calls of process pid while fn runs: { ADD = n, MOD = n, DEL = n (succeeded) }.
local function epoll_ctls(pid, fn)
  local out = h.tmpfile("strace")
  local tracer = h.spawn({ "strace", "-f", "-e", "trace=epoll_ctl", "-o", out, "-p", tostring(pid) })
  h.wait_until(function()
    return (h.read("/proc/" .. pid .. "/status") or ""):match("TracerPid:%s*[1-9]")
  end, 5, "strace attached")
  fn()
  h.stop(tracer)
  local n = { ADD = 0, MOD = 0, DEL = 0 }
  for line in (h.read(out) or ""):gmatch("[^\n]+") do
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
]]):format(echo.port))
  end)
  teardown(h.stop_all)
  before_each(function()
    h.test_begin()
    np.mark()
  end)
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

  it("moves bulk both ways and half-closes each way, edge-triggered", function()
    for _, args in ipairs({ { "--bytes", "8M" }, { "--bytes", "8M", "--half-close" },
                            { "--bytes", "1M", "--conns", "8", "--parallel", "4" } }) do
      local r = h.client("127.0.0.1", np.ports.plain, args)
      assert.are.equal(0, r.rc, table.concat(args, " ") .. ": " .. tostring(r.err))
    end
    h.wait_log(np, "plain: [^\n]* in=8388608 out=8388608 [^\n]*end=eof")
  end)
end)
