-- The process model: a master and 2 workers. Load spreads over both; SIGHUP under a
-- continuous stream of connections and a long transfer loses nothing and new connections
-- run the new hook; a broken config keeps the old one serving; a killed worker is replaced;
-- SIGTERM lets live connections finish; metrics add up over the workers.
local h = require "spec.helpers"

local function config(echo_port, word, stats)
  return ([[
server { workers = 2, stats = "127.0.0.1:%d" }
proxy { name = "bulk", from = { type = "tcp", host = "127.0.0.1", port = %%d },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "marker", from = { type = "tcp", host = "127.0.0.1", port = %%d,
                                  hook = function(d) return (d:gsub("ping", %q)) end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(stats, echo_port, word, echo_port)
end

local function workers_of(pid)
  local list = {}
  for line in io.popen("pgrep -P " .. pid):lines() do list[#list + 1] = tonumber(line) end
  return list
end

local function ping(port)
  return (h.run({ "sh", "-c", "(echo ping; sleep 0.2) | socat -t 1 - TCP:127.0.0.1:" .. port }))
end

describe("workers", function()
  local echo, np, path, stats, bulk, marker

  setup(function()
    echo = h.peer_server("echo")
    stats, bulk, marker = h.free_port(), h.free_port(), h.free_port()
    path = h.write(h.tmpfile("workers.lua"), config(echo.port, "v1", stats):format(bulk, marker))
    np = h.netproxy_start(path, { "-w", "2", "-v" })
    h.wait_until(function() return #workers_of(np.pid) == 2 end, 5, "2 workers")
  end)
  teardown(h.stop_all)

  it("spreads the load over both workers", function()
    local r = h.client("127.0.0.1", bulk, { "--conns", "400", "--parallel", "16", "--bytes", "1K" })
    assert.are.equal(0, r.rc, r.err)
    local per = {}
    for pid in np.log():gmatch("info %[(%d+)%] #%d+ bulk: accepted") do per[pid] = (per[pid] or 0) + 1 end
    local served = 0
    for _, n in pairs(per) do
      served = served + 1
      assert.is_true(n >= 40, "a worker served only " .. n .. " of 400")
    end
    assert.are.equal(2, served)
  end)

  it("reloads on SIGHUP without failing a connection; new connections run the new hook", function()
    assert.are.equal("v1\n", ping(marker))
    -- a long transfer, and connections opened back to back, both across the reload
    local long = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. bulk, "--bytes", "1G", "--half-close", "--timeout", "60" })
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. bulk, "--conns", "4000", "--parallel", "8",
                             "--bytes", "512", "--timeout", "60" })
    h.sleep(0.3)
    h.write(path, config(echo.port, "v2", stats):format(bulk, marker))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "master: generation 1 started")
    assert.are.equal("v2\n", ping(marker))
    assert.are.equal(0, h.exit_status(stream, 60), h.read(stream.err))
    assert.truthy(h.read(stream.out):find("ok=4000 failed=0", 1, true))
    assert.are.equal(0, h.exit_status(long, 60), h.read(long.err))
    assert.truthy(h.read(long.out):find("bytes_recv=1073741824", 1, true))
  end)

  it("keeps serving with the running config when the new one is broken", function()
    h.write(path, "proxy { this is not lua\n")
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reload failed %(the problems are above%): still running the previous config")
    assert.truthy(np.log():find(path .. ":1:", 1, true), "the error with its file and line")
    assert.are.equal("v2\n", ping(marker))
  end)

  it("replaces a worker that dies, and only that one's connections are lost", function()
    local before = workers_of(np.pid)
    os.execute("kill -9 " .. before[1])
    h.wait_log(np, "master: worker " .. before[1] .. " killed by signal 9: replacing it")
    h.wait_until(function()
      local now = workers_of(np.pid)
      return #now == 2 and now[1] ~= before[1] and now[2] ~= before[1]
    end, 5, "a replacement worker")
    local r = h.client("127.0.0.1", bulk, { "--conns", "50", "--parallel", "10", "--bytes", "1K" })
    assert.are.equal(0, r.rc, r.err)
  end)

  it("sums every worker's counters at /metrics", function()
    local body = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. stats .. "/metrics" })
    local opened = tonumber(body:match('netproxy_connections_opened_total{proxy="bulk"} (%d+)'))
    -- 400 + 4000 + 1 (the long one) + 50, whichever worker served them, dead ones included
    assert.are.equal(4451, opened, body)
  end)

  it("stops on SIGTERM after live connections finish, and exits 0", function()
    local live = h.spawn({ "sh", "-c", "(echo first; sleep 1.5; echo last) | socat -t 3 - TCP:127.0.0.1:" .. bulk })
    h.sleep(0.5)
    os.execute("kill -TERM " .. np.pid)
    assert.are.equal(0, h.exit_status(live, 10))
    assert.are.equal("first\nlast\n", h.read(live.out))
    assert.are.equal(0, h.exit_status(np, 10))
    assert.truthy(np.log():find("master: stopped", 1, true))
  end)
end)

describe("workers with reuseport", function()
  teardown(h.stop_all)

  it("gives each worker its own socket, spreads the load, and reloads without a failure", function()
    local echo = h.peer_server("echo")
    local port = h.free_port()
    local path = h.write(h.tmpfile("reuseport.lua"), ([[
server { workers = 2, reuseport = true }
proxy { name = "rp", from = { type = "tcp", host = "127.0.0.1", port = %d }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(port, echo.port))
    local np = h.netproxy_start(path, { "-w", "2", "-v" })
    h.wait_until(function() return #workers_of(np.pid) == 2 end, 5, "2 workers")
    -- the master holds a listening socket per worker (the same address twice)
    local listening = io.popen(("ss -ltnH 'sport = :%d' 2>/dev/null | wc -l"):format(port)):read("*n")
    if listening then assert.is_true(listening >= 2, listening .. " listening sockets") end
    local r = h.client("127.0.0.1", port, { "--conns", "400", "--parallel", "16", "--bytes", "1K" })
    assert.are.equal(0, r.rc, r.err)
    local per, served = {}, 0
    for pid in np.log():gmatch("info %[(%d+)%] #%d+ rp: accepted") do per[pid] = (per[pid] or 0) + 1 end
    for _, n in pairs(per) do
      served = served + 1
      assert.is_true(n >= 40, "a worker served only " .. n .. " of 400")
    end
    assert.are.equal(2, served)
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. port, "--conns", "3000", "--parallel", "8",
                             "--bytes", "512", "--timeout", "60" })
    h.sleep(0.2)
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "master: generation 1 started")
    assert.are.equal(0, h.exit_status(stream, 60), h.read(stream.err))
    assert.truthy(h.read(stream.out):find("ok=3000 failed=0", 1, true))
    h.stop(np)
  end)
end)
