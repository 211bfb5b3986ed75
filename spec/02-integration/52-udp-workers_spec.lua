-- UDP with workers: every worker serves UDP, each on its own socket of a SO_REUSEPORT group
-- that the master holds, and every datagram of a flow (client address:port) reaches the same
-- worker; a killed worker's replacement takes its socket over; a reload's old workers still
-- carry their flows' replies; a binary upgrade (SIGUSR2) hands the groups over.
local h = require "spec.helpers"
local udp = require "spec.support.udp"
local ffi = require "ffi"

local echo_server = h.udp_echo_server

local function config(target, opts)
  opts = opts or {}
  return ([[
server { %s }
proxy { name = "u", from = { type = "udp", host = %q, port = %d },
        to = { type = "udp", host = %q, port = %d %s }, %s }
]]):format(opts.server or "", opts.listen or "127.0.0.1", opts.port or 0, opts.to_host or "127.0.0.1",
           target, opts.to or "", opts.extra or "")
end

local function clients(n, host)
  local list = {}
  for i = 1, n do list[i] = udp.new(host) end
  return list
end

local function close_all(list)
  for _, c in ipairs(list) do c:close() end
end

-- Each client sends data once (all before any reply is read), then reads its reply:
-- replies[i] is client i's (nil when none came).
local function round(list, port, data)
  local replies = {}
  for _, c in ipairs(list) do c:send(port, data) end
  for i, c in ipairs(list) do replies[i] = c:recv(3) end
  return replies
end

-- client port -> { pid, ... }: the process that started each of its flows (needs -v).
local function flow_pids(log, name)
  local by_port = {}
  for pid, port in log:gmatch("%[(%d+)%] #%d+ " .. (name or "u") .. ": udp flow from [^\n]-:(%d+)\n") do
    port = tonumber(port)
    by_port[port] = by_port[port] or {}
    table.insert(by_port[port], tonumber(pid))
  end
  return by_port
end

