-- Net::Server's options, end to end: several listen addresses for one proxy, host = "*",
-- service names, the listen backlog, syslog ident and facility, --set KEY=VALUE.
-- run-tests: alone (the syslog spec serves /dev/log itself: two builds at once would share it)
local h = require "spec.helpers"

-- Every "name: listening on ADDR" of a netproxy log, as { { host, port }, ... }.
local function listening(log, name)
  local out = {}
  for who, host, port in log:gmatch("notice %[%d+%] ([^\n]-): listening on (%S+):(%d+)") do
    if who == name then out[#out + 1] = { host = host:gsub("^%[(.*)%]$", "%1"), port = tonumber(port) } end
  end
  return out
end

local function echo_through(host, port)
  local r = h.client(host, port, { "--bytes", "256K" })
  assert.are.equal(0, r.rc, r.err)
  assert.are.equal(256 * 1024, r.bytes_recv)
end

local NEEDS_LISTS = "the C core binds every entry of proxy.listen"

describe("Net::Server options", function()
  teardown(h.stop_all)

  it("listens on several addresses for one proxy: port = { ... } and \"host:port\" entries", function()
    local echo = h.peer_server("echo")
    local np = h.netproxy_start(([[
proxy { name = "multi", from = { type = "tcp", host = "127.0.0.1", port = { 0, "[::1]:0" } },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local addrs = listening(np.log(), "multi")
    assert.are.equal(2, #addrs, NEEDS_LISTS .. "\n" .. np.log())
    assert.are.same({ "127.0.0.1", "::1" }, { addrs[1].host, addrs[2].host })
    for _, a in ipairs(addrs) do echo_through(a.host, a.port) end
    h.stop(np)
    h.stop(echo)
  end)

  it("listens on every address with host = \"*\" (IPv4 and IPv6)", function()
    local echo = h.peer_server("echo")
    local np = h.netproxy_start(([[
proxy { name = "star", from = { type = "tcp", host = "*", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local addrs = listening(np.log(), "star")
    local hosts = {}
    for _, a in ipairs(addrs) do hosts[a.host] = a.port end
    assert.truthy(hosts["0.0.0.0"], np.log())
    assert.truthy(hosts["::"], NEEDS_LISTS .. "\n" .. np.log())
    echo_through("127.0.0.1", hosts["0.0.0.0"])
    echo_through("::1", hosts["::"])
    h.stop(np)
    h.stop(echo)
  end)

  it("takes a service name for a port (from /etc/services)", function()
    -- a tcp service of /etc/services whose port is free on this machine just now
    local name, port
    for line in io.lines("/etc/services") do
      local n, p = line:match("^([%w%-]+)%s+(%d+)/tcp")
      p = tonumber(p)
      if n and p > 20000 and p < 61000 and not h.port_open(p) then name, port = n, p break end
    end
    assert.truthy(name, "no free high service port in /etc/services")
    local echo = h.peer_server("echo")
    local np = h.netproxy_start(([[
proxy { name = "named", from = { type = "tcp", host = "127.0.0.1", port = %q },
        to = { type = "tcp", host = "127.0.0.1", port = "%d" } }
]]):format(name, echo.port))
    assert.are.equal(port, np.ports.named, np.log())
    echo_through("127.0.0.1", port)
    h.stop(np)
    h.stop(echo)
  end)

  it("sets the listen backlog (per proxy, over server{})", function()
    local np = h.netproxy_start([[
server { backlog = 100 }
proxy { name = "b", backlog = 17, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]])
    -- ss shows a listening socket's backlog as its Send-Q
    local out = h.run({ "ss", "-ltnH", "sport = :" .. np.ports.b })
    local sendq = tonumber(out:match("^%S+%s+%d+%s+(%d+)"))
    assert.are.equal(17, sendq, "the C core applies each entry's backlog\n" .. out)
    h.stop(np)
  end)

  it("passes --set KEY=VALUE over server{}: max_clients, stats", function()
    local echo = h.peer_server("echo")
    local config = h.write(h.tmpfile("set.lua"), ([[
server { max_clients = 5 }
proxy { name = "lim", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local np = h.netproxy_start(config, { "-v", "--set", "max_clients=1", "--set", "stats=127.0.0.1:0" })
    local holder = assert(h.connect(np.ports.lim))   -- the one client allowed, held open
    holder:send("hold\n")
    assert.are.equal("hold\n", (holder:read("\n", 5)))
    h.wait_log(np, "lim: relay: ")
    h.talk(np.ports.lim, "hi\n")
    h.wait_log(np, "lim: refused [^\n]*max_clients %(server%)")
    local body, err, rc = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
    assert.are.equal(0, rc, err)
    assert.truthy(body:find('netproxy_connections_refused_total{proxy="lim"} 1', 1, true), body)
    holder:close()
    h.stop(np)
    h.stop(echo)
  end)
end)

describe("syslog ident and facility", function()
  teardown(h.stop_all)
  local root = io.popen("id -u"):read("*l") == "0"

  -- the default options tag each line with the pid; syslog_logopt = "ndelay" leaves it out
  for _, case in ipairs({ { "", "%[" }, { ', syslog_logopt = "ndelay"', ": " } }) do
    local logopt, tag = case[1], case[2]
    it("tag each line with syslog_ident and send it with syslog_facility" .. (logopt ~= "" and " and syslog_logopt" or ""), function()
      if not root then return pending("not root: the spec serves /dev/log itself") end
      local own_dev_log = os.execute("test -e /dev/log") ~= 0
      local sock = own_dev_log and "/dev/log" or (h.tmp() .. "/log.sock")
      -- the receiving end of syslog(3): datagrams on a unix socket
      local receiver = h.spawn({ "socat", "-u", "UNIX-RECV:" .. sock .. ",mode=666", "-" })
      h.wait_until(function() return os.execute("test -S " .. h.quote(sock)) == 0 end, 5, "the syslog socket")
      local echo = h.peer_server("echo")
      local config = h.write(h.tmpfile("syslog.lua"), ([[
  server { log_file = "syslog", syslog_ident = "edge-np", syslog_facility = "local3"%s }
  proxy { name = "sl", from = { type = "tcp", host = "127.0.0.1", port = 0 },
          to = { type = "tcp", host = "127.0.0.1", port = %d } }
  ]]):format(logopt, echo.port))
      local argv = { h.netproxy, "-w", "1", config }
      if not own_dev_log then       -- a syslog daemon owns /dev/log: ours, in a mount namespace
        argv = { "unshare", "-m", "sh", "-c", 'mount --bind "$0" /dev/log && exec "$@"', sock, h.netproxy, "-w", "1", config }
      end
      local np = h.spawn(argv)
      local function got() return h.read(receiver.out) or "" end
      -- syslog takes over once the listeners are bound (start-up errors reach the terminal):
      -- the listening line is on stderr, the ready line on syslog
      local port = tonumber(h.wait_until(function() return (h.read(np.err) or ""):match("sl: listening on 127%.0%.0%.1:(%d+)") end, 10, "the listening line"))
      h.wait_until(function() return got():find("netproxy [^<]* running 1 proxy") end, 10, "the running line in syslog")
      -- local3 (19) * 8 + notice (5) = 157; the ident and the pid tag the line
      local tagged = tag == "%[" and "%[" .. np.pid .. "%]: " or ": "
      assert.truthy(got():find("<157>[^<]*edge%-np" .. tagged .. "netproxy [^<]* running 1 proxy"), got())
      echo_through("127.0.0.1", port)
      h.wait_until(function() return got():find("<157>[^<]*edge%-np" .. tagged .. "#1 sl: [^<]*end=eof") end, 10, "the connection's line")
      h.stop(np)
      h.stop(echo)
      h.stop(receiver)
      if own_dev_log then os.remove("/dev/log") end
    end)
  end

  it("refuses a syslog_logopt word openlog does not have", function()
    local path = h.write(h.tmpfile("logopt.lua"), 'server { log_file = "syslog", syslog_logopt = "pid|loud" }\n' ..
      'proxy { from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 } }\n')
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("syslog_logopt: bad syslog_logopt 'pid|loud' (want pid, cons, ndelay, nowait or perror, joined by |)", 1, true), err)
  end)
end)
