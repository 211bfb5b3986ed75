-- max_clients counts the connections that are open: one that has ended leaves the count in
-- the function that ends it, not when the reaper frees it later. A client that resets its two
-- connections and reconnects at once is within the limit (HAProxy's maxconn refuses none).
-- The resets and the new client often wake the loop together, in that order; the reaper ran
-- after the accept, which then found the two ended connections still counted. The spec makes
-- that wakeup certain: netproxy is stopped (SIGSTOP) while the client resets and reconnects
-- (loopback delivers each packet within the system call), then continued.
local h = require "spec.helpers"
local ffi = require "ffi"

pcall(ffi.cdef, "struct np_spec_linger { int onoff, seconds; };")

local SOL_SOCKET, SO_LINGER, SIGSTOP, SIGCONT = 1, 13, 19, 18

-- A connection through port, once an echo through it proves it is relayed.
local function hold(port)
  local c = assert(h.connect(port))
  c:send("held\n")
  assert.are.same({ "held\n", "want" }, { c:read(5) })
  return c
end

-- Closes c with a reset (SO_LINGER 0): the proxy ends the connection as soon as it reads it,
-- without waiting for the server.
local function reset(c)
  local l = ffi.new("struct np_spec_linger", 1, 0)
  assert(ffi.C.setsockopt(c.fd, SOL_SOCKET, SO_LINGER, l, ffi.sizeof(l)) == 0)
  c:close()
end

describe("max_clients", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
proxy { name = "two", max_clients = 2, queue_timeout = 0.3,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("takes a client that reset its two connections and reconnects at once, 40 times in a row", function()
    local refused = 0
    for _ = 1, 40 do
      local held = { hold(np.ports.two), hold(np.ports.two) }
      assert.equal(0, ffi.C.kill(np.pid, SIGSTOP))
      for _, c in ipairs(held) do reset(c) end
      local c = assert(h.connect(np.ports.two))       -- the kernel completes the handshake
      assert.equal(0, ffi.C.kill(np.pid, SIGCONT))
      c:send("again\n")
      if c:read(6, 5) ~= "again\n" then refused = refused + 1 end
      reset(c)
    end
    assert.are.equal(0, refused, refused .. " of 40 refused")
    assert.is_nil(np.log():find("refused 127%.0%.0%.1:%d+: max_clients"))
  end)

  -- A normal close ends the connection only once the server has closed its side too: a
  -- client that reconnects meanwhile is past the limit for a moment, and waits for the slot
  -- (queue_timeout) rather than being refused.
  it("takes a client that closed its two connections and reconnects at once, 40 times in a row", function()
    local refused = 0
    for _ = 1, 40 do
      local held = { hold(np.ports.two), hold(np.ports.two) }
      for _, c in ipairs(held) do c:close() end
      local c = assert(h.connect(np.ports.two))
      c:send("again\n")
      if c:read(6, 5) ~= "again\n" then refused = refused + 1 end
      c:close()
    end
    assert.are.equal(0, refused, refused .. " of 40 refused")
    assert.is_nil(np.log():find("refused 127%.0%.0%.1:%d+: max_clients"))
  end)

  it("refuses a client past the limit once it has waited queue_timeout", function()
    local held = { hold(np.ports.two), hold(np.ports.two) }
    local started = h.now()
    local got = h.talk(np.ports.two, "third\n", { timeout = 10 })
    assert.are.equal("", got)
    assert.is_true(h.now() - started >= 0.25, "refused after " .. (h.now() - started) .. " s")
    h.wait_log(np, "two: refused 127%.0%.0%.1:%d+: max_clients %(waited 0%.3 s%)")
    for _, c in ipairs(held) do c:close() end
  end)
end)
