-- Routed proxies: when nothing of a proxy runs in Lua before the relay (a plain tcp from, a
-- tcp to, no accept, on_close, PROXY protocol, TLS or pool), the C core connects and relays
-- by itself (netproxy.session.route, src/conn.c, src/dial.c); hooks still run in the relay.
-- The connection must look the same from outside as one that runs the session: same bytes,
-- same log lines, same ends, the same conn object for hooks, and a reload may switch a proxy
-- between the two ways. A proxy is made to run the session here by an accept function.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

local function routed(np, name)
  return np.full_log():find("debug %[%d+%] " .. name .. ": routed to ") ~= nil
end

-- One failing client through each of two proxies (a routed one, one running the session);
-- returns the end word and detail of each one's log line, whose target matches target.
local function ends_of(np, routed_name, session_name, target, end_pattern)
  local got = {}
  for i, name in ipairs({ routed_name, session_name }) do
    assert.are.equal(1, h.client("127.0.0.1", np.ports[name], { "--bytes", "1K", "--timeout", "5" }).failed)
    got[i] = h.wait_log(np, name .. ": %S+ %-> " .. target .. " in=0 out=0 time=[%d%.]+s (" .. end_pattern .. "[^\n]*)")
  end
  return got[1], got[2]
end

-- Rewrites the config at path to text, reloads and waits for config generation gen.
local function reload(np, path, text, gen)
  h.write(path, text)
  os.execute("kill -HUP " .. np.pid)
  h.wait_log(np, "reloaded [^\n]*%(config generation " .. gen .. "%)")
end

