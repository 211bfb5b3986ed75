-- The stdio one-line form as ssh's ProxyCommand (issue 26): a connection that fails says why on
-- standard error (ssh shows it; otherwise the user reads only "Connection closed by remote
-- host") at every log level but -q -q, and the process exits 1; a good one still exits 0.
local h = require "spec.helpers"

-- netproxy ARGS... with "hello\n" on standard input, held open until the echo is back or
-- the process ends; returns stdout, stderr, exit status.
local function oneline(args)
  local argv = { h.netproxy }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return h.interact(argv, "hello\n", { want = "hello\n", timeout = 15 })
end

-- netproxy ARGS... whose connection fails: standard input is /dev/null (it is not read before
-- the server is reached); returns stdout, stderr, exit status.
local function failing(args)
  local argv = { h.netproxy }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return h.run(argv)
end

describe("the stdio one-line form, failing", function()
  local echo, tiny, tiny_users

  setup(function()
    echo = h.peer_server("echo")
    tiny = h.tinyproxy()
    tiny_users = h.tinyproxy({ alice = "secret" })
  end)
  teardown(h.stop_all)

  it("says the proxy answered 407 and exits 1", function()
    local out, err, rc = failing({ "-P", "127.0.0.1:" .. tiny_users.port, "127.0.0.1", tostring(echo.port) })
    assert.are.equal("", out)
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("stdio: cannot reach 127%.0%.0%.1:" .. echo.port .. ": proxy 127%.0%.0%.1:" .. tiny_users.port ..
                           " said: HTTP/1%.%d 407 "), err)
  end)

  it("says the proxy could not reach a refused target and exits 1", function()
    local closed = h.closed_port()
    local _, err, rc = failing({ "-P", "127.0.0.1:" .. tiny.port, "127.0.0.1", tostring(closed) })
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("cannot reach 127%.0%.0%.1:" .. closed .. ": proxy [^\n]* said: HTTP/1%.%d 5%d%d "), err)
  end)

  it("says a target refused the connection (no proxy) and exits 1", function()
    local closed = h.closed_port()
    local _, err, rc = failing({ "127.0.0.1", tostring(closed) })
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("cannot reach 127%.0%.0%.1:" .. closed .. ": refused", 1), err)
  end)

  it("says the proxy could not resolve the name and exits 1", function()
    local _, err, rc = failing({ "-P", "127.0.0.1:" .. tiny.port, "no-such-host.invalid", "22" })
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("cannot reach no%-such%-host%.invalid:22: proxy [^\n]* said: HTTP/1%.%d 5%d%d "), err)
  end)

  it("says a name that does not resolve (no proxy) and exits 1", function()
    local dns = h.dnsmasq({ "--local=/invalid/" })    -- answers NXDOMAIN for names under .invalid
    local _, err, rc = failing({ "--set", "resolvers=127.0.0.1:" .. dns.port, "no-such-host.invalid", "22" })
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("cannot reach no%-such%-host%.invalid:22: [^\n]*resolve", 1), err)
  end)

  it("says the proxy is dead and exits 1", function()
    local dead = h.closed_port()
    local _, err, rc = failing({ "-P", "127.0.0.1:" .. dead, "127.0.0.1", tostring(echo.port) })
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("cannot reach 127%.0%.0%.1:" .. echo.port .. ": proxy 127%.0%.0%.1:" .. dead .. ": refused"), err)
  end)

  it("says it with -q, and says nothing with -q -q (still exiting 1)", function()
    local dead = h.closed_port()
    local _, err, rc = failing({ "-q", "-P", "127.0.0.1:" .. dead, "127.0.0.1", tostring(echo.port) })
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("cannot reach", 1, true), err)
    _, err, rc = failing({ "-q", "-q", "-P", "127.0.0.1:" .. dead, "127.0.0.1", tostring(echo.port) })
    assert.are.equal(1, rc, err)
    assert.are.equal("", err)
  end)

  it("exits 0 and prints nothing when the connection works", function()
    local out, err, rc = oneline({ "-P", "127.0.0.1:" .. tiny.port, "127.0.0.1", tostring(echo.port) })
    assert.are.equal("hello\n", out)
    assert.are.equal(0, rc, err)
    assert.are.equal("", err)
    out, err, rc = oneline({ "127.0.0.1", tostring(echo.port) })
    assert.are.equal("hello\n", out)
    assert.are.equal(0, rc, err)
    assert.are.equal("", err)
  end)
end)
