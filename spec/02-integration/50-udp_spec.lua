-- UDP proxies: each client address:port is a flow with its own socket toward the server;
-- datagrams go whole and alone; hooks per datagram; udp_idle_timeout and max_flows end
-- flows; a Lua datagram service; IPv6; guards; counters; reload; real dig and dnsmasq.
local h = require "spec.helpers"
local udp = require "spec.support.udp"

local PEER = h.root .. "/spec/support/udp_peer.py"

local echo_server = h.udp_echo_server

-- A config with one udp proxy "u" from 127.0.0.1:0 (or listen) to target_port.
local function udp_config(target_port, extra, opts)
  opts = opts or {}
  return ([[
%s
proxy { name = "u",
        from = { type = "udp", host = %q, port = %d %s },
        to = { type = "udp", host = %q, port = %d %s },
        %s }
]]):format(opts.server or "", opts.listen or "127.0.0.1", opts.port or 0, opts.from or "",
           opts.to_host or "127.0.0.1", target_port, opts.to or "", extra or "")
end

local function python(...)
  local out, err, rc = h.run({ "python3", PEER, ... })
  assert.are.equal(0, rc, err)
  return out, err
end

local function flow_lines(np)
  local n = 0
  for _ in np.log():gmatch("u: udp [^\n]*end=") do n = n + 1 end
  return n
end

