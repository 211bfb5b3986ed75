-- The spec helpers themselves: the clock, the in-process client, ports that stay refused, and
-- the retry of peers that cannot take port 0. Other specs trust these to fail when they should.
local h = require "spec.helpers"

describe("spec helpers", function()
  after_each(h.stop_all)

  it("wait_until keeps time in milliseconds", function()
    local t = h.now()
    local ok, err = pcall(h.wait_until, function() return false end, 0.25, "nothing")
    local took = h.now() - t
    assert.is_false(ok)
    assert.truthy(tostring(err):find("timed out after 0.25s waiting for nothing", 1, true), err)
    assert.is_true(took >= 0.25 and took < 0.5, took .. "s")
  end)

  it("talk reads until the server closes, or until what is wanted came, or times out", function()
    local echo = h.peer_server("echo")
    assert.are.same({ "abc", "eof" }, { h.talk(echo.port, "abc") })
    assert.are.same({ "abc\n", "want" }, { h.talk(echo.port, "abc\n", { keep_open = true, want = "\n" }) })
    assert.are.same({ "abc", "timeout" }, { h.talk(echo.port, "abc", { keep_open = true, timeout = 0.2 }) })
    local big = ("0123456789abcdef"):rep(256 * 1024)   -- 4 MiB: sent while the echo is read
    local out, how = h.talk(echo.port, big)
    assert.are.equal("eof", how)
    assert.is_true(out == big, "bytes differ")
  end)

  it("interact returns once the client exits, its input still open", function()
    local t = h.now()
    local out, _, rc, ok = h.interact({ "sh", "-c", "echo bye; exit 3" }, "", { want = "never said", timeout = 10 })
    assert.are.same({ "bye\n", 3, false }, { out, rc, ok })
    assert.is_true(h.now() - t < 5, "took " .. (h.now() - t) .. "s")
  end)

  it("closed_port refuses connections until stop_all", function()
    local port = h.closed_port()
    assert.are.same({ "", "refused" }, { h.talk(port, "x") })
    -- nobody else can listen there meanwhile (socat: np-peer would leave an ASan leak report)
    local _, err, rc = h.run({ "socat", "TCP-LISTEN:" .. port .. ",bind=127.0.0.1", "-" })
    assert.are_not.equal(0, rc, err)
    h.stop_all()
    local after = h.spawn({ "socat", "TCP-LISTEN:" .. port .. ",bind=127.0.0.1", "-" })
    h.wait_until(function() return h.listening_ports(after.pid)[port] end, 5, "the port to be free again")
  end)

  it("on_free_port starts a peer again on another port when its port was taken", function()
    local taken = h.peer_server("silent")
    local tries = 0
    local function ports()   -- the taken port first, then one seen free (nil)
      tries = tries + 1
      if tries == 1 then return taken.port end
    end
    -- socat as the peer that cannot take port 0 (np-peer can; failing, it would leave an ASan
    -- leak report)
    local ok, p = pcall(h.on_free_port, "socat", function(port)
      return h.spawn({ "socat", "TCP-LISTEN:" .. port .. ",bind=127.0.0.1,fork", "EXEC:cat" })
    end, { ports = ports })
    assert.is_true(ok, p)
    assert.are.equal(2, tries)
    assert.are_not.equal(taken.port, p.port)
    assert.are.equal("hi\n", (h.talk(p.port, "hi\n")))
  end)

  it("on_free_port tries again when start raises (netproxy_start on a taken port)", function()
    local taken = h.peer_server("silent")
    local tries = 0
    local ok, p = pcall(h.on_free_port, "netproxy", function(port)
      tries = tries + 1
      return h.netproxy_start((h.tcp_proxy("p", taken.port):gsub("port = 0", "port = " .. port)))
    end, { ports = function() if tries == 0 then return taken.port end end })
    assert.is_true(ok, p)
    assert.are.equal(2, tries)
    assert.are.equal(p.port, p.ports.p)
    assert.are_not.equal(taken.port, p.port)
  end)
end)
