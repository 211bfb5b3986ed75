-- A binary upgrade hands every bound socket over in one list, NETPROXY_FDS ("KIND:FD:INDEX:
-- PROXY", t for TCP and unix, u for UDP: bound.c); the new image takes them over by address
-- instead of binding. An older build of this version passed NETPROXY_LISTEN_FDS and
-- NETPROXY_UDP_FDS: those are still taken over, so an upgrade from it keeps its sockets.
-- A launcher (python3) binds a TCP and a UDP socket as the old master would hold them, writes
-- the config with their ports and executes netproxy with them and the variable.
local h = require "spec.helpers"
local udp = require "spec.support.udp"

local LAUNCHER = [[
import os, socket, sys
form, config, netproxy, echo_tcp, echo_udp = sys.argv[1:6]
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 0))
t.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
for s in (t, u):
    os.set_inheritable(s.fileno(), True)
tport, uport = t.getsockname()[1], u.getsockname()[1]
with open(config, "w") as f:
    f.write('proxy { name = "t", from = { type = "tcp", host = "127.0.0.1", port = %d }, '
            'to = { type = "tcp", host = "127.0.0.1", port = %s } }\n' % (tport, echo_tcp))
    f.write('proxy { name = "u", from = { type = "udp", host = "127.0.0.1", port = %d }, '
            'to = { type = "udp", host = "127.0.0.1", port = %s } }\n' % (uport, echo_udp))
if form == "one list":
    os.environ["NETPROXY_FDS"] = "t:%d:0:,u:%d:0:%s" % (t.fileno(), u.fileno(), b"u".hex())
else:
    os.environ["NETPROXY_LISTEN_FDS"] = str(t.fileno())
    os.environ["NETPROXY_UDP_FDS"] = "%d:0:%s" % (u.fileno(), b"u".hex())
print(tport, uport, flush=True)
os.execv(netproxy, [netproxy, "-v", "-w", "1", config])
]]

describe("the hand-over of bound sockets", function()
  local echo, uecho, launcher

  setup(function()
    echo = h.peer_server("echo")
    uecho = h.udp_echo_server()
    launcher = h.write(h.tmpfile("launch.py"), LAUNCHER)
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  -- Starts netproxy as an upgraded image given the sockets in that form; returns it and the
  -- two ports, once it serves.
  local function upgraded(form)
    local np = h.spawn({ "python3", launcher, form, h.tmpfile("c.lua"), h.netproxy, tostring(echo.port),
                         tostring(uecho.port) })
    local ports = h.wait_until(function() return (h.read(np.out) or ""):match("^%d+ %d+\n") end, 10,
                               "the launcher's ports")
    local tport, uport = ports:match("(%d+) (%d+)")
    h.wait_until(function() return (h.read(np.err) or ""):find("u: listening on", 1, true) end, 10,
                 "netproxy listening")
    return np, tonumber(tport), tonumber(uport)
  end

  for _, form in ipairs({ "one list", "an older build's two lists" }) do
    it("takes a TCP and a UDP socket over by address from " .. form, function()
      local np, tport, uport = upgraded(form)
      assert.are.equal("over tcp\n", (h.talk(tport, "over tcp\n")))
      local c = udp.new()
      assert.are.equal("over udp", c:ask(uport, "over udp"))
      c:close()
      local log = h.read(np.err)
      assert.truthy(log:find("the previous binary passed a socket listening on 127.0.0.1:" .. tport, 1, true), log)
      assert.truthy(log:find("the previous binary passed 1 udp sockets on 127.0.0.1:" .. uport, 1, true), log)
      assert.falsy(log:find("bound 127.0.0.1:" .. tport, 1, true), log)       -- not bound again
      assert.falsy(log:find("no proxy listens on", 1, true), log)
      h.stop(np)
    end)
  end
end)