describe("a udp proxy", function()
  local echo
  before_each(function() echo = echo_server() end)
  after_each(h.stop_all)

  it("carries 300 datagrams of mixed sizes up to 65,000 bytes each whole and alone", function()
    local np = h.netproxy_start(udp_config(echo.port))
    local out = python("sizes", "127.0.0.1", tostring(np.ports.u), "300", "65000")
    assert.truthy(out:find("ok=300 failed=0", 1, true), out)
    h.stop(np)
    local line = np.log():match("u: udp [^\n]*end=stopped[^\n]*")
    assert.truthy(line, np.log())
    assert.truthy(line:find("datagrams_in=300 datagrams_out=300", 1, true), line)
  end)

  it("makes each client address:port a flow with its own socket toward the server", function()
    local np = h.netproxy_start(udp_config(echo.port))
    local out = python("many", "127.0.0.1", tostring(np.ports.u), "40")
    assert.truthy(out:find("ok=40 distinct=40", 1, true), out)
    -- one client socket is one flow: the same server-side address for each of its datagrams
    local c = udp.new()
    local first = c:ask(np.ports.u, "whoami")
    assert.truthy(first and first:match("^127%.0%.0%.1:%d+$"), first)
    for _ = 1, 5 do assert.are.equal(first, c:ask(np.ports.u, "whoami")) end
    c:close()
  end)

  it("resolves a server name per flow, holding the first datagrams until it has", function()
    h.stop(echo)
    echo = echo_server("::")                 -- both families: localhost may be either
    local np = h.netproxy_start(udp_config(echo.port, nil, { to_host = "localhost" }))
    local c = udp.new()
    for i = 1, 3 do c:send(np.ports.u, "d" .. i) end
    for i = 1, 3 do assert.are.equal("d" .. i, c:recv(3)) end
    c:close()
  end)

  it("serves IPv6 clients and servers", function()
    h.stop(echo)
    echo = echo_server("::1")
    local np = h.netproxy_start(udp_config(echo.port, nil, { listen = "::1", to_host = "::1" }))
    local c = udp.new("::1")
    assert.are.equal("hello over v6", c:ask(np.ports.u, "hello over v6"))
    assert.truthy(c:ask(np.ports.u, "whoami"):match("^%[::1%]:%d+$"))
    c:close()
    h.stop(np)
    assert.truthy(np.log():find("u: udp [::1]:" .. c.port .. " -> [::1]:" .. echo.port, 1, true), np.log())
  end)

  it("ends a flow after udp_idle_timeout: the client's next datagram is a new flow", function()
    local np = h.netproxy_start(udp_config(echo.port, "udp_idle_timeout = 1"))
    local c = udp.new()
    local first = c:ask(np.ports.u, "whoami")
    assert.truthy(first)
    h.wait_log(np, "u: udp [^\n]*end=idle timeout", 5)
    local second = c:ask(np.ports.u, "whoami")
    assert.truthy(second)
    assert.are_not.equal(first, second)
    c:close()
  end)

  it("keeps at most max_flows: the longest idle one goes, counted and logged", function()
    local np = h.netproxy_start(udp_config(echo.port, "max_flows = 2", { server = 'server { stats = "127.0.0.1:0" }' }))
    local a, b, c = udp.new(), udp.new(), udp.new()
    local a1 = a:ask(np.ports.u, "whoami")
    assert.truthy(b:ask(np.ports.u, "whoami"))
    assert.truthy(a:ask(np.ports.u, "whoami"))      -- b is now the longest idle
    assert.truthy(c:ask(np.ports.u, "whoami"))      -- the third flow pushes b out
    h.wait_log(np, "u: udp 127%.0%.0%.1:" .. b.port .. " [^\n]*end=evicted")
    assert.are.equal(a1, a:ask(np.ports.u, "whoami"), "a's flow is still the same")
    assert.truthy(np.log():find("max_flows (2) reached", 1, true))
    local metrics = io.popen("curl -s http://127.0.0.1:" .. np.stats_port .. "/metrics"):read("*a")
    assert.truthy(metrics:find('netproxy_udp_flows_evicted_total{proxy="u"} 1', 1, true), metrics)
    assert.truthy(metrics:find('netproxy_udp_flows_active{proxy="u"} 2', 1, true), metrics)
    assert.truthy(metrics:find('netproxy_udp_flows_opened_total{proxy="u"} 3', 1, true), metrics)
    assert.truthy(metrics:find('netproxy_udp_datagrams_total{proxy="u",direction="in"} 5', 1, true), metrics)
    assert.truthy(metrics:find('netproxy_udp_datagrams_total{proxy="u",direction="out"} 5', 1, true), metrics)
    -- a udp proxy has no connection series (only what it can produce: issue 30)
    assert.falsy(metrics:find('netproxy_connections_opened_total{proxy="u"}', 1, true), metrics)
    a:close(); b:close(); c:close()
  end)

  it("runs a hook per datagram each way: a string replaces it, \"\" drops it", function()
    local np = h.netproxy_start(udp_config(echo.port, nil, {
      from = [[, hook = function(d, conn)
                 conn.stash.n = (conn.stash.n or 0) + 1
                 if d == "drop me" then return "" end
                 if d == "inject" then conn:send("client", "injected " .. conn.stash.n) return "" end
                 if d == "twice" then conn:send("server", "first") end
                 return (d:gsub("ping", "PING"))
               end]],
      to = [[, hook = function(d) return "<" .. d .. ">" end]] }))
    local c = udp.new()
    assert.are.equal("<PING 1>", c:ask(np.ports.u, "ping 1"))
    assert.is_nil(c:ask(np.ports.u, "drop me", 0.5))
    assert.are.equal("injected 3", c:ask(np.ports.u, "inject"))
    assert.are.equal("<PING 4>", c:ask(np.ports.u, "ping 4"))
    c:send(np.ports.u, "twice")                   -- conn:send("server") goes out at once, first
    assert.are.equal("<first>", c:recv())
    assert.are.equal("<twice>", c:recv())
    c:close()
  end)

  it("applies deny and accept(conn) to each new flow", function()
    local blocked = udp.new()
    local np = h.netproxy_start("BLOCKED = " .. blocked.port .. "\n" .. udp_config(echo.port, [[deny = { "127.0.0.2" },
      accept = function(conn) if conn.client:match(":(%d+)$") == tostring(BLOCKED) then return nil, "blocked port" end return true end]]))
    assert.is_nil(blocked:ask(np.ports.u, "hello", 0.5))
    h.wait_log(np, "u: udp 127%.0%.0%.1:" .. blocked.port .. " [^\n]*end=refused: blocked port")
    local ok = udp.new()
    assert.are.equal("hello", ok:ask(np.ports.u, "hello"))
    blocked:close(); ok:close()
  end)

  it("refuses flows from a denied address", function()
    local np = h.netproxy_start(udp_config(echo.port, [[deny = { "127.0.0.1" }]]))
    local c = udp.new()
    assert.is_nil(c:ask(np.ports.u, "hello", 0.5))
    h.wait_log(np, "refused udp 127%.0%.0%.1:" .. c.port .. ": deny 127%.0%.0%.1")
    c:close()
  end)

  it("keeps its socket and its flows across a reload: an old flow runs the old hook", function()
    local function config(port, word)
      return udp_config(echo.port, nil, { port = port, to = ([[, hook = function(d) return %q .. d end]]):format(word) })
    end
    local path = h.write(h.tmpfile("udp-reload.lua"), config(0, "v1:"))
    local np = h.netproxy_start(path)
    local port = np.ports.u   -- the port bound: the reload keeps it
    local old = udp.new()
    assert.are.equal("v1:x", old:ask(port, "x"))
    h.write(path, config(port, "v2:"))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reloaded [^\n]*%(config generation 1%)")
    assert.are.equal("v1:y", old:ask(port, "y"), "the old flow keeps its config")
    local new = udp.new()
    assert.are.equal("v2:z", new:ask(port, "z"))
    old:close(); new:close()
  end)
end)

