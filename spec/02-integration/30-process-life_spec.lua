-- Process life: SIGHUP reloads in a single process too, and a reload never cuts a
-- connection (old ones finish on the old code, however long they live, unless
-- drain_timeout bounds them); reload errors reach the configured log; SIGTERM's
-- stop_timeout closes what is left with a log line; max_draining bounds old generations;
-- the watchdog replaces a stuck worker; inetd style applies the guards; -m counts refusals.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

-- A proxy "marker" whose from-hook turns "ping" into word, in front of an echo server.
-- A reload keeps a listener by its address: a fixed port (port 0 would be a new one).
local function marker_config(echo_port, word, extra, port)
  return ([[
server { %s }
proxy { name = "marker",
        from = { type = "tcp", host = "127.0.0.1", port = %d,
                 hook = function(d) return (d:gsub("ping", %q)) end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(extra or "", port or 0, word, echo_port)
end

local function ping(port, timeout)
  local c = tcp.connect(port)
  if not c then return nil end
  local got = c:exchange("ping\n", "v1\n", timeout)
  c:close()
  return got
end

local function reload(np, generation)
  os.execute("kill -HUP " .. np.pid)
  return h.wait_log(np, "reloaded [^\n]*%(config generation " .. generation .. "%)")
end

describe("reload in a single process (-w 1)", function()
  local echo
  before_each(function() echo = h.peer_server("echo") end)
  after_each(h.stop_all)

  it("reloads on SIGHUP under a loop of clients: none fails, new ones get the new hook, an old one the old", function()
    local path = h.write(h.tmpfile("single.lua"), marker_config(echo.port, "v1"))
    local np = h.netproxy_start(path, { "-v" })
    local port = np.ports.marker   -- written into the config: the reload keeps it
    local old = assert(tcp.connect(port))
    assert.are.equal("v1\n", old:exchange("ping\n", "v1\n"))
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. port, "--conns", "3000",
                             "--parallel", "8", "--bytes", "512", "--timeout", "60" })
    h.wait_log(np, "accepted") -- the stream is running
    h.write(path, marker_config(echo.port, "v2", nil, port))
    reload(np, 1)
    assert.are.equal("v2\n", ping(port))
    assert.are.equal("v1\n", old:exchange("ping\n", "v1\n"), "the old connection runs the old hook")
    assert.are.equal(0, h.exit_status(stream, 60), h.read(stream.err))
    assert.truthy(h.read(stream.out):find("ok=3000 failed=0", 1, true), h.read(stream.out))
    assert.is_true(h.alive(np.pid))
    old:close()
    h.wait_log(np, "config generation 0: drained")
    assert.are.equal("v2\n", ping(port))
  end)

  it("keeps the running config when the new one is broken, and says why in the --log-file", function()
    local path = h.write(h.tmpfile("broken.lua"), marker_config(echo.port, "v1"))
    local logfile = h.tmpfile("netproxy.log")
    local np = h.spawn({ h.netproxy, "-w", "1", "--log-file", logfile, path })
    local port = tonumber(h.wait_until(function()
      return (h.read(logfile) or ""):match("marker: listening on 127%.0%.0%.1:(%d+)")
    end, 10, "netproxy to listen"))
    h.write(path, "proxy { name = 'x',\n  this is not lua\n")
    os.execute("kill -HUP " .. np.pid)
    h.wait_until(function() return (h.read(logfile) or ""):find("reload failed", 1, true) end, 10, "the reload error in the log file")
    local log = h.read(logfile)
    assert.truthy(log:find(path .. ":2:", 1, true), log)
    assert.are.equal("v1\n", ping(port))
  end)

  it("cuts connections at drain_timeout with end=drained", function()
    local path = h.write(h.tmpfile("drain.lua"), marker_config(echo.port, "v1", "drain_timeout = 1"))
    local np = h.netproxy_start(path)
    local old = assert(tcp.connect(np.ports.marker))
    assert.are.equal("v1\n", old:exchange("ping\n", "v1\n"))
    reload(np, 1)
    h.wait_log(np, "marker: [^\n]* end=drained: drain_timeout", 5)
    local _, why = old:receive(1, 5)
    assert.are.equal("eof", why)
    old:close()
  end)

  it("bounds the generations still draining (max_draining): the oldest is closed", function()
    local path = h.write(h.tmpfile("max.lua"), marker_config(echo.port, "v1", "max_draining = 2"))
    local np = h.netproxy_start(path)
    local port = np.ports.marker
    h.write(path, marker_config(echo.port, "v1", "max_draining = 2", port))   -- the reloads keep it
    local conns = {}
    for generation = 1, 3 do
      conns[generation] = assert(tcp.connect(port))
      assert.are.equal("v1\n", conns[generation]:exchange("ping\n", "v1\n"))
      reload(np, generation)
    end
    -- generations 0, 1 and 2 hold a connection each: 3 draining, 2 allowed
    h.wait_log(np, "config generation 0: 3 generations draining %(max_draining 2%)")
    h.wait_log(np, "end=drained: max_draining")
    local _, why = conns[1]:receive(1, 5)
    assert.are.equal("eof", why)
    assert.are.equal("v1\n", conns[2]:exchange("ping\n", "v1\n"))
    assert.are.equal("v1\n", conns[3]:exchange("ping\n", "v1\n"))
    for _, c in ipairs(conns) do c:close() end
  end)

  it("closes what is left at stop_timeout with end=stopped, and exits 0", function()
    local path = h.write(h.tmpfile("stop.lua"), marker_config(echo.port, "v1", "stop_timeout = 1"))
    local np = h.netproxy_start(path)
    local c = assert(tcp.connect(np.ports.marker))
    assert.are.equal("v1\n", c:exchange("ping\n", "v1\n"))
    os.execute("kill -TERM " .. np.pid)
    assert.are.equal(0, h.exit_status(np, 10))
    assert.truthy(np.log():find("marker: [^\n]* end=stopped: stop_timeout"), np.log())
    c:close()
  end)
end)

describe("reload with workers", function()
  after_each(h.stop_all)

  it("a connection held 15 s across a reload still echoes", function()
    local echo = h.peer_server("echo")
    local path = h.write(h.tmpfile("held.lua"), marker_config(echo.port, "v1", "workers = 2"))
    local np = h.netproxy_start(path, { "-w", "2" })
    local port = np.ports.marker   -- written into the config: the reload keeps it
    local c = assert(tcp.connect(port))
    assert.are.equal("v1\n", c:exchange("ping\n", "v1\n"))
    h.write(path, marker_config(echo.port, "v2", "workers = 2", port))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "master: generation 1 started")
    h.sleep(15)   -- the behaviour under test: time passing (the old fixed drain cut at 10 s)
    assert.are.equal("v1\n", c:exchange("ping\n", "v1\n"), "the old connection still runs")
    c:close()
  end)

  it("replaces a worker stuck in a C call within the watchdog, and the other serves meanwhile", function()
    local echo = h.peer_server("echo")
    local path = h.write(h.tmpfile("stuck.lua"), [[
local ffi = require "ffi"
ffi.cdef "unsigned int sleep(unsigned int seconds);"
server { workers = 2, watchdog = 2 }
proxy { name = "stuck",
        from = { type = "tcp", host = "127.0.0.1", port = 0,
                 hook = function(d) if d:find("block", 1, true) then ffi.C.sleep(60) end return d end },
        to = { type = "tcp", host = "127.0.0.1", port = ]] .. echo.port .. [[ } }
]])
    local np = h.netproxy_start(path, { "-w", "2" })
    local blocker = assert(tcp.connect(np.ports.stuck))
    blocker:send("block\n")
    local pid = h.wait_log(np, "master: worker (%d+): its loop has not turned for [%d.]+s %(watchdog 2s%)", 10)
    h.wait_log(np, "master: worker " .. pid .. " killed by signal 9: replacing it", 5)
    for i = 1, 20 do
      local c = assert(tcp.connect(np.ports.stuck))
      assert.are.equal("hello " .. i .. "\n", c:exchange("hello " .. i .. "\n", nil, 5))
      c:close()
    end
    blocker:close()
  end)
end)

describe("inetd style and -m", function()
  local configs = {}
  after_each(function()
    h.stop_all()
    -- the netproxy processes socat started are not ours by PID: by their config's path
    for _, path in ipairs(configs) do os.execute("pkill -f " .. h.quote(path)) end
  end)

  -- socat accepts and execs netproxy with the TCP socket itself on standard input/output.
  local function inetd(config)
    local path = h.write(h.tmpfile("inetd.lua"), config)
    configs[#configs + 1] = path
    local p = h.on_free_port("socat", function(port)
      return h.spawn({ "socat", "TCP-LISTEN:" .. port .. ",bind=127.0.0.1,reuseaddr,fork",
                       "EXEC:" .. h.netproxy .. " -v " .. path .. ",nofork" })
    end)
    return p, p.port
  end

  it("refuses a denied client address without contacting the backend", function()
    local contacted = h.tmpfile("contacted")
    -- (on_free_port sees it listen in the socket table: no connection, no contact)
    local backend_port = h.on_free_port("the backend", function(port)
      return h.spawn({ "socat", "TCP-LISTEN:" .. port .. ",bind=127.0.0.1,reuseaddr,fork",
                       "SYSTEM:echo contacted >> " .. contacted })
    end).port
    local p, port = inetd(([[
proxy { name = "inetd", from = { type = "stdio" }, deny = { "127.0.0.0/8" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(backend_port))
    local c = assert(tcp.connect(port))
    local got, why = c:receive(1, 5)
    assert.are.equal("", got)
    assert.are.equal("eof", why)
    c:close()
    h.wait_until(function() return (h.read(p.err) or ""):find("inetd: refused 127%.0%.0%.1:%d+: deny") end, 5,
                 "the refusal, naming the client's address")
    assert.is_nil(h.read(contacted), "the backend was contacted")
  end)

  it("gives an allowed client its address in the log and serves it", function()
    local echo = h.peer_server("echo")
    local p, port = inetd(([[
proxy { name = "inetd", from = { type = "stdio" }, allow = { "127.0.0.1" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local c = assert(tcp.connect(port))
    assert.are.equal("over inetd\n", c:exchange("over inetd\n"))
    c:close()
    h.wait_until(function() return (h.read(p.err) or ""):find("inetd: 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:%d+ in=11 out=11") end,
                 5, "the log line with the client's address")
  end)

  it("-m 3 exits after 3 clients that were all refused", function()
    local np = h.netproxy_start([[
proxy { name = "nobody", from = { type = "tcp", host = "127.0.0.1", port = 0 }, deny = { "127.0.0.1" },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]], { "-m", "3" })
    for _ = 1, 3 do
      local c = tcp.connect(np.ports.nobody)
      if c then c:receive(1, 5); c:close() end
    end
    assert.are.equal(0, h.exit_status(np, 10), np.log())
  end)
end)

describe("stdio", function()
  after_each(h.stop_all)

  it("ends on SIGHUP, the hangup ssh sends its ProxyCommand, with a log line", function()
    local echo = h.peer_server("echo")
    local np = h.spawn({ "sh", "-c", ("sleep 30 | exec %s -v -v 127.0.0.1 %d"):format(h.netproxy, echo.port) })
    local pid
    h.wait_until(function()
      pid = tonumber(io.popen("pgrep -f '^" .. h.netproxy .. " -v -v 127.0.0.1 " .. echo.port .. "'"):read("*l") or "")
      return pid and (h.read(np.err) or ""):find("relay:")
    end, 10, "the stdio relay")
    os.execute("kill -HUP " .. pid)
    h.wait_until(function() return not h.alive(pid) end, 5, "netproxy to exit")
    assert.truthy(h.read(np.err):find("end=closed: hangup %(SIGHUP%)"), h.read(np.err))
  end)
end)

describe("binary upgrade (SIGUSR2)", function()
  after_each(h.stop_all)

  it("runs the binary again under a loop of clients: none fails, an old connection still works", function()
    local echo = h.peer_server("echo")
    local path = h.write(h.tmpfile("upgrade.lua"), marker_config(echo.port, "v1", "workers = 2"))
    local np = h.netproxy_start(path, { "-w", "2" })
    local port = np.ports.marker
    h.write(path, marker_config(echo.port, "v1", "workers = 2", port))   -- the new binary reads it
    local before = {}
    h.wait_until(function()
      before = {}
      for line in io.popen("pgrep -P " .. np.pid):lines() do before[#before + 1] = tonumber(line) end
      return #before == 2
    end, 5, "2 workers")
    local old = assert(tcp.connect(port))
    assert.are.equal("v1\n", old:exchange("ping\n", "v1\n"))
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. port, "--conns", "3000",
                             "--parallel", "8", "--bytes", "512", "--timeout", "60" })
    os.execute("kill -USR2 " .. np.pid)
    h.wait_log(np, "upgrade: running " .. h.netproxy:gsub("%p", "%%%0") .. " again with %d+ listening sockets")
    h.wait_log(np, "master: upgraded: netproxy [^\n]* with 2 workers of the previous binary to drain")
    assert.is_true(h.alive(np.pid), "the same process runs on")
    assert.are.equal(h.netproxy, io.popen("readlink /proc/" .. np.pid .. "/exe"):read("*l"))
    assert.are.equal("v1\n", ping(port))
    assert.are.equal("v1\n", old:exchange("ping\n", "v1\n"), "the old connection, on an old worker, still works")
    assert.are.equal(0, h.exit_status(stream, 60), h.read(stream.err))
    assert.truthy(h.read(stream.out):find("ok=3000 failed=0", 1, true), h.read(stream.out))
    old:close()
    h.wait_until(function()
      for _, pid in ipairs(before) do if h.alive(pid) then return false end end
      return true
    end, 10, "the old workers to finish")
  end)

  it("keeps running the old binary when the new one refuses the config, and says why", function()
    local echo = h.peer_server("echo")
    local path = h.write(h.tmpfile("upgrade-broken.lua"), marker_config(echo.port, "v1", "workers = 2"))
    local np = h.netproxy_start(path, { "-w", "2" })
    local port = np.ports.marker
    h.write(path, "proxy { name = 'x',\n  this is not lua\n")
    os.execute("kill -USR2 " .. np.pid)
    h.wait_log(np, "the new binary refused the config %(status 1%): still running this one")
    assert.truthy(np.log():find("upgrade: " .. path .. ":2:", 1, true), np.log())
    assert.are.equal("v1\n", ping(port))
  end)
end)
