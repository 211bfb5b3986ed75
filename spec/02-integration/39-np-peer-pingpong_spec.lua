-- np-peer client --pingpong (bench/run.sh's latency test): round trips one at a time on one
-- connection, every echo verified, directly and through netproxy; a wrong echo or a silent
-- server fails it.
local h = require "spec.helpers"

describe("np-peer client --pingpong", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)

  local function sane(r, rounds)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(1, r.ok)
    assert.are.equal(rounds, r.rounds)
    assert.is_true(r.min_us > 0 and r.min_us <= r.p50_us and r.p50_us <= r.p99_us and r.p99_us <= r.max_us, r.out)
  end

  it("times N verified round trips of --bytes (64 by default) against an echo server", function()
    local r = h.client("127.0.0.1", echo.port, { "--pingpong", "200" })
    sane(r, 200)
    assert.are.equal(200 * 64, r.bytes_sent)
    assert.are.equal(200 * 64, r.bytes_recv)
    r = h.client("127.0.0.1", echo.port, { "--pingpong", "20", "--bytes", "100K" })
    sane(r, 20)
    assert.are.equal(20 * 100 * 1024, r.bytes_recv)
  end)

  it("runs through netproxy, each request waiting for its echo", function()
    local np = h.netproxy_start(h.tcp_proxy("pp", echo.port))
    sane(h.client("127.0.0.1", np.ports.pp, { "--pingpong", "300", "--bytes", "64" }), 300)
    h.stop(np)
  end)

  it("fails on an echo that is not the bytes sent, and on a server that never answers", function()
    local banner = h.peer_server("banner", { "--text", "hello" })
    local r = h.client("127.0.0.1", banner.port, { "--pingpong", "5" })
    assert.are.equal(1, r.rc)
    assert.are.equal(0, r.ok)
    assert.matches("data mismatch", r.err)
    local silent = h.peer_server("silent")
    r = h.client("127.0.0.1", silent.port, { "--pingpong", "5", "--timeout", "0.5" })
    assert.are.equal(1, r.rc)
    assert.matches("round 1: timeout", r.err)
  end)

  it("refuses options it cannot honour", function()
    local r = h.client("127.0.0.1", echo.port, { "--pingpong", "5", "--conns", "2" })
    assert.are.equal(2, r.rc)
    assert.matches("one connection", r.err)
  end)
end)