describe("a udp datagram service", function()
  after_each(h.stop_all)

  it("answers each datagram with what datagram(data, conn) returns; nil answers nothing", function()
    local np = h.netproxy_start([[
proxy { name = "svc", from = { type = "udp", host = "127.0.0.1", port = 0 },
        to = { type = "service", datagram = function(data, conn)
          conn.stash.n = (conn.stash.n or 0) + 1
          if data == "quiet" then return nil end
          if data == "three" then
            conn:send("client", "one")
            conn:send("client", "two")
            return "three"
          end
          return data:upper() .. " #" .. conn.stash.n
        end } }
]])
    local c = udp.new()
    assert.are.equal("HELLO #1", c:ask(np.ports.svc, "hello"))
    assert.is_nil(c:ask(np.ports.svc, "quiet", 0.5))
    c:send(np.ports.svc, "three")
    assert.are.equal("one", c:recv())
    assert.are.equal("two", c:recv())
    assert.are.equal("three", c:recv())
    assert.are.equal("AGAIN #4", c:ask(np.ports.svc, "again"))
    c:close()
    h.stop(np)
    assert.truthy(np.log():find("svc: udp 127.0.0.1:" .. c.port .. " -> service in=", 1, true), np.log())
  end)

  it("ends the flow of a service that raises, and serves the next one", function()
    local np = h.netproxy_start([[
proxy { name = "svc", from = { type = "udp", host = "127.0.0.1", port = 0 },
        to = { type = "service", datagram = function(data) if data == "boom" then error("boom!") end return data end } }
]])
    local c = udp.new()
    assert.is_nil(c:ask(np.ports.svc, "boom", 0.5))
    h.wait_log(np, "svc: udp [^\n]*end=lua error")
    assert.are.equal("fine", c:ask(np.ports.svc, "fine"))
    c:close()
  end)
end)

