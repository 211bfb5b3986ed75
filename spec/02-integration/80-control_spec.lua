-- Runtime control (issue 27): server{ control = PATH } and `netproxy ctl`, against a running
-- netproxy with one worker and with two. The backends are np-peer banner servers that say
-- their name, then echo: a client knows which one it reached, and a held connection keeps
-- going.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

local ffi = require "ffi"
pcall(ffi.cdef, "unsigned int geteuid(void);")

-- netproxy ctl -S sock WORDS...: its output, errors and exit status
local function ctl(sock, ...)
  local argv = { h.netproxy, "ctl", "-S", sock }
  for _, w in ipairs({ ... }) do argv[#argv + 1] = w end
  return h.run(argv)
end

-- Bytes sent raw over the socket (as socat would): the answer, until the close.
local RAW = [[
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(15)
s.connect(sys.argv[1])
try:
    s.sendall(open(sys.argv[2], "rb").read())
except OSError:
    pass
got = b""
try:
    while True:
        b = s.recv(65536)
        if not b: break
        got += b
except OSError:
    pass
sys.stdout.write(got.decode("latin-1"))
]]

local function raw(sock, bytes)
  return (h.run({ "python3", "-c", RAW, sock, h.write(h.tmpfile("line"), bytes) }))
end

local banners = require "spec.support.banners"
local reach, backends, ends, clients = banners.reach, banners.backends, banners.ends, banners.clients

local function start(b, workers, extra, sock)
  sock = sock or h.tmpfile("control.sock")
  local np = h.netproxy_start(([[
server { control = %q, shared = { rewrites = "64k" } %s }
proxy { name = "pool", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } }
]]):format(sock, extra or "", b.a.port, b.b.port), { "-w", tostring(workers), "-v" })
  np.sock = sock
  -- a reload binds what the config says: the ports bound now, written in
  h.write(np.config, (h.read(np.config):gsub("port = 0", "port = " .. np.ports.pool)))
  return np
end

