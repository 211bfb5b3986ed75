-- systemd: Type=notify readiness (READY, RELOADING, STOPPING) and socket activation.
local h = require "spec.helpers"

describe("systemd", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  it("tells NOTIFY_SOCKET when it is ready, reloading and stopping", function()
    local sock = h.tmpfile("notify.sock")
    local listener = h.spawn({ "socat", "-u", "UNIX-RECV:" .. sock, "STDOUT" })
    h.wait_until(function() return os.execute("test -S " .. sock) == 0 end, 5, "the notify socket")
    local config = h.write(h.tmpfile("c.lua"), h.tcp_proxy("n", echo.port))
    local np = h.spawn({ "env", "NOTIFY_SOCKET=" .. sock, h.netproxy, "-w", "2", config })
    local function said() return h.read(listener.out) or "" end
    h.wait_until(function() return said():find("READY=1", 1, true) end, 5, "READY=1")
    h.wait_signals(np.pid)   -- READY=1 comes before the handlers: a SIGHUP just after would kill it
    assert.truthy(said():find("MAINPID=" .. np.pid, 1, true), said())
    os.execute("kill -HUP " .. np.pid)
    h.wait_until(function() return said():find("RELOADING=1.-READY=1") end, 5, "RELOADING=1 then READY=1")
    h.wait_workers(np.pid, 2)   -- the new ones: a SIGTERM just after their fork is lost (master.c)
    os.execute("kill -TERM " .. np.pid)
    h.wait_until(function() return said():find("STOPPING=1", 1, true) end, 5, "STOPPING=1")
    assert.are.equal(0, h.exit_status(np, 10))
  end)

  it("serves on the sockets systemd passes (socket activation)", function()
    if os.execute("command -v systemd-socket-activate >/dev/null") ~= 0 then
      pending("needs systemd-socket-activate (Debian's systemd package)")
      return
    end
    local sa = h.on_free_port("systemd-socket-activate", function(port)
      local config = h.write(h.tmpfile("c.lua"), h.tcp_proxy("activated", echo.port):gsub("port = 0", "port = " .. port))
      return h.spawn({ "systemd-socket-activate", "-l", "127.0.0.1:" .. port, h.netproxy, "-v", "-w", "2", config })
    end)
    local port = sa.port
    -- the first client makes systemd start netproxy, which takes the socket over
    assert.are.equal("activated\n", (h.talk(port, "activated\n")))
    assert.truthy(h.read(sa.err):find("systemd passed a socket listening on 127.0.0.1:" .. port, 1, true))
    h.stop(sa)
  end)
end)