describe("udp configs", function()
  it("are checked: a udp from wants a udp or datagram-service to", function()
    local path = h.write(h.tmpfile("bad-udp.lua"), [[
proxy { name = "a", from = { type = "udp", port = 1 }, to = { type = "tcp", host = "127.0.0.1", port = 2 } }
proxy { name = "b", from = { type = "tcp", port = 3 }, to = { type = "udp", host = "127.0.0.1", port = 4 } }
proxy { name = "c", from = { type = "udp", port = 5 }, to = { type = "service" } }
proxy { name = "d", from = { type = "udp", port = 6 }, to = { type = "udp", host = "127.0.0.1", port = 7 }, max_flows = 0 }
proxy { name = "e", from = { type = "udp", port = 8, hook_mode = "line", hook = function() end }, to = { type = "udp", host = "127.0.0.1", port = 9 } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("a udp from wants a udp to or a datagram service, not tcp", 1, true), err)
    assert.truthy(err:find("a udp to wants a udp from", 1, true), err)
    assert.truthy(err:find("missing datagram", 1, true), err)
    assert.truthy(err:find("max_flows: want at least 1", 1, true), err)
    assert.truthy(err:find("hook_mode: a udp hook sees whole datagrams", 1, true), err)
  end)
end)

describe("examples/dns.lua, a DNS forwarder", function()
  after_each(h.stop_all)

  -- dnsmasq answering test.example names with 192.0.2.1, on a free port; ready once dig
  -- gets an answer straight from it.
  local function dnsmasq()
    local p = h.dnsmasq({ "--address=/test.example/192.0.2.1" })
    h.wait_until(function()
      local out = h.run({ "dig", "@127.0.0.1", "-p", tostring(p.port), "+short", "+tries=1", "+time=1", "ready.test.example" })
      return out:find("192.0.2.1", 1, true)
    end, 10, "dnsmasq")
    return p
  end

  it("forwards dig's queries from many source ports to dnsmasq and logs each query name", function()
    local dns = dnsmasq()
    local config = h.read(h.root .. "/examples/dns.lua")
        :gsub("port = 5353", "port = 0"):gsub("port = 53 }", "port = " .. dns.port .. " }")
    local np = h.netproxy_start(config, { "-v" })
    for i = 1, 25 do
      local out, err = h.run({ "dig", "@127.0.0.1", "-p", tostring(np.ports.dns), "+short", "+tries=1",
                               "+time=2", "host" .. i .. ".test.example", i % 2 == 0 and "AAAA" or "A" })
      if i % 2 == 1 then assert.are.equal("192.0.2.1\n", out, err) end
    end
    local log = np.log()
    for i = 1, 25 do
      assert.truthy(log:find("dns: query host" .. i .. ".test.example " .. (i % 2 == 0 and "AAAA" or "A") .. " from 127.0.0.1:", 1, true), log)
    end
    h.stop(np)
    -- one flow per client address:port, which answered every query from it. Each dig is a
    -- new process on a new ephemeral port, but the kernel may hand a later dig the port of
    -- an earlier one whose flow is still open: its query then joins that flow.
    local queries = {}
    for port in log:gmatch("dns: query %S+ %u+ from 127%.0%.0%.1:(%d+)") do
      queries[port] = (queries[port] or 0) + 1
    end
    local ports, flows, answered = 0, 0, 0
    for _ in pairs(queries) do ports = ports + 1 end
    for port, n_in, n_out in np.log():gmatch("dns: udp 127%.0%.0%.1:(%d+) %-> 127%.0%.0%.1:%d+ [^\n]*datagrams_in=(%d+) datagrams_out=(%d+)") do
      flows = flows + 1
      assert.are.equal(queries[port], tonumber(n_in), "flow from port " .. port .. "\n" .. np.log())
      assert.are.equal(n_in, n_out, "flow from port " .. port)
      answered = answered + tonumber(n_out)
    end
    assert.are.equal(ports, flows, np.log())
    assert.are.equal(25, answered)
    assert.is_true(ports >= 20, ports .. " source ports")
  end)
end)

describe("examples/udp-echo.lua", function()
  after_each(h.stop_all)

  it("echoes datagrams and counts them per flow", function()
    local config = h.read(h.root .. "/examples/udp-echo.lua"):gsub("port = 7007", "port = 0")
    local np = h.netproxy_start(config)
    local c = udp.new()
    assert.are.equal("hi", c:ask(np.ports["udp-echo"], "hi"))
    assert.are.equal(("x"):rep(60000), c:ask(np.ports["udp-echo"], ("x"):rep(60000)))
    assert.are.equal("3 datagrams from 127.0.0.1:" .. c.port .. "\n", c:ask(np.ports["udp-echo"], "stats"))
    c:close()
  end)
end)