describe("a routed proxy", function()
  local echo
  before_each(function() echo = h.peer_server("echo") end)
  after_each(h.stop_all)

  -- proxy "p" on port, plain tcp -> tcp to the echo server: what the reload cases switch to
  local function plain_config(port)
    return ([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = %d },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(port, echo.port)
  end

  it("is taken only when nothing but hooks runs in Lua, and serves like the session", function()
    local e = echo.port
    local np = h.netproxy_start(h.tcp_proxy("plain", e) ..
      h.tcp_proxy("hooked", e, "") :gsub('port = 0 }', 'port = 0, hook = function(d) return d end }', 1) ..
      h.tcp_proxy("accepting", e, "accept = function(conn) return true end,") ..
      h.tcp_proxy("pp", e) :gsub('port = ' .. e .. ' }', 'port = ' .. e .. ', proxy_protocol = "v1" }', 1) ..
      ([[proxy { name = "named", from = { type = "tcp", host = "127.0.0.1", port = 0 },
                 to = { type = "tcp", host = "localhost", port = %d } }
]]):format(e), { "-vv" })
    assert.is_true(routed(np, "plain"), np.full_log())
    assert.is_true(routed(np, "named"), "a name is resolved per connection, without Lua")
    assert.is_true(routed(np, "hooked"), "hooks run in the relay")
    for _, name in ipairs({ "accepting", "pp" }) do
      assert.is_false(routed(np, name), name .. " runs the session")
    end
    for _, name in ipairs({ "plain", "hooked", "accepting", "named" }) do
      local r = h.client("127.0.0.1", np.ports[name], { "--bytes", "1M", "--half-close" })
      assert.are.equal(0, r.rc, name .. ": " .. r.err)
    end
    -- the same lines, whichever way: accepted, relay, the end
    h.wait_log(np, "named: 127%.0%.0%.1:%d+ %-> localhost:" .. e .. " in=1048576 out=1048576 time=[%d%.]+s end=eof")
    for _, name in ipairs({ "plain", "hooked" }) do
      h.wait_log(np, name .. ": 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:" .. e .. " in=1048576 out=1048576 time=[%d%.]+s end=eof")
      assert.truthy(np.log():find(name .. ": accepted 127.0.0.1:", 1, true))
      assert.truthy(np.log():find(name .. ": relay: ", 1, true))
    end
    h.stop(np)
  end)

  it("runs hooks in the relay with the conn object the session gives them", function()
    -- the same hooks in a routed proxy (r) and in one that runs the session (s)
    local hooks = [[
      from = { type = "tcp", host = "127.0.0.1", port = 0,
        hook = function(data, conn, eof)
          conn.stash.calls = (conn.stash.calls or 0) + 1
          if eof then return "trailer\n" end
          if data == "send\n" then conn:send("client", "INJECTED\n") return "" end
          if data == "close\n" then conn:close() return "" end
          if data == "boom\n" then error("boom") end
          conn:log("notice", "seen id=%d proxy=%s client=%s server=%s target=%s calls=%d reached=%s",
                   conn.id, conn.proxy, conn.client, conn.server, conn.target, conn.stash.calls, conn.reached)
        end },
      to = { type = "tcp", host = "127.0.0.1", port = ECHO, hook = function(data) return data:upper() end },
    ]]
    hooks = hooks:gsub("ECHO", echo.port)
    -- a hook taking "..." may reach its conn too (one taking data alone gets none made)
    local vararg = ([[proxy { name = "v", from = { type = "tcp", host = "127.0.0.1", port = 0,
      hook = function(...) local data, conn = ... if #data > 0 then conn:log("notice", "vararg saw #%%d", conn.id) end end },
      to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port)
    local np = h.netproxy_start("proxy { name = \"r\", " .. hooks .. " }\n" ..
      "proxy { name = \"s\", accept = function() return true end, " .. hooks .. " }\n" .. vararg, { "-vv" })
    assert.is_true(routed(np, "v"))
    local vc = assert(tcp.connect(np.ports.v))
    assert.are.equal("x\n", vc:exchange("x\n", "x\n"))
    vc:close()
    h.wait_log(np, "#(%d+) v: vararg saw #%1")
    assert.is_true(routed(np, "r"))
    assert.is_false(routed(np, "s"))
    local seen, ends = {}, {}
    for _, name in ipairs({ "r", "s" }) do
      local c = assert(tcp.connect(np.ports[name]))
      assert.are.equal("HI\n", c:exchange("hi\n", "HI\n"))
      assert.are.equal("INJECTED\n", c:exchange("send\n", "INJECTED\n"))
      assert.are.equal("HO\n", c:exchange("ho\n", "HO\n"))
      local line = h.wait_log(np, "(#%d+ " .. name .. ": seen [^\n]*calls=3[^\n]*)")
      local id = line:match("^#(%d+)")
      assert.truthy(line:find(" id=" .. id .. " proxy=" .. name .. " client=127.0.0.1:", 1, true), line)
      seen[name] = line:gsub("^#%d+ %a+: ", ""):gsub("id=%d+", "id=ID"):gsub("client=127%.0%.0%.1:%d+", "client=CLIENT")
                       :gsub("proxy=" .. name, "proxy=NAME"):gsub("reached=[^ ]+", "reached=PORT")
      assert.truthy(line:find("server=127.0.0.1:" .. echo.port .. " target=127.0.0.1:" .. echo.port, 1, true), line)
      assert.truthy(line:find("reached=127.0.0.1:" .. np.ports[name], 1, true), line)
      c:send("close\n")
      assert.are.equal("eof", select(2, c:receive(1, 5)))
      c:close()
      ends[#ends + 1] = h.wait_log(np, name .. ": 127[^\n]* (end=closed: by hook)")
      -- an error in the hook ends its connection only
      c = assert(tcp.connect(np.ports[name]))
      c:send("boom\n")
      assert.are.equal("eof", select(2, c:receive(1, 5)))
      c:close()
      -- (the same hook's line differs: the config holds it twice)
      ends[#ends + 1] = h.wait_log(np, name .. ": 127[^\n]* (end=lua error: [^\n]*boom)"):gsub(":%d+: boom", ": boom")
      -- the EOF call's trailer goes out before the shutdown
      c = assert(tcp.connect(np.ports[name]))
      assert.are.equal("LAST\n", c:exchange("last\n", "LAST\n"))
      assert.is_true(c:shutdown())
      assert.are.same({ "TRAILER\n", "eof" }, { c:receive(100, 5) })
      c:close()
    end
    assert.are.equal(seen.s, seen.r)
    assert.are.same({ ends[3], ends[4] }, { ends[1], ends[2] })
    h.stop(np)
  end)

  it("connects to an IPv6 address", function()
    local echo6 = h.peer_server("echo", nil, "[::1]")
    local np = h.netproxy_start(([[
proxy { name = "six", from = { type = "tcp", host = "::1", port = 0 },
        to = { type = "tcp", host = "::1", port = %d } }
]]):format(echo6.port), { "-vv" })
    assert.is_true(routed(np, "six"))
    local r = h.client("::1", np.ports.six, { "--bytes", "256K", "--conns", "20", "--parallel", "4" })
    assert.are.equal(0, r.rc, r.err)
    h.wait_log(np, "six: %[::1%]:%d+ %-> %[::1%]:" .. echo6.port .. " in=262144 out=262144")
    h.stop(np)
  end)

  it("reaches a unix socket (a path, an abstract name), and fails on a missing one as the session does", function()
    local echo = h.peer_server("echo")
    local path, abstract = h.tmpfile("routed.sock"), "@netproxy-routed-" .. h.pid() .. "-" .. math.random(1e6)
    local missing = h.tmpfile("missing.sock")
    local np = h.netproxy_start(([[
proxy { name = "file", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "unix", path = %q } }
proxy { name = "abstract", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "unix", path = %q } }
proxy { name = "back_file", from = { type = "unix", path = %q }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "back_abstract", from = { type = "unix", path = %q }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "routed_missing", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "unix", path = %q } }
proxy { name = "session_missing", accept = function() return true end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "unix", path = %q } }
]]):format(path, abstract, path, echo.port, abstract, echo.port, missing, missing), { "-vv" })
    for _, name in ipairs({ "file", "abstract", "back_file", "back_abstract", "routed_missing" }) do
      assert.is_true(routed(np, name), name)
    end
    for name, where in pairs({ file = path, abstract = abstract }) do
      local r = h.client("127.0.0.1", np.ports[name], { "--bytes", "1M", "--half-close" })
      assert.are.equal(0, r.rc, name .. ": " .. r.err)
      h.wait_log(np, name .. ": 127%.0%.0%.1:%d+ %-> unix:" .. where:gsub("%p", "%%%0") .. " in=1048576 out=1048576 time=[%d%.]+s end=eof")
    end
    local a, b = ends_of(np, "routed_missing", "session_missing", "unix:" .. missing:gsub("%p", "%%%0"), "end=connect failed: ")
    assert.are.equal(b, a)
    h.stop(np)
  end)

  it("ends as the session would for a name that does not resolve", function()
    -- the same name through a routed proxy and through one that runs the session
    local np = h.netproxy_start(([[
proxy { name = "routed_name", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "no-such-host.invalid", port = 80 } }
proxy { name = "session_name", accept = function() return true end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "no-such-host.invalid", port = 80 } }
]]), { "-vv" })
    assert.is_true(routed(np, "routed_name"))
    assert.is_false(routed(np, "session_name"))
    local a, b = ends_of(np, "routed_name", "session_name", "no%-such%-host%.invalid:80",
                         "end=connect failed: resolve: ")
    assert.are.equal(b, a)
    h.stop(np)
  end)

  it("ends as the session would: refused, connect_timeout, negotiation_timeout", function()
    local hole = h.peer_server("blackhole")
    local np = h.netproxy_start(h.tcp_proxy("refused", h.closed_port()) ..
      h.tcp_proxy("slow_connect", hole.port, "connect_timeout = 1, negotiation_timeout = 5,") ..
      h.tcp_proxy("slow_negotiation", hole.port, "connect_timeout = 5, negotiation_timeout = 1,"), { "-vv" })
    for _, name in ipairs({ "refused", "slow_connect", "slow_negotiation" }) do
      assert.is_true(routed(np, name), name)
    end
    local r = h.client("127.0.0.1", np.ports.refused, { "--bytes", "1K", "--timeout", "5" })
    assert.are.equal(1, r.failed)
    h.wait_log(np, "refused: %S+ %-> 127%.0%.0%.1:%d+ in=0 out=0 time=[%d%.]+s end=connect failed: refused")
    local a = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.slow_connect, "--bytes", "1K", "--timeout", "10" })
    local b = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.slow_negotiation, "--bytes", "1K", "--timeout", "10" })
    local took = h.wait_log(np, "slow_connect: %S+ %-> %S+ in=0 out=0 time=([%d%.]+)s end=connect failed: timeout")
    assert.is_true(h.about(took, 1), "ended after " .. took .. "s")
    took = h.wait_log(np, "slow_negotiation: %S+ %-> %S+ in=0 out=0 time=([%d%.]+)s end=negotiation timeout\n")
    assert.is_true(h.about(took, 1), "ended after " .. took .. "s")
    h.exit_status(a, 10)
    h.exit_status(b, 10)
    h.stop(np)
  end)

  it("keeps a running connection's hooks through a reload that drops them", function()
    local hooked = ([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0,
                             hook = function(d, conn) conn.stash.n = (conn.stash.n or 0) + 1
                                                      return (d:gsub("ping", "PING" .. conn.stash.n)) end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port)
    local path = h.write(h.tmpfile("routed-hooks.lua"), hooked)
    local np = h.netproxy_start(path, { "-vv" })
    local port = np.ports.p
    local plain = plain_config(port)   -- the port bound: the reload keeps it
    assert.is_true(routed(np, "p"))
    local old = assert(tcp.connect(port))
    assert.are.equal("PING1\n", old:exchange("ping\n", "PING1\n"))
    reload(np, path, plain, 1)
    local new = assert(tcp.connect(port))
    assert.are.equal("ping\n", new:exchange("ping\n", "ping\n"), "new connections have no hook")
    assert.are.equal("PING2\n", old:exchange("ping\n", "PING2\n"), "the old one keeps its hook and its conn")
    old:close()
    new:close()
    h.wait_log(np, "config generation 0: drained")
    h.stop(np)
  end)

  it("is switched by a reload to the session and back, the running connection untouched", function()
    local path = h.write(h.tmpfile("routed.lua"), plain_config(0))
    local np = h.netproxy_start(path, { "-vv" })
    local port = np.ports.p
    local plain = plain_config(port)   -- the port bound: the reloads keep it
    local hooked = plain:gsub("(port = " .. port .. ")", '%1, hook = function(d) return (d:gsub("ping", "PING")) end', 1)
                        :gsub('name = "p",', 'name = "p", accept = function() return true end,', 1)
    local old = assert(tcp.connect(port))
    assert.are.equal("ping\n", old:exchange("ping\n", "ping\n"))
    reload(np, path, hooked, 1)
    local new = assert(tcp.connect(port))
    assert.are.equal("PING\n", new:exchange("ping\n", "PING\n"), "a new connection runs the session and its hook")
    assert.are.equal("ping\n", old:exchange("ping\n", "ping\n"), "the routed one goes on as it was")
    new:close()
    reload(np, path, plain, 2)
    new = assert(tcp.connect(port))
    assert.are.equal("ping\n", new:exchange("ping\n", "ping\n"), "routed again")
    assert.are.equal("ping\n", old:exchange("ping\n", "ping\n"))
    old:close()
    new:close()
    h.wait_log(np, "config generation 0: drained")
    h.stop(np)
  end)
end)
