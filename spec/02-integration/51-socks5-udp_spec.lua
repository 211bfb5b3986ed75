-- SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) on the socks5 from: the reply names a relay, each
-- datagram carries the SOCKS UDP header, targets by IP or by name, the connector's allow list
-- decides per datagram, and the association ends with its TCP control connection. The client
-- is the Python SOCKS5 UDP client of spec/support/udp_peer.py, the target its UDP echo server.
local h = require "spec.helpers"

local PEER = h.root .. "/spec/support/udp_peer.py"

local echo_server = h.udp_echo_server

local function associate(np, target, port, n)
  local out, err, rc = h.run({ "python3", PEER, "socks5udp", tostring(np.ports.s5), target, tostring(port), tostring(n) })
  assert.are.equal(0, rc, err)
  return out
end

describe("socks5 from, UDP ASSOCIATE", function()
  local echo, np
  before_each(function()
    echo = echo_server()
    np = h.netproxy_start([[
proxy { name = "s5", from = { type = "socks5", host = "127.0.0.1", port = 0,
                              allow = { "127.0.0.1:*", "localhost:*" } } }
]], { "-v" })
  end)
  after_each(h.stop_all)

  it("relays datagrams to an IP target and back with the header naming the source", function()
    local out = associate(np, "127.0.0.1", echo.port, 30)
    assert.truthy(out:find("ok=30 failed=0 relay=127.0.0.1:%d+ source=127.0.0.1:" .. echo.port .. " "), out)
    h.wait_log(np, "s5: 127%.0%.0%.1:%d+ %-> udp relay 127%.0%.0%.1:%d+ [^\n]*end=eof: UDP ASSOCIATE ended: datagrams_in=30 [^\n]*datagrams_out=30")
  end)

  it("resolves a target name (without blocking) and answers from its address", function()
    local out = associate(np, "localhost", echo.port, 5)
    assert.truthy(out:find("ok=5 failed=0 relay=127.0.0.1:%d+ source=127.0.0.1:" .. echo.port .. " "), out)
  end)

  it("drops datagrams to targets the allow list refuses", function()
    local out = associate(np, "127.0.0.2", echo.port, 3)
    assert.truthy(out:find("ok=0 failed=3", 1, true), out)
    h.wait_log(np, "UDP ASSOCIATE ended: datagrams_in=0 [^\n]*dropped=3 refused=3")
  end)

  it("serves a real client: PySocks (python3-socks) over UDP ASSOCIATE", function()
    -- Debian's python3, where python3-socks is installed (another python3 may be first on PATH)
    local out, err, rc = h.run({ "/usr/bin/python3", h.root .. "/spec/support/pysocks_udp.py",
                                 tostring(np.ports.s5), "127.0.0.1", tostring(echo.port), "20" })
    assert.are.equal(0, rc, err)
    assert.truthy(out:find("ok=20 failed=0 source=127.0.0.1:" .. echo.port, 1, true), out .. err)
    h.wait_log(np, "UDP ASSOCIATE ended: datagrams_in=20 [^\n]*datagrams_out=20")
  end)

  it("ends the association with its TCP control connection: the relay answers no more", function()
    local out = associate(np, "127.0.0.1", echo.port, 2)
    assert.truthy(out:find("after_close=none", 1, true), out)
    h.wait_log(np, "UDP ASSOCIATE ended")
  end)
end)
