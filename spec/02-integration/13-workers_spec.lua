-- The process model: a master and 2 workers. Load spreads over both; SIGHUP under a
-- continuous stream of connections and a long transfer loses nothing and new connections
-- run the new hook; a broken config keeps the old one serving; a killed worker is replaced;
-- SIGTERM lets live connections finish; metrics add up over the workers.
local h = require "spec.helpers"

-- The config with the marker hook saying `word`, proxies on the given ports (0 at first: the
-- ports are read back, then written into the file so that a reload keeps them).
local function config(echo_port, word, ports)
  ports = ports or {}
  return ([[
server { workers = 2, stats = "127.0.0.1:0" }
proxy { name = "bulk", from = { type = "tcp", host = "127.0.0.1", port = %d },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "marker", from = { type = "tcp", host = "127.0.0.1", port = %d,
                                  hook = function(d) return (d:gsub("ping", %q)) end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(ports.bulk or 0, echo_port, ports.marker or 0, word, echo_port)
end

local function workers_of(pid)
  local list = {}
  for line in h.lines("pgrep -P " .. pid) do list[#list + 1] = tonumber(line) end
  return list
end

local function ping(port)
  return (h.talk(port, "ping\n"))
end

-- Waits until n more connections of proxy name have been accepted (the log is at -v).
local function accepted(np, name, n)
  local _, before = np.log():gsub(name .. ": accepted", "")
  return function()
    h.wait_until(function()
      local _, now = np.log():gsub(name .. ": accepted", "")
      return now >= before + n
    end, 20, n .. " connections to " .. name)
  end
end

describe("workers", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  -- A master with 2 workers on config(word); the file is then rewritten with the ports bound.
  local function start(word)
    local path = h.write(h.tmpfile("workers.lua"), config(echo.port, word or "v1"))
    local np = h.netproxy_start(path, { "-w", "2", "-v" })
    h.wait_workers(np.pid, 2)
    np.path = path
    h.write(path, config(echo.port, word or "v1", np.ports))
    return np
  end

  it("spreads the load over both workers", function()
    local np = start()
    local r = h.client("127.0.0.1", np.ports.bulk, { "--conns", "400", "--parallel", "16", "--bytes", "1K" })
    assert.are.equal(0, r.rc, r.err)
    local per = {}
    for pid in np.log():gmatch("info %[(%d+)%] #%d+ bulk: accepted") do per[pid] = (per[pid] or 0) + 1 end
    local served = 0
    for _, n in pairs(per) do
      served = served + 1
      assert.is_true(n >= 20, "a worker served only " .. n .. " of 400")   -- both serve (the split is the kernel's)
    end
    assert.are.equal(2, served)
  end)

  it("reloads on SIGHUP without failing a connection; new connections run the new hook", function()
    local np = start("v1")
    assert.are.equal("v1\n", ping(np.ports.marker))
    -- a connection opened before the reload and used after it, and connections opened back to
    -- back all through it
    local long = assert(h.connect(np.ports.bulk))
    long:send("before\n")
    assert.are.same({ "before\n", "want" }, { long:read(7) })
    local under_way = accepted(np, "bulk", 10)
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.bulk, "--conns", "4000", "--parallel", "8",
                             "--bytes", "512", "--timeout", "60" })
    under_way()
    h.write(np.path, config(echo.port, "v2", np.ports))
    os.execute("kill -HUP " .. np.pid)
    h.wait_reloaded(np, 1)
    assert.is_nil(h.read(stream.rcfile), "the stream of connections was over before the reload")
    assert.are.equal("v2\n", ping(np.ports.marker))
    assert.are.equal(0, h.exit_status(stream, 60), h.read(stream.err))
    assert.truthy(h.read(stream.out):find("ok=4000 failed=0", 1, true))
    long:send("after\n")
    long:shutdown()
    assert.are.same({ "before\nafter\n", "eof" }, { long:read() })
  end)

  it("keeps serving with the running config when the new one is broken", function()
    local np = start("v1")
    h.write(np.path, "proxy { this is not lua\n")
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reload failed %(the problems are above%): still running the previous config")
    assert.truthy(np.log():find(np.path .. ":1:", 1, true), "the error with its file and line")
    assert.are.equal("v1\n", ping(np.ports.marker))
  end)

  it("replaces a worker that dies, and only that one's connections are lost", function()
    local np = start()
    local before = workers_of(np.pid)
    os.execute("kill -9 " .. before[1])
    h.wait_log(np, "master: worker " .. before[1] .. " killed by signal 9: replacing it")
    h.wait_until(function()
      local now = workers_of(np.pid)
      return #now == 2 and now[1] ~= before[1] and now[2] ~= before[1]
    end, 5, "a replacement worker")
    local r = h.client("127.0.0.1", np.ports.bulk, { "--conns", "50", "--parallel", "10", "--bytes", "1K" })
    assert.are.equal(0, r.rc, r.err)
  end)

  it("sums every worker's counters at /metrics, a dead worker's included", function()
    local np = start()
    assert.are.equal(0, h.client("127.0.0.1", np.ports.bulk, { "--conns", "100", "--parallel", "10", "--bytes", "1K" }).rc)
    local before = workers_of(np.pid)
    os.execute("kill -9 " .. before[1])
    h.wait_until(function()
      local now = workers_of(np.pid)
      return #now == 2 and now[1] ~= before[1] and now[2] ~= before[1]
    end, 5, "a replacement worker")
    assert.are.equal(0, h.client("127.0.0.1", np.ports.bulk, { "--conns", "50", "--parallel", "10", "--bytes", "1K" }).rc)
    local body = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
    local opened = tonumber(body:match('netproxy_connections_opened_total{proxy="bulk"} (%d+)'))
    assert.are.equal(150, opened, body)
  end)

  it("stops on SIGTERM after live connections finish, and exits 0", function()
    local np = start()
    local live = assert(h.connect(np.ports.bulk))
    live:send("first\n")
    assert.are.same({ "first\n", "want" }, { live:read(6) })
    os.execute("kill -TERM " .. np.pid)
    h.wait_log(np, "master: signal 15: stopping 2 workers")
    h.wait_log(np, "signal 15: no new connections; waiting for 1 to finish")   -- the live one's worker
    live:send("last\n")
    live:shutdown()
    assert.are.same({ "first\nlast\n", "eof" }, { live:read() })
    assert.are.equal(0, h.exit_status(np, 10))
    assert.truthy(np.log():find("master: stopped", 1, true))
  end)
end)

describe("workers with reuseport", function()
  after_each(h.stop_all)

  it("gives each worker its own socket, spreads the load, and reloads without a failure", function()
    local echo = h.peer_server("echo")
    local text = [[
server { workers = 2, reuseport = true }
proxy { name = "rp", from = { type = "tcp", host = "127.0.0.1", port = %d }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]
    -- A port given, not 0: with port 0, src/listener.c binds the second worker's socket to the
    -- configured address (port 0 again: a port of its own) instead of the one bound. Tried on
    -- free ports until one is had (on_free_port).
    local path = h.tmpfile("reuseport.lua")
    local np = h.on_free_port("netproxy with reuseport", function(port)
      h.write(path, text:format(port, echo.port))
      return h.netproxy_start(path, { "-w", "2", "-v" })
    end)
    local port = np.ports.rp
    h.wait_workers(np.pid, 2)
    -- the master holds a listening socket per worker (the same address twice)
    local listening = tonumber(h.lines(("ss -ltnH 'sport = :%d' 2>/dev/null | wc -l"):format(port))())
    assert.is_true(listening >= 2, listening .. " listening sockets")
    local r = h.client("127.0.0.1", port, { "--conns", "400", "--parallel", "16", "--bytes", "1K" })
    assert.are.equal(0, r.rc, r.err)
    local per, served = {}, 0
    for pid in np.log():gmatch("info %[(%d+)%] #%d+ rp: accepted") do per[pid] = (per[pid] or 0) + 1 end
    for _, n in pairs(per) do
      served = served + 1
      assert.is_true(n >= 20, "a worker served only " .. n .. " of 400")   -- both serve (the split is the kernel's)
    end
    assert.are.equal(2, served)
    local under_way = accepted(np, "rp", 10)
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. port, "--conns", "3000", "--parallel", "8",
                             "--bytes", "512", "--timeout", "60" })
    under_way()
    os.execute("kill -HUP " .. np.pid)
    h.wait_reloaded(np, 1)
    assert.is_nil(h.read(stream.rcfile), "the stream of connections was over before the reload")
    assert.are.equal(0, h.exit_status(stream, 60), h.read(stream.err))
    assert.truthy(h.read(stream.out):find("ok=3000 failed=0", 1, true))
  end)
end)
