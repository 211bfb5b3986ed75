-- unix sockets both ways: a unix listener and a unix backend carry 64 MiB byte-exact with
-- half-close each way (splice between tcp and unix); abstract names; a stale socket file is
-- replaced, a live one refused, the file removed at exit and kept across a reload; the
-- client is unix:PATH in the log and conn.peer has its uid; allow/deny are --check errors.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

-- tcp:0 -> unix path -> tcp backend: two proxies of one config, through the socket.
local function through_unix(backend_port, path, extra, proxy_extra)
  return ([[
proxy { name = "in", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "unix", path = %q } }
proxy { name = "out", from = { type = "unix", path = %q %s },
        to = { type = "tcp", host = "127.0.0.1", port = %d } %s }
]]):format(path, path, extra or "", backend_port, proxy_extra or "")
end

local function exists(path)
  return os.execute("test -S " .. h.quote(path)) == 0
end

describe("unix sockets", function()
  after_each(h.stop_all)

  it("carries 64 MiB byte-exact both ways through a unix listener and a unix backend, client half-closing", function()
    local echo = h.peer_server("echo")
    local path = h.tmpfile("relay.sock")
    local np = h.netproxy_start(through_unix(echo.port, path), { "-v" })
    local r = h.client("127.0.0.1", np.ports["in"], { "--bytes", "64M", "--half-close", "--timeout", "60" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(64 * 1024 * 1024, r.bytes_recv)
    h.wait_log(np, "out: unix:" .. path:gsub("%p", "%%%0") .. " %-> 127%.0%.0%.1:%d+ in=67108864 out=67108864")
    assert.truthy(np.log():find("out: relay: splice", 1, true), "tcp and unix sockets splice")
  end)

  it("carries a server's stream that ends first (server half-close) byte-exact", function()
    local source = h.peer_server("source", { "--bytes", "8M" })
    local path = h.tmpfile("source.sock")
    local np = h.netproxy_start(through_unix(source.port, path))
    local r = h.client("127.0.0.1", np.ports["in"], { "--expect", "source", "--bytes", "8M", "--timeout", "30" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(8 * 1024 * 1024, r.bytes_recv)
  end)

  it("listens on an abstract name, with no file", function()
    local echo = h.peer_server("echo")
    local name = "@netproxy-spec-" .. os.time() .. "-" .. math.random(1e6)
    local np = h.netproxy_start(through_unix(echo.port, name))
    local c = assert(tcp.connect(np.ports["in"]))
    assert.are.equal("abstract\n", c:exchange("abstract\n"))
    c:close()
    assert.truthy(np.log():find("out: listening on unix:" .. name, 1, true), np.log())
  end)

  it("replaces a stale socket file, refuses a live one by name, removes its file at exit", function()
    local echo = h.peer_server("echo")
    local path = h.tmpfile("stale.sock")
    -- a stale file: a socket bound once, with nobody listening on it any more
    assert.are.equal(0, os.execute(("python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.bind(%q)'"):format(path)))
    assert.is_true(exists(path))
    local np = h.netproxy_start(through_unix(echo.port, path, ', mode = "0600"'))
    assert.are.equal("600", io.popen("stat -c %a " .. h.quote(path)):read("*l"))
    -- the same path again, while the first listens: an error naming it
    local second = h.spawn({ h.netproxy, "-w", "1", h.write(h.tmpfile("second.lua"), through_unix(echo.port, path)) })
    assert.are_not.equal(0, h.exit_status(second, 10))
    assert.truthy(h.read(second.err):find("cannot listen on unix:" .. path .. ": Address already in use", 1, true), h.read(second.err))
    assert.is_true(exists(path), "the live listener's file is left alone")
    h.stop(np)
    assert.is_false(exists(path), "the file is removed at exit")
  end)

  it("keeps its socket across a reload, and its workers leave it alone", function()
    local echo = h.peer_server("echo")
    local path = h.tmpfile("reload.sock")
    local config = through_unix(echo.port, path)
    local file = h.write(h.tmpfile("reload.lua"), config)
    local np = h.netproxy_start(file, { "-w", "2" })
    local inport = np.ports["in"]
    h.write(file, (config:gsub('port = 0', 'port = ' .. inport)))   -- the port bound: the reload keeps it
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "master: generation 1 started")
    local c = assert(tcp.connect(inport))
    assert.are.equal("after reload\n", c:exchange("after reload\n"))
    c:close()
    assert.is_true(exists(path))
    assert.falsy(np.log():find("no longer listening on unix:", 1, true), np.log())
  end)

  it("names a unix client unix:PATH and gives accept(conn) its uid in conn.peer", function()
    local echo = h.peer_server("echo")
    local path = h.tmpfile("peer.sock")
    local uid = tonumber(io.popen("id -u"):read("*l"))
    local np = h.netproxy_start(through_unix(echo.port, path, nil, ([[,
        accept = function(conn) conn:log("notice", "peer uid %%d pid %%d", conn.peer.uid, conn.peer.pid)
                                return conn.peer.uid == %d end]]):format(uid)))
    local c = assert(tcp.connect(np.ports["in"]))
    assert.are.equal("who\n", c:exchange("who\n"))
    c:close()
    h.wait_log(np, "out: peer uid " .. uid .. " pid %d+")
  end)

  it("refuses allow/deny on a unix listener at --check, with file:line", function()
    local file = h.write(h.tmpfile("acl.lua"), [[
proxy { name = "u", from = { type = "unix", path = "/tmp/x.sock" }, allow = { "127.0.0.1" },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", file })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(file .. ":1: proxy 'u': allow: a unix socket's clients have no address to match", 1, true), err)
  end)
end)

describe("a service behind a unix listener", function()
  after_each(h.stop_all)

  it("answers a unix client with the straight-line service, counted and logged as unix:PATH", function()
    local path = h.tmpfile("service.sock")
    local np = h.netproxy_start(([[
proxy { name = "in", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "unix", path = %q } }
proxy { name = "svc", from = { type = "unix", path = %q },
        to = { type = "service", serve = function(client, conn)
          for line in client:lines() do client:write(line:upper() .. "\n") end
        end } }
]]):format(path, path))
    local c = assert(tcp.connect(np.ports["in"]))
    assert.are.equal("HELLO UNIX\n", c:exchange("hello unix\n"))
    c:close()
    h.wait_log(np, "svc: unix:" .. path:gsub("%p", "%%%0") .. " %-> [^\n]* in=11 out=11 [^\n]*end=")
  end)
end)