local function set_size(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- How many sockets the kernel has on UDP port (IPv4 and IPv6), whoever holds them.
local function udp_sockets(port)
  local n, hex = 0, (":%04X "):format(port)
  for _, f in ipairs({ "/proc/net/udp", "/proc/net/udp6" }) do
    for line in (h.read(f) or ""):gmatch("[^\n]+") do
      local laddr = line:match("^%s*%d+:%s+(%S+)")
      if laddr and (laddr .. " "):sub(-6) == hex then n = n + 1 end
    end
  end
  return n
end

-- A netproxy run by this spec itself (h.netproxy_start adds -w 1 unless -w is given, and a
-- -w on the command line would win over server{ workers } at a reload).
local function start(path, args)
  local argv = { h.netproxy }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = path
  local p = h.spawn(argv)
  function p.full_log() return h.read(p.err) or "" end
  local from = 0
  function p.log() return p.full_log():sub(from + 1) end
  function p.mark() from = #p.full_log() end
  h.wait_until(function()
    if p.log():find("running %d+ prox") then return true end
    if h.read(p.rcfile) then error("netproxy exited at start:\n" .. p.log()) end
  end, 10, "netproxy to start")
  h.wait_signals(p.pid)
  p.ports = {}
  for name, addr in p.full_log():gmatch("notice %[%d+%] ([^\n]-): listening on (%S+)") do
    p.ports[name] = tonumber(addr:match(":(%d+)$"))
  end
  return p
end

describe("udp with workers", function()
  local echo
  before_each(function() echo = echo_server() end)
  after_each(h.stop_all)

  it("spreads 60 flows of 10 datagrams over 2 workers, every datagram of a flow in one worker", function()
    local np = h.netproxy_start(config(echo.port), { "-w", "2", "-v" })
    local workers = h.wait_workers(np.pid, 2)
    assert.truthy(np.log():find("u: listening on 127.0.0.1:" .. np.ports.u .. " (udp, 2 sockets)", 1, true), np.log())
    assert.are.equal(2, udp_sockets(np.ports.u))
    local list = clients(60)
    local first = round(list, np.ports.u, "whoami")
    local seen = {}
    for i = 1, 60 do
      assert.truthy(first[i], "client " .. i .. " got no reply")
      seen[first[i]] = true
    end
    assert.are.equal(60, set_size(seen), "60 flows, each its own socket toward the server")
    for r = 2, 10 do
      local replies = round(list, np.ports.u, "whoami")
      for i = 1, 60 do assert.are.equal(first[i], replies[i], "round " .. r .. ", client " .. i) end
    end
    h.stop(np)
    local by_port, pids = flow_pids(np.log()), {}
    for _, c in ipairs(list) do
      local started = by_port[c.port]
      assert.are.equal(1, started and #started or 0, "one flow for client port " .. c.port)
      pids[started[1]] = true
      local ended = np.log():match("%[(%d+)%] #%d+ u: udp 127%.0%.0%.1:" .. c.port .. " [^\n]-datagrams_in=10 datagrams_out=10 dropped=0")
      assert.are.equal(started[1], tonumber(ended), "its 10 datagrams each way, logged by the same worker")
    end
    assert.are.equal(2, set_size(pids), "both workers served flows")
    for pid in pairs(pids) do
      assert.truthy(pid == workers[1] or pid == workers[2], "a worker's pid: " .. pid)
    end
    close_all(list)
  end)

  it("serves IPv6 clients on every worker too", function()
    h.stop(echo)
    echo = echo_server("::1")
    local np = h.netproxy_start(config(echo.port, { listen = "::1", to_host = "::1" }), { "-w", "2", "-v" })
    local list = clients(30, "::1")
    local first = round(list, np.ports.u, "whoami")
    for r = 2, 3 do
      local replies = round(list, np.ports.u, "whoami")
      for i = 1, 30 do
        assert.truthy(first[i])
        assert.are.equal(first[i], replies[i], "round " .. r .. ", client " .. i)
      end
    end
    local pids = {}
    for _, started in pairs(flow_pids(np.log())) do
      assert.are.equal(1, #started)
      pids[started[1]] = true
    end
    assert.are.equal(2, set_size(pids), np.log())
    close_all(list)
  end)

  it("replaces a worker killed with SIGKILL: its clients get new flows there, the other worker's flows go on", function()
    local np = h.netproxy_start(config(echo.port), { "-w", "2", "-v" })
    local workers = h.wait_workers(np.pid, 2)
    local list = clients(60)
    local first = round(list, np.ports.u, "whoami")
    local by_port = flow_pids(np.log())
    local victim = by_port[list[1].port][1]
    local survivor = victim == workers[1] and workers[2] or workers[1]
    os.execute("kill -9 " .. victim)
    h.wait_log(np, "master: worker " .. victim .. " killed by signal 9: replacing it")
    local now = h.wait_until(function()
      local kids = h.wait_workers(np.pid, 2)
      return (kids[1] ~= victim and kids[2] ~= victim) and kids
    end, 10, "the replacement")
    local replacement = now[1] == survivor and now[2] or now[1]
    np.mark()
    local again = round(list, np.ports.u, "whoami")
    local moved, kept = 0, 0
    local after = flow_pids(np.log())
    for i, c in ipairs(list) do
      assert.truthy(again[i], "client " .. i .. " got no reply after the kill")
      if by_port[c.port][1] == survivor then
        assert.are.equal(first[i], again[i], "a flow of the other worker is the same flow")
        assert.is_nil(after[c.port], "and no new flow was started for it")
        kept = kept + 1
      else
        assert.are.same({ replacement }, after[c.port], "started by the replacement")
        moved = moved + 1
      end
    end
    assert.is_true(moved > 0 and kept > 0, ("moved %d kept %d"):format(moved, kept))
    close_all(list)
  end)

  it("gives a second process on the same udp address a clear error", function()
    local np = h.netproxy_start(config(echo.port), { "-w", "2" })
    local port = np.ports.u
    for _, w in ipairs({ "2", "1" }) do
      local path = h.write(h.tmpfile("udp-second.lua"), config(echo.port, { port = port }))
      local _, err, rc = h.run({ h.netproxy, "-w", w, path })
      assert.are_not.equal(0, rc)
      assert.truthy(err:find("cannot listen on udp 127.0.0.1:" .. port .. ": Address already in use", 1, true), err)
    end
    local c = udp.new()
    assert.are.equal("still mine", c:ask(port, "still mine"))
    assert.are.equal(2, udp_sockets(port))
    c:close()
    h.stop(np)
  end)
end)

-- A server socket held by the spec: it reads a datagram with the flow's address, and answers
-- whenever the spec says (after a reload, to show an old flow still carries replies).
local SA = ffi.typeof("struct np_udp_sa")

local function server_recvfrom(s, timeout)
  local pfd = ffi.new("struct np_udp_pollfd", { fd = s.fd, events = 1 })
  if ffi.C.poll(pfd, 1, math.floor((timeout or 3) * 1000)) <= 0 then return nil end
  local sa, len = SA(), ffi.new("socklen_t[1]", ffi.sizeof(SA))
  local n = ffi.C.recvfrom(s.fd, s.buf, 65536, 0, sa, len)
  if n < 0 then return nil end
  return ffi.string(s.buf, n), { sa = sa, len = len[0], port = ffi.C.ntohs(sa.port) }
end

local function server_sendto(s, data, to)
  assert(ffi.C.sendto(s.fd, data, #data, 0, to.sa, to.len) == #data)
end

describe("udp with workers across a reload (SIGHUP)", function()
  after_each(h.stop_all)

  it("keeps the old flows carrying replies in the old workers; the clients' next datagrams are new flows in the new ones", function()
    local backend = udp.new()
    local port = 0   -- then the port bound, for the reload to keep it
    local function version(v)
      return config(backend.port, { port = port, extra = "udp_idle_timeout = 5",
                                    to = (", hook = function(d) return %q .. d end"):format(v) })
    end
    local path = h.write(h.tmpfile("udp-reload.lua"), version("v1:"))
    local np = h.netproxy_start(path, { "-w", "2", "-v" })
    port = np.ports.u
    local old_workers = h.wait_workers(np.pid, 2)
    local list = clients(20)
    -- each client asks a question the server answers only after the reload
    for _, c in ipairs(list) do c:send(port, "question") end
    local old_flows = {}
    for _ = 1, 20 do
      local data, from = server_recvfrom(backend)
      assert.are.equal("question", data)
      old_flows[#old_flows + 1] = from
    end
    h.write(path, version("v2:"))
    os.execute("kill -HUP " .. np.pid)
    h.wait_reloaded(np, 1)
    np.mark()
    for _, from in ipairs(old_flows) do server_sendto(backend, "late answer", from) end
    for i, c in ipairs(list) do
      assert.are.equal("v1:late answer", c:recv(3), "client " .. i .. ": the old flow, its old hook")
    end
    -- the next datagrams reach the new workers: new flows, a new source port toward the server
    for _, c in ipairs(list) do c:send(port, "after") end
    local old_ports = {}
    for _, from in ipairs(old_flows) do old_ports[from.port] = true end
    for _ = 1, 20 do
      local data, from = server_recvfrom(backend)
      assert.are.equal("after", data)
      assert.is_nil(old_ports[from.port], "a new flow toward the server")
      server_sendto(backend, "answer", from)
    end
    for i, c in ipairs(list) do assert.are.equal("v2:answer", c:recv(3), "client " .. i) end
    local by_port = flow_pids(np.log())
    for _, c in ipairs(list) do
      local pid = by_port[c.port] and by_port[c.port][1]
      assert.truthy(pid and pid ~= old_workers[1] and pid ~= old_workers[2], "started by a new worker")
    end
    -- the old flows end by their idle timeout, and their workers with them
    for _, w in ipairs(old_workers) do
      h.wait_until(function() return not h.alive(w) end, 20, "old worker " .. w .. " to finish")
    end
    local ended = 0
    for pid in np.full_log():gmatch("%[(%d+)%] #%d+ u: udp [^\n]-datagrams_in=1 datagrams_out=1 [^\n]-end=idle timeout") do
      if tonumber(pid) == old_workers[1] or tonumber(pid) == old_workers[2] then ended = ended + 1 end
    end
    assert.are.equal(20, ended, np.full_log())
    close_all(list)
    backend:close()
  end)

  it("with fewer workers after the reload, steers every client to the workers left", function()
    local echo = echo_server()
    local path = h.write(h.tmpfile("udp-shrink.lua"), config(echo.port, { server = "workers = 3" }))
    local np = start(path, { "-v" })
    local port = np.ports.u   -- written into the config: the reload keeps it
    h.wait_workers(np.pid, 3)
    assert.are.equal(3, udp_sockets(port))
    h.write(path, config(echo.port, { port = port, server = "workers = 2" }))
    os.execute("kill -HUP " .. np.pid)
    h.wait_reloaded(np, 1)
    local new_workers = h.wait_workers(np.pid, 2)
    np.mark()
    local list = clients(60)
    local first = round(list, port, "whoami")
    local again = round(list, port, "whoami")
    for i = 1, 60 do
      assert.truthy(first[i], "client " .. i .. " got no reply")
      assert.are.equal(first[i], again[i])
    end
    local pids = {}
    for _, started in pairs(flow_pids(np.log())) do pids[started[1]] = true end
    assert.are.equal(2, set_size(pids))
    for pid in pairs(pids) do assert.truthy(pid == new_workers[1] or pid == new_workers[2]) end
    assert.are.equal(3, udp_sockets(port), "the group keeps its third socket (steered around)")
    close_all(list)
  end)
end)

describe("binary upgrade (SIGUSR2) with udp proxies", function()
  after_each(h.stop_all)

  it("hands the sockets over: the same ports (port 0 too), no rebind, a client sending through it loses nothing", function()
    local echo = echo_server()
    local path = h.tmpfile("udp-upgrade.lua")
    local np = h.on_free_port("netproxy on a fixed udp port", function(port)
      h.write(path, ([[
proxy { name = "fixed", from = { type = "udp", host = "127.0.0.1", port = %d },
        to = { type = "udp", host = "127.0.0.1", port = %d }, udp_idle_timeout = 2 }
proxy { name = "zero", from = { type = "udp", host = "127.0.0.1", port = 0 },
        to = { type = "udp", host = "127.0.0.1", port = %d }, udp_idle_timeout = 2 }
]]):format(port, echo.port, echo.port))
      return h.netproxy_start(path, { "-w", "2", "-v" })
    end, { udp = true })
    local fixed = np.port
    local old_workers = h.wait_workers(np.pid, 2)
    local zero = np.ports.zero
    assert.are.equal(fixed, np.ports.fixed)
    assert.are.equal(2, udp_sockets(fixed))
    assert.are.equal(2, udp_sockets(zero))
    local a, b = udp.new(), udp.new()
    local asked, answered, whoami = 0, 0, {}
    local function ask_both()
      for _, pair in ipairs({ { a, fixed }, { b, zero } }) do
        asked = asked + 1
        local got = pair[1]:ask(pair[2], "whoami", 3)
        if got then
          answered = answered + 1
          whoami[got] = true
        end
      end
    end
    for _ = 1, 10 do ask_both() end
    np.mark()
    os.execute("kill -USR2 " .. np.pid)
    -- the clients keep sending while the new image starts and the old workers drain
    -- the clients keep sending while the new image starts its workers and the old ones drain
    local deadline, new_workers = h.now() + 20, {}
    repeat
      assert.is_true(h.now() < deadline, "no upgrade:\n" .. np.log())
      ask_both()
      new_workers = {}
      if np.log():find("master: upgraded: netproxy [^\n]* with 2 workers of the previous binary to drain") then
        for pid in np.log():gmatch("master: worker (%d+) started") do
          if h.catches(tonumber(pid), { 15 }) then new_workers[#new_workers + 1] = tonumber(pid) end
        end
      end
    until #new_workers == 2
    for _ = 1, 30 do ask_both() end
    assert.are.equal(asked, answered, "every datagram answered through the upgrade")
    assert.truthy(np.log():find("upgrade: running " .. h.netproxy .. " again with 0 listening sockets, 4 udp sockets", 1, true), np.log())
    assert.truthy(np.log():find("fixed: listening on 127.0.0.1:" .. fixed .. " (udp, 2 sockets passed by the previous binary)", 1, true), np.log())
    assert.truthy(np.log():find("zero: listening on 127.0.0.1:" .. zero .. " (udp, 2 sockets passed by the previous binary)", 1, true), np.log())
    assert.are.equal(2, udp_sockets(fixed), "no new socket")
    assert.are.equal(2, udp_sockets(zero), "no new socket")
    -- the clients' flows now live in the new workers; a new client is served there too
    local c = udp.new()
    assert.truthy(c:ask(zero, "whoami"))
    for _, started in pairs(flow_pids(np.log(), "zero")) do
      for _, pid in ipairs(started) do
        assert.truthy(pid == new_workers[1] or pid == new_workers[2], "a new worker: " .. pid)
      end
    end
    assert.truthy(flow_pids(np.log(), "zero")[c.port], np.log())
    for _, w in ipairs(old_workers) do
      h.wait_until(function() return not h.alive(w) end, 20, "old worker " .. w .. " to finish")
    end
    a:close(); b:close(); c:close()
  end)
end)