describe("netproxy ctl", function()
  before_each(h.test_begin)
  after_each(h.test_end)

  it("show info, show proxies, help; the socket is 0600 and owned by the run user", function()
    local b = backends(2)
    local np = start(b, 1)
    local out, err, rc = ctl(np.sock, "show", "info")
    assert.are.equal(0, rc, err)
    assert.matches("version: %d+%.%d+", out)
    assert.matches("workers: 1\n", out)
    assert.matches("generation: 0\n", out)
    out = ctl(np.sock, "show", "proxies")
    assert.matches("name%s+active%s+opened", out)
    assert.matches("\npool%s+0%s+0", out)
    out = ctl(np.sock, "help")
    assert.matches("set server PROXY HOST:PORT state ready|drain|maint", out, 1, true)
    local mode = h.run({ "stat", "-c", "%a %u", np.sock })
    assert.are.equal("600 " .. ffi.C.geteuid() .. "\n", mode)
    out = ctl(np.sock, "show", "info", "--json")
    assert.matches('^{"ok":true,"result":{"draining":0,"generation":0,"pid":%d+,"uptime":[%d.]+,"version":"[%d.]+","workers":1}}\n$', out)
  end)

  it("a drain is observed by clients: no new connection reaches the server, an open one goes on (2 workers)", function()
    local b = backends(2)
    local np = start(b, 2)
    h.wait_workers(np.pid, 2)
    -- a connection held to a: it must go on after the drain
    local held = assert(tcp.connect(np.ports.pool))
    local first = held:receive(2, 5)
    local held_name = first:sub(1, 1)
    local other = held_name == "a" and "b" or "a"
    local out, err, rc = ctl(np.sock, "set", "server", "pool", "127.0.0.1:" .. b[held_name].port, "state", "drain")
    assert.are.equal(0, rc, out .. err)
    assert.matches("state drain", out)
    h.wait_log(np, "control: uid %d+ %(pid %d+%): set server pool 127%.0%.0%.1:%d+ state drain")
    assert.are.equal(other:rep(6), clients(np, np.ports.pool, 6))
    assert(held:send("still here\n"))
    assert.are.equal("still here\n", held:receive(11, 5))
    held:close()
    out = ctl(np.sock, "show", "servers", "pool")
    assert.matches("127%.0%.0%.1:" .. b[held_name].port .. "%s+drain", out)
    -- ready again: both take clients
    ctl(np.sock, "set", "server", "pool", "127.0.0.1:" .. b[held_name].port, "state", "ready")
    local seq = clients(np, np.ports.pool, 4)
    assert.matches("a", seq)
    assert.matches("b", seq)
  end)

  it("maint takes a server out too; weight changes the spread; both survive a reload", function()
    local b = backends(2)
    local np = start(b, 1)
    local _, _, rc = ctl(np.sock, "set", "server", "pool", "127.0.0.1:" .. b.a.port, "weight", "3")
    assert.are.equal(0, rc)
    local seq = clients(np, np.ports.pool, 8)
    assert.are.equal(6, select(2, seq:gsub("a", "")), seq)
    -- a reload keeps it (the config is written with the ports it has)
    local out = ctl(np.sock, "reload")
    assert.matches("^reloaded: config generation 1", out)
    out = ctl(np.sock, "show", "servers")
    assert.matches("127%.0%.0%.1:" .. b.a.port .. "%s+ready%s+3", out)
    ctl(np.sock, "set", "server", "pool", "127.0.0.1:" .. b.b.port, "state", "maint")
    assert.are.equal("aaaa", clients(np, np.ports.pool, 4))
    out = ctl(np.sock, "show", "servers")
    assert.matches("127%.0%.0%.1:" .. b.b.port .. "%s+maint%s+1%s+down", out)
  end)

  it("maint stops the active checks of that server; ready starts them again", function()
    local b = backends(2)
    local sock = h.tmpfile("control.sock")
    local np = h.netproxy_start(([[
server { control = %q }
proxy { name = "pool", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { "127.0.0.1:%d", "127.0.0.1:%d" },
               check = { interval = 0.05, fn = function(sock, server)
                 require("netproxy.core").log("notice", "checked " .. server.name)
                 return true
               end } } }
]]):format(sock, b.a.port, b.b.port))
    local a = "127.0.0.1:" .. b.a.port
    h.wait_log(np, "checked " .. a:gsub("%.", "%%."))
    assert.are.equal(0, select(3, ctl(sock, "set", "server", "pool", a, "state", "maint")))
    h.wait_log(np, "control: uid %d+ %(pid %d+%): set server pool .- state maint")
    np.mark()
    -- a check under way when maint came may still finish; after it, none of a
    local other = ("checked 127%.0%.0%.1:" .. b.b.port)
    h.wait_until(function() return select(2, np.log():gsub(other, "")) >= 6 end, 10, "6 checks of b")
    assert.is_true(select(2, np.log():gsub("checked " .. a:gsub("%.", "%%."), "")) <= 1, np.log())
    ctl(sock, "set", "server", "pool", a, "state", "ready")
    h.wait_log(np, "checked " .. a:gsub("%.", "%%."))
  end)

  it("add server reaches the new one in every worker; del server drains it (2 workers)", function()
    local b = backends(3)
    local np = start(b, 2)
    h.wait_workers(np.pid, 2)
    local out, err, rc = ctl(np.sock, "add", "server", "pool", "127.0.0.1:" .. b.c.port, "weight", "2")
    assert.are.equal(0, rc, out .. err)
    assert.matches("added %(weight 2%)", out)
    local seq = clients(np, np.ports.pool, 12)
    assert.matches("c", seq)
    out = ctl(np.sock, "show", "servers")
    assert.matches("127%.0%.0%.1:" .. b.c.port .. "%s+ready%s+2%s+up.-added", out)
    -- the same again: an error, nothing changed
    out, err, rc = ctl(np.sock, "add", "server", "pool", "127.0.0.1:" .. b.c.port)
    assert.are.equal(1, rc)
    assert.matches("^error: proxy pool has server 127%.0%.0%.1:%d+ already", out)
    out, err, rc = ctl(np.sock, "del", "server", "pool", "127.0.0.1:" .. b.a.port)
    assert.are.equal(0, rc, out .. err)
    seq = clients(np, np.ports.pool, 9)
    assert.is_nil(seq:find("a"), seq)
    -- a runtime server survives a reload
    assert.matches("^reloaded", (ctl(np.sock, "reload")))
    h.wait_reloaded(np, 1)
    seq = clients(np, np.ports.pool, 9)
    assert.is_nil(seq:find("a"), seq)
    assert.matches("c", seq)
  end)

  it("states, weights and added servers survive a binary upgrade (SIGUSR2); the socket is served again", function()
    local b = backends(3)
    local np = start(b, 2)
    h.wait_workers(np.pid, 2)
    local a = "127.0.0.1:" .. b.a.port
    assert.are.equal(0, select(3, ctl(np.sock, "set", "server", "pool", a, "state", "drain")))
    assert.are.equal(0, select(3, ctl(np.sock, "set", "server", "pool", "127.0.0.1:" .. b.b.port, "weight", "7")))
    assert.are.equal(0, select(3, ctl(np.sock, "add", "server", "pool", "127.0.0.1:" .. b.c.port)))
    os.execute("kill -USR2 " .. np.pid)
    h.wait_log(np, "master: upgraded: netproxy [^\n]* with 2 workers of the previous binary to drain")
    local out = h.wait_until(function()
      local o, _, rc = ctl(np.sock, "show", "servers")
      return rc == 0 and o
    end, 10, "the control socket after the upgrade")
    assert.matches(a:gsub("%.", "%%.") .. "%s+drain%s+1", out)
    assert.matches("127%.0%.0%.1:" .. b.b.port .. "%s+ready%s+7", out)
    assert.matches("127%.0%.0%.1:" .. b.c.port .. "%s+ready%s+1%s+up.-added", out)
    -- weights 7:1, and each worker keeps its own turn: up to 64 clients until one reaches c
    local seq = ""
    for _ = 1, 8 do
      seq = seq .. clients(np, np.ports.pool, 8)
      if seq:find("c") then break end
    end
    assert.is_nil(seq:find("a"), seq)
    assert.matches("c", seq)
  end)

  it("show conns lists every worker's connections; kill conn ends one mid-transfer (2 workers)", function()
    local b = backends(2)
    local np = start(b, 2)
    h.wait_workers(np.pid, 2)
    local held = {}
    for i = 1, 4 do
      held[i] = assert(tcp.connect(np.ports.pool))
      assert.are.equal(2, #held[i]:receive(2, 5))
    end
    local out = h.wait_until(function()
      local o = ctl(np.sock, "show", "conns", "pool")
      local n = select(2, o:gsub("\n%d+:%d+%s+pool%s+127%.0%.0%.1:%d+", ""))
      return n == 4 and o
    end, 10, "4 connections in show conns")
    assert.matches("relaying", out)
    local pids = {}
    for pid in out:gmatch("\n(%d+):%d+") do pids[pid] = true end
    local json = ctl(np.sock, "show", "conns", "--json")
    assert.matches('"bytes_in":%d+', json)
    -- kill the first one, which is moving bytes
    local id = out:match("\n(%d+:%d+)")
    local victim
    for i = 1, 4 do
      assert(held[i]:send("x\n"))
      assert.are.equal("x\n", held[i]:receive(2, 5))
    end
    local _, err, rc = ctl(np.sock, "kill", "conn", id)
    assert.are.equal(0, rc, err)
    h.wait_log(np, "end=closed: killed by netproxy ctl")
    local closed = 0
    for i = 1, 4 do
      held[i]:send("y\n")
      local got = held[i]:receive(2, 5)
      if got ~= "y\n" then closed, victim = closed + 1, i end
    end
    assert.are.equal(1, closed)
    assert.truthy(victim)
    local left = ctl(np.sock, "show", "conns")
    assert.is_nil(left:find(id .. " ", 1, true))
    local _, _, rc2 = ctl(np.sock, "kill", "conn", "99999")
    assert.are.equal(1, rc2)
    for i = 1, 4 do held[i]:close() end
    assert.truthy(next(pids))
  end)

  it("reload with a bad config answers its file:line and keeps the running one", function()
    local b = backends(2)
    local np = start(b, 1)
    local good = h.read(np.config)
    h.write(np.config, good .. "\nproxy { name = \"bad\", from = { type = \"tcp\", port = \"nope\" } }\n")
    local out, _, rc = ctl(np.sock, "reload")
    assert.are.equal(1, rc)
    assert.matches("^error: reload failed: still running the previous config\n", out)
    assert.matches(np.config:match("[^/]+$"):gsub("%p", "%%%0") .. ":%d+: proxy 'bad'", out)
    out = ctl(np.sock, "reload", "--json")
    assert.matches('^{"error":"reload failed: still running the previous config","ok":false,"problems":%[".-:%d+: proxy \'bad\'', out)
    assert.are.equal("ab", clients(np, np.ports.pool, 2))
    h.write(np.config, good)
    out, _, rc = ctl(np.sock, "reload")
    assert.are.equal(0, rc)
    assert.matches("^reloaded: config generation 1\n", out)
  end)

  it("bad commands: a clear error and nothing changed; garbage, huge lines and slow peers leave the socket serving", function()
    local b = backends(2)
    local np = start(b, 1)
    local cases = {
      { { "bogus" }, "^error: unknown command 'bogus'" },
      { { "set", "server", "pool", "127.0.0.1:1", "state", "drain" }, "^error: proxy pool has no server 127%.0%.0%.1:1" },
      { { "set", "server", "pool", "127.0.0.1:" .. b.a.port, "state", "sleepy" }, "^error: state 'sleepy': want ready, drain or maint" },
      { { "set", "server", "pool", "127.0.0.1:" .. b.a.port, "weight", "1000" }, "^error: weight '1000': want 0..256" },
      { { "set", "server", "nosuch", "127.0.0.1:1", "state", "drain" }, "^error: proxy 'nosuch' has no pool" },
      { { "add", "server", "pool", "not an address" }, "^error: " },
      { { "dict", "get", "nosuch", "k" }, "^error: no shared dict 'nosuch'" },
      { { "dict", "get", "rewrites", "k" }, "^error: rewrites: no key 'k'" },
      { { "dict", "set", "rewrites", "k", ("v"):rep(500) }, "^error: rewrites: too large" },
      { { "dict", "frob", "rewrites" }, "^error: dict frob: want keys, get, set or del" },
      { { "dict", "get", "rewrites", ("k"):rep(300) }, "^error: get: key longer than 255 bytes" },
      { { "kill", "conn", "x" }, "^error: 'x': want ID or PID:ID" },
    }
    for _, c in ipairs(cases) do
      local out, _, rc = ctl(np.sock, unpack(c[1]))
      assert.are.equal(1, rc, out)
      assert.matches(c[2], out)
    end
    assert.are.equal("ab", clients(np, np.ports.pool, 2))    -- nothing changed
    assert.matches("^error: not a command %(control characters%)", raw(np.sock, "show\0\1\2 info\n"))
    assert.matches("^error: line too long %(at most 4096 bytes%)", raw(np.sock, ("x"):rep(100000)))
    -- a slow peer holding a connection open does not stop the others
    local ready = h.tmpfile("slow-ready")
    local slow = h.spawn({ "python3", "-c", [[
import socket, sys, time
held = []
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.send(b"sho"); held.append(s)
open(sys.argv[3], "w").close()
time.sleep(30)
]], np.sock, "1", ready })
    h.wait_until(function() return h.read(ready) end, 10, "the slow peer")
    local out, _, rc = ctl(np.sock, "show", "info")
    assert.are.equal(0, rc)
    assert.matches("version:", out)
    assert.matches("\npool%s", (ctl(np.sock, "show", "proxies")))
    h.stop(slow)
    -- 16 clients at once at most: the 17th is told so, and the socket serves once they go
    os.remove(ready)
    slow = h.spawn({ "python3", "-c", [[
import socket, sys, time
held = []
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.send(b"sho"); held.append(s)
open(sys.argv[3], "w").close()
time.sleep(30)
]], np.sock, "16", ready })
    h.wait_until(function() return h.read(ready) end, 10, "16 slow peers")
    out, _, rc = h.wait_until(function()
      local o, e, r = ctl(np.sock, "show", "info")
      return r == 1 and o, e, r
    end, 10, "the 17th client refused")
    assert.matches("^error: too many control clients at once", out)
    h.wait_log(np, "control: 16 clients at once already")
    h.stop(slow)
    h.wait_until(function() return select(3, ctl(np.sock, "show", "info")) == 0 end, 10, "the socket serving again")
    -- the socat form: one line in, the answer out
    assert.matches("^rewrites ab = cd\n", raw(np.sock, "dict set rewrites ab cd\n"))
    assert.matches("^cd\n", raw(np.sock, "dict get rewrites ab\n"))
    assert.matches("^ab\n", raw(np.sock, "dict keys rewrites\n"))
    assert.matches("^rewrites ab deleted", raw(np.sock, "dict del rewrites ab\n"))
  end)

  it("refuses a peer whose uid is neither root nor the owner, and logs it", function()
    if ffi.C.geteuid() ~= 0 then pending("needs root to run the client as nobody") return end
    local b = backends(2)
    -- a folder nobody may enter (the spec's own is 0700), so that only SO_PEERCRED refuses
    local dir = h.run({ "mktemp", "-d", "/tmp/np-ctl.XXXXXX" }):gsub("\n", "")
    finally(function() os.execute("rm -rf " .. dir) end)
    h.run({ "chmod", "0755", dir })
    local np = start(b, 1, ', control_mode = "0666"', dir .. "/control.sock")
    assert.are.equal("666\n", (h.run({ "stat", "-c", "%a", np.sock })))
    local out, err, rc = h.run({ "runuser", "-u", "nobody", "--", h.netproxy, "ctl", "-S", np.sock, "set", "server",
                                 "pool", "127.0.0.1:" .. b.a.port, "state", "drain" })
    assert.are.equal(1, rc, out .. err)
    assert.matches("^error: permission denied", out)
    h.wait_log(np, "control: refused a peer of uid %d+ %(pid %d+%): neither root nor the owner")
    assert.matches("ready", (ctl(np.sock, "show", "servers")))
  end)

  it("dict set changes a CONNECT route live, in both workers, with no reload (examples/mangle.lua)", function()
    local peer = h.peer_server("banner", { "--text", "moved" })
    local sock = h.tmpfile("control.sock")
    local config = h.read(h.root .. "/examples/mangle.lua"):gsub("port = 3128", "port = 0")
      :gsub("ALLOWED_PORTS%[port%]", "true")
    local np = h.netproxy_start(config, { "-w", "2", "--set", "control=" .. sock })
    h.wait_workers(np.pid, 2)
    local function ask()
      local out = h.talk(np.ports.mangle, ("CONNECT old.example:%d HTTP/1.1\r\nHost: old.example\r\n\r\n"):format(peer.port),
                         { keep_open = true, want = "moved\n", timeout = 5 })
      return out
    end
    np.mark()
    assert.is_nil(ask():find("moved"))
    local out, err, rc = h.run({ h.netproxy, "ctl", "-S", sock, "dict", "set", "rewrites", "old.example", "127.0.0.1" })
    assert.are.equal(0, rc, out .. err)
    -- every connection from now on, whichever worker takes it
    local pids = {}
    h.wait_until(function()
      np.mark()
      assert.matches("200 Connection established.*moved\n", ask())
      local pid = h.wait_log(np, "%[(%d+)%] #%d+ mangle: old%.example:%d+ asked by [%d.:]+ %-> 127%.0%.0%.1")
      pids[pid] = true
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      return n == 2
    end, 30, "connections rewritten in both workers")
  end)

  it("core.set_server and core.servers: a timer drains a server on its own rule", function()
    local b = backends(2)
    local np = start(b, 1, ([[, on_start = function()
      local core = require "netproxy.core"
      core.after(0, function()
        local ok, err = core.set_server("pool", "127.0.0.1:%d", { state = "drain", weight = 2 })
        local list = core.servers("pool")
        core.log("notice", ("timer: %%s %%s %%s %%s"):format(tostring(ok), tostring(err), list[1].state, list[1].weight))
        core.log("notice", "timer: bad: " .. select(2, core.set_server("pool", "127.0.0.1:1", { state = "drain" })))
      end)
    end]]):format(b.a.port))
    h.wait_log(np, "timer: true nil drain 2")
    h.wait_log(np, "timer: bad: proxy pool has no server 127%.0%.0%.1:1")
    assert.are.equal("bbb", clients(np, np.ports.pool, 3))
  end)
end)
