-- Signals around a binary upgrade (SIGUSR2, src/master.c and src/upgrade.c): a SIGHUP while
-- a worker of the previous binary still drains reloads (the master survives, later signals
-- work, SIGTERM leaves no worker behind); a SIGHUP that arrives while the master runs exec
-- waits, blocked, until the new image has its handlers, and is then done as a reload.
local h = require "spec.helpers"

-- A proxy "marker" whose from-hook turns "ping" into word, in front of an echo server, on a
-- fixed port (a reload keeps a listener by its address). With gate (a FIFO), the image an
-- upgrade runs waits in its config, before it has signal handlers, until the spec opens the
-- FIFO: the exec's window held open (the check and a reload load the config without waiting).
local function config(echo_port, word, port, gate, server)
  local wait = gate and ([[
if os.getenv("NETPROXY_UPGRADE") then local f = io.open(%q, "r"); f:read("*a"); f:close() end
]]):format(gate) or ""
  return wait .. ([[
server { workers = 2, %s }
proxy { name = "marker",
        from = { type = "tcp", host = "127.0.0.1", port = %d,
                 hook = function(d) return (d:gsub("ping", %q)) end },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(server or "", port, word, echo_port)
end

local function ping(port)
  return (h.talk(port, "ping\n", { want = "\n" }))
end

-- Every worker the master ever started, by its log, and the ones it was started with.
local function all_workers(np, first)
  local pids = {}
  for _, pid in ipairs(first) do pids[#pids + 1] = pid end
  for pid in np.full_log():gmatch("master: worker (%d+) started") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

local function kill(sig, pid)
  os.execute("kill -" .. sig .. " " .. pid)
end

-- SIGTERM: the master exits 0 without a sanitizer report, and no worker outlives it.
local function stops_cleanly(np, first)
  local pids = all_workers(np, first)
  kill("TERM", np.pid)
  assert.are.equal(0, h.exit_status(np, 10), np.full_log():sub(-3000))
  h.wait_until(function()
    for _, pid in ipairs(pids) do if h.alive(pid) then return false end end
    return true
  end, 10, "every worker to exit")
end

describe("signals around a binary upgrade", function()
  local echo

  local current    -- { np, first workers }: a master that died leaves its workers to init

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(function()
    h.test_end()
    if current then
      for _, pid in ipairs(all_workers(current[1], current[2])) do
        if h.alive(pid) then os.execute("kill -9 " .. pid) end
      end
    end
    current = nil
  end)

  local function start(server)
    local path = h.write(h.tmpfile("upgrade.lua"), config(echo.port, "v1", 0, nil, server))
    local np = h.netproxy_start(path, { "-w", "2", "-v" })
    local port = np.ports.marker       -- port 0, read back, written in for the reloads
    h.write(path, config(echo.port, "v1", port, nil, server))
    local first = h.wait_workers(np.pid, 2)
    current = { np, first }
    return np, path, port, first
  end

  it("SIGHUP while a worker of the previous binary drains: the master survives, later signals work", function()
    local np, path, port, first = start()
    local held = assert(h.connect(port))
    assert(held:send("ping\n"))
    assert.truthy((held:read("v1\n")):find("v1\n", 1, true))
    kill("USR2", np.pid)
    h.wait_log(np, "master: upgraded: netproxy [^\n]* with 2 workers of the previous binary to drain")
    -- the old worker without a connection is gone; the one holding ours drains
    h.wait_until(function()
      local n = 0
      for _, pid in ipairs(first) do if h.alive(pid) then n = n + 1 end end
      return n == 1
    end, 10, "one old worker left, holding the connection")
    np.mark()
    h.write(path, config(echo.port, "v2", port))
    kill("HUP", np.pid)
    h.wait_reloaded(np, tonumber(h.wait_log(np, "master: generation (%d+) started")))
    assert.is_true(h.alive(np.pid), "the master survives")
    assert.are.equal("v2\n", ping(port))
    assert(held:send("ping\n"))
    assert.truthy((held:read("v1\nv1\n")):find("v1\nv1\n", 1, true), "the held connection runs on")
    -- a later SIGHUP works too, with the old worker still there
    np.mark()
    h.write(path, config(echo.port, "v3", port))
    kill("HUP", np.pid)
    h.wait_reloaded(np, tonumber(h.wait_log(np, "master: generation (%d+) started")))
    assert.are.equal("v3\n", ping(port))
    held:close()
    stops_cleanly(np, first)
  end)

  it("max_draining counts the previous binary's workers as their own generation, the oldest", function()
    local np, path, port, first = start("max_draining = 1")
    local old = assert(h.connect(port))
    assert(old:send("ping\n"))
    assert.truthy((old:read("v1\n")):find("v1\n", 1, true))
    kill("USR2", np.pid)
    h.wait_log(np, "master: upgraded: netproxy [^\n]* with 2 workers of the previous binary to drain")
    for _, pid in ipairs(first) do     -- the old workers accept no more
      h.wait_until(function()
        return not h.alive(pid) or np.full_log():find("%[" .. pid .. "%] draining: no new connections")
      end, 10, "old worker " .. pid .. " to drain")
    end
    local new = assert(h.connect(port))     -- on a worker of the upgraded image's first generation
    assert(new:send("ping\n"))
    assert.truthy((new:read("v1\n")):find("v1\n", 1, true))
    np.mark()
    h.write(path, config(echo.port, "v2", port, nil, "max_draining = 1"))
    kill("HUP", np.pid)
    -- two generations drain: the old binary's (0) and the upgraded image's first (1)
    h.wait_log(np, "master: 2 generations draining %(max_draining 1%): generation 0 closes its connections now")
    local _, how = old:read(function() return false end, 10)
    assert.are.equal("eof", how, "the old binary's connection is closed")
    assert(new:send("ping\n"))
    assert.truthy((new:read("v1\nv1\n")):find("v1\nv1\n", 1, true), "the newer one runs on")
    assert.are.equal("v2\n", ping(port))
    new:close()
    stops_cleanly(np, first)
  end)

  -- The exec's window: the old image's handlers are gone, the new one's not yet in place.
  -- With gate, the SIGHUP reaches the master once the exec has begun, so the new image
  -- reloads; otherwise the old image may take it first (its reload, then the upgrade).
  local function upgrade_and_reload(send_hup, gate)
    local np, path, port, first = start()
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. port, "--conns", "2000",
                             "--parallel", "4", "--bytes", "512", "--timeout", "60" })
    h.wait_log(np, "marker: accepted")     -- the stream is running
    h.write(path, config(echo.port, "v2", port, gate))
    send_hup(np)
    h.wait_log(np, "master: upgraded: netproxy [^\n]* workers of the previous binary to drain")
    -- the reload asked during the upgrade is done (by the new image, once it is up)
    local upgraded = gate and np.log():find("master: upgraded:", 1, true) or 1
    h.wait_until(function()
      return np.log():find("master: generation %d+ started", upgraded)
    end, 10, "the reload")
    assert.is_true(h.alive(np.pid), "the master survives")
    assert.are.equal(0, h.exit_status(stream, 60), h.read(stream.err))
    assert.truthy(h.read(stream.out):find("ok=2000 failed=0", 1, true), h.read(stream.out))
    h.wait_until(function() return ping(port) == "v2\n" end, 10, "the new config")
    -- signals still work after it
    np.mark()
    kill("HUP", np.pid)
    h.wait_log(np, "master: generation %d+ started")
    stops_cleanly(np, first)
  end

  it("SIGUSR2 and SIGHUP back to back: the upgrade completes, the reload is done, no connection fails", function()
    upgrade_and_reload(function(np)
      os.execute("kill -USR2 " .. np.pid .. "; kill -HUP " .. np.pid)
    end)
  end)

  it("SIGHUP during the exec, before the new image has handlers: it is done as a reload once it is up", function()
    local gate = h.tmpfile("gate")
    assert(os.execute("mkfifo " .. gate) == 0)
    upgrade_and_reload(function(np)
      kill("USR2", np.pid)
      h.wait_log(np, "upgrade: running [^\n]* again")    -- logged just before execv
      kill("HUP", np.pid)
      -- the new image goes on (opening a FIFO waits for its reader: bounded, in case it died)
      os.execute("timeout 10 sh -c ': >" .. gate .. "'")
    end, gate)
  end)
end)
