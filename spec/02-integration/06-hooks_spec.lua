-- Data hooks end to end: rewriting, growing, shrinking, dropping, injecting, the shared
-- stash, line mode, byte-exactness, and faults that stay in their connection.
local h = require "spec.helpers"

-- A proxy in front of port with hooks given as Lua source.
local function hooked(name, port, from_extra, to_extra, proxy_extra)
  return ([[
proxy {
  name = %q,
  from = { type = "tcp", host = "127.0.0.1", port = 0, %s },
  to   = { type = "tcp", host = "127.0.0.1", port = %d, %s },
  %s
}
]]):format(name, from_extra or "", port, to_extra or "", proxy_extra or "")
end

-- Sends input through port, half-closes, and returns all that came back until netproxy closed.
local function talk(port, input, opts)
  return (h.talk(port, input, opts))
end

describe("hooks", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(
      hooked("up", echo.port, [[hook = function(d) return (d:gsub("foo", "bar")) end]]) ..
      hooked("down", echo.port, nil, [[hook = function(d) return (d:gsub("foo", "baz")) end]]) ..
      hooked("both", echo.port, [[hook = function(d) return (d:gsub("foo", "bar")) end]],
                                [[hook = function(d) return (d:gsub("bar", "qux")) end]]) ..
      hooked("grow", echo.port, [[hook = function(d) return (d:gsub(".", "%0%0%0")) end]]) ..
      hooked("shrink", echo.port, [[hook = function(d) return (d:gsub("a", "")) end]]) ..
      hooked("drop", echo.port, nil, [[hook = function(d) return "" end]]) ..
      hooked("inject", echo.port, [[hook = function(d, conn, eof)
          if eof then return end
          if d:find("PING") then conn:send("client", "PONG\n") return "" end
          conn:send("server", "(sent after the chunk)\n") return d
        end]]) ..
      hooked("stash", echo.port, [[hook = function(d, conn) conn.stash.up = (conn.stash.up or 0) + #d end]],
                                 [[hook = function(d, conn, eof)
          if eof then return ("up=%d id=%d proxy=%s\n"):format(conn.stash.up, conn.id, conn.proxy) end
        end]]) ..
      hooked("lines", echo.port, [[hook_mode = "line", hook = function(l) return (l:gsub("netproxy", "NETPROXY")) end]]) ..
      hooked("chunks", echo.port, [[hook = function(d) return (d:gsub("netproxy", "NETPROXY")) end]]) ..
      hooked("identity", echo.port, [[hook = function(d) return d end]], [[hook = function() end]]) ..
      hooked("faulty", echo.port, [[hook = function(d)
          if d:find("BOOM") then error("boom in a hook") end
        end]]) ..
      hooked("runaway", echo.port, [[hook = function(d)
          if d:find("LOOP") then while true do end end
        end]], nil, "hook_budget = 0.5,") ..
      hooked("closer", echo.port, [[hook = function(d, conn)
          if d:find("BYE") then conn:close() end
        end]]) ..
      hooked("addresses", echo.port, nil, [[hook = function(d, conn, eof)
          if eof then return conn.client .. " " .. conn.server .. " " .. conn.target .. " " .. tostring(conn.reached) .. "\n" end
        end]]),
      { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("rewrites client-to-server data with from.hook", function()
    assert.are.equal("bar bar\n", talk(np.ports.up, "foo foo\n"))
  end)

  it("rewrites server-to-client data with to.hook", function()
    assert.are.equal("baz\n", talk(np.ports.down, "foo\n"))
  end)

  it("rewrites both directions, each with its own hook", function()
    assert.are.equal("qux\n", talk(np.ports.both, "foo\n"))
  end)

  it("grows data, staying byte-exact through the buffers", function()
    -- every byte tripled: the result does not depend on where the chunks were cut
    local out = talk(np.ports.grow, ("0123456789abcdef"):rep(65536))   -- 1 MiB
    assert.are.equal(3 * 1024 * 1024, #out)
    assert.is_true(out == ("000111222333444555666777888999aaabbbcccdddeeefff"):rep(65536), "tripled bytes differ")
  end)

  it("shrinks data", function()
    assert.are.equal(("b"):rep(100000), talk(np.ports.shrink, ("ab"):rep(100000)))
  end)

  it("drops data when the hook returns an empty string", function()
    assert.are.equal("", talk(np.ports.drop, "nothing comes back\n"))
    h.wait_log(np, "drop: [^\n]* in=19 out=0 time=[%d%.]+s end=eof")
  end)

  it("injects bytes toward either side with conn:send", function()
    assert.are.equal("PONG\n", talk(np.ports.inject, "PING\n"))
    assert.are.equal("hi\n(sent after the chunk)\n", talk(np.ports.inject, "hi\n"))
  end)

  it("shares conn.stash between the two directions, and calls hooks once more at EOF", function()
    local out = talk(np.ports.stash, "12345")
    assert.truthy(out:match("^12345up=5 id=%d+ proxy=stash\n$"), out)
  end)

  it("gives hooks the connection's addresses", function()
    local out = talk(np.ports.addresses, "x")
    -- conn.reached (where the client connected: the proxy's port) is looked up when asked
    assert.truthy(out:match("^x127%.0%.0%.1:%d+ 127%.0%.0%.1:" .. echo.port .. " 127%.0%.0%.1:" .. echo.port ..
                            " 127%.0%.0%.1:" .. np.ports.addresses .. "\n$"), out)
  end)

  it("in line mode, rewrites a pattern split across two TCP writes", function()
    local c = assert(h.connect(np.ports.lines))
    c:send("I like net")
    -- nothing comes back for half a line, so nothing can be awaited: the pause makes two TCP
    -- writes of it (the split under test), it does not wait for anything
    h.sleep(0.3)
    c:send("proxy\nand netproxy")
    c:shutdown()
    assert.are.same({ "I like NETPROXY\nand NETPROXY", "eof" }, { c:read() })
  end)

  it("(in chunk mode the same split goes through unchanged: why line mode exists)", function()
    local c = assert(h.connect(np.ports.chunks))
    c:send("I like net")
    assert.are.same({ "I like net", "want" }, { c:read(10) })   -- the first write went through alone
    c:send("proxy\n")
    c:shutdown()
    assert.are.same({ "I like netproxy\n", "eof" }, { c:read() })
  end)

  it("carries 16 MiB byte-exact through identity hooks", function()
    local r = h.client("127.0.0.1", np.ports.identity, { "--bytes", "16M", "--half-close" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(16 * 1024 * 1024, r.bytes_recv)
  end)

  it("splices the direction that has no hook", function()
    talk(np.ports.up, "x")
    h.wait_log(np, "up: relay: client%->server hook, server%->client splice")
  end)

  it("closes only the connection whose hook raised an error, and logs file:line and the id", function()
    local bystander = assert(h.connect(np.ports.faulty))
    bystander:send("before\n")
    assert.are.same({ "before\n", "want" }, { bystander:read(7) })
    talk(np.ports.faulty, "BOOM\n")
    local id = h.wait_log(np, "err %[%d+%] #(%d+) faulty: hook: [^\n]*config%.lua:%d+: boom in a hook")
    h.wait_log(np, "#" .. id .. " faulty: [^\n]* end=lua error: [^\n]*boom in a hook")
    bystander:send("after\n")
    bystander:shutdown()
    assert.are.same({ "before\nafter\n", "eof" }, { bystander:read() })
    assert.are.equal("fine\n", talk(np.ports.faulty, "fine\n"))
  end)

  it("stops a runaway hook after its budget, closing only that connection", function()
    talk(np.ports.runaway, "LOOP\n")
    h.wait_log(np, "runaway: [^\n]* end=lua error: [^\n]*:%d+: ran longer than its budget of 0%.5")
    assert.are.equal("still serving\n", talk(np.ports.runaway, "still serving\n"))
    assert.are.equal("qux\n", talk(np.ports.both, "foo\n"))
  end)

  it("lets a hook close its connection", function()
    -- the client keeps its write side open: the close is the hook's
    assert.are.same({ "", "eof" }, { h.talk(np.ports.closer, "BYE\n", { keep_open = true }) })
    h.wait_log(np, "closer: [^\n]* end=closed: by hook")
  end)
end)

-- A hook on one direction leaves the other on the splice path, and not just in name (the
-- "relay:" line says what the relay set out to do): bytes that went through splice() leave
-- their pipe in the process's pool (src/pipepool.c) when the connection ends, and nothing
-- else in netproxy makes a pipe. Each case runs in its own process so that one case's pooled
-- pipe cannot stand for another's; the hook counts what it saw, so the hooked direction is
-- shown hooked too.
describe("a hook on one direction", function()
  local echo
  before_each(function() echo = h.peer_server("echo") end)
  after_each(h.stop_all)

  local COUNTING = [[hook = function(d, conn, eof)
      conn.stash.n = (conn.stash.n or 0) + #d
      if eof then conn:log("notice", "hook saw %d bytes", conn.stash.n) end
    end]]

  local function pipes(pid)
    local n = 0
    for line in h.lines("ls -l /proc/" .. pid .. "/fd") do
      if line:find("-> pipe:", 1, true) then n = n + 1 end
    end
    return n
  end

  -- 4 MiB each way through a proxy with these hooks: the pipes netproxy holds after it,
  -- beyond those it held before.
  local function carried(from_extra, to_extra)
    local np = h.netproxy_start(hooked("one", echo.port, from_extra, to_extra), { "-v" })
    local before = pipes(np.pid)
    local r = h.client("127.0.0.1", np.ports.one, { "--bytes", "4M", "--half-close" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(4 * 1024 * 1024, r.bytes_recv)
    h.wait_log(np, "one: [^\n]* end=")
    h.wait_log(np, "one: hook saw 4194304 bytes")
    return np, pipes(np.pid) - before
  end

  it("splices server to client while from.hook sees client to server", function()
    local np, spliced = carried(COUNTING, nil)
    assert.truthy(np.log():find("one: relay: client->server hook, server->client splice", 1, true), np.log())
    assert.is_true(spliced > 0, "no pipe: server to client was copied, not spliced")
  end)

  it("splices client to server while to.hook sees server to client", function()
    local np, spliced = carried(nil, COUNTING)
    assert.truthy(np.log():find("one: relay: client->server splice, server->client hook", 1, true), np.log())
    assert.is_true(spliced > 0, "no pipe: client to server was copied, not spliced")
  end)

  it("(with hooks on both directions nothing splices: the pipes tell)", function()
    local np, spliced = carried(COUNTING, "hook = function(d) return d end")
    assert.truthy(np.log():find("one: relay: hook", 1, true), np.log())
    assert.are.equal(0, spliced)
  end)
end)

describe("examples/log-traffic.lua", function()
  after_each(h.stop_all)

  it("dumps the first bytes of each direction at debug level", function()
    local echo = h.peer_server("echo")
    local config = h.read(h.root .. "/examples/log-traffic.lua")
        :gsub("port = 6789", "port = 0"):gsub("port = 9876", "port = " .. echo.port)
    local np = h.netproxy_start(config, { "-vv" })
    talk(np.ports.tap, "GET / HTTP/1.0\r\n\r\n")
    h.wait_log(np, "client%->server 0%+18: 47 45 54 20 2f 20 48 54 54 50 2f 31 2e 30 0d 0a 0d 0a  |GET / HTTP/1%.0%.%.%.%.|")
    h.wait_log(np, "server%->client 0%+18: 47 45 54")
    h.stop(np)
  end)
end)
