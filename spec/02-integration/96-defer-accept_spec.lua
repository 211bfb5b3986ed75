-- defer_accept: TCP_DEFER_ACCEPT on a tcp listener. The kernel completes the client's
-- handshake but keeps the connection out of the accept queue (in SYN-RECV, as ss shows it)
-- until its first bytes arrive, so netproxy wakes once for accept and read, and never for a
-- client that connects and stays silent. Without it (the default) a client is handed over
-- as soon as its handshake is done.
local h = require "spec.helpers"

-- The connections to port the kernel holds in state (an ss state filter).
local function held(port, state)
  local n = 0
  for _ in h.lines(("ss -Htn state %s 'sport = :%d'"):format(state, port)) do n = n + 1 end
  return n
end

describe("defer_accept", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
proxy { name = "deferred", defer_accept = 5,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "plain",
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port))
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("keeps a silent client in the kernel and relays it once it speaks", function()
    local port = np.ports.deferred
    local c = assert(h.connect(port))
    h.wait_until(function() return held(port, "syn-recv") == 1 end, 5, "the client held in SYN-RECV")
    assert.are.equal(0, held(port, "established"))
    c:send("first bytes\n")
    assert.are.same({ "first bytes\n", "want" }, { c:read(12, 5) })
    assert.are.equal(0, held(port, "syn-recv"))
    c:close()
    h.wait_log(np, "deferred: 127%.0%.0%.1:%d+ %-> .* in=12 out=12 .*end=eof")
  end)

  it("is turned off by a reload on the socket it keeps", function()
    local function config(port, secs)
      return ([[
proxy { name = "r", defer_accept = %d,
        from = { type = "tcp", host = "127.0.0.1", port = %d }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(secs, port, echo.port)
    end
    local r = h.netproxy_start(config(0, 5))
    local port = r.ports.r
    local c = assert(h.connect(port))
    h.wait_until(function() return held(port, "syn-recv") == 1 end, 5, "the client held in SYN-RECV")
    c:send("one\n")
    assert.are.same({ "one\n", "want" }, { c:read(4, 5) })
    c:close()
    h.wait_log(r, "r: 127[^\n]* in=4 out=4 [^\n]*end=eof")
    h.write(r.config, config(port, 0))
    os.execute("kill -HUP " .. r.pid)
    h.wait_log(r, "reloaded [^\n]*%(config generation 1%)")
    c = assert(h.connect(port))
    h.wait_until(function() return held(port, "established") == 1 end, 5, "the client accepted at once")
    assert.are.equal(0, held(port, "syn-recv"))
    c:send("hi\n")
    assert.are.same({ "hi\n", "want" }, { c:read(3, 5) })
    c:close()
    h.stop(r)
  end)

  it("is off by default: a client is accepted as soon as it has connected", function()
    local port = np.ports.plain
    local c = assert(h.connect(port))
    h.wait_until(function() return held(port, "established") == 1 end, 5, "the client accepted")
    assert.are.equal(0, held(port, "syn-recv"))
    c:send("hi\n")
    assert.are.same({ "hi\n", "want" }, { c:read(3, 5) })
    c:close()
  end)
end)
