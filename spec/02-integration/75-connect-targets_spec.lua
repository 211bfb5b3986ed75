-- What a `from` that hears its target from the client (connect, socks5) does in front of a
-- `to` that is not reached by that target (issue 25, item 11): a unix socket is reached and
-- the log names it, not the host:port the client asked for; a service is announced to the
-- client (200, SOCKS5 success) before it talks. And what --check says of a `to` that can
-- never work (dummy behind tcp) and of a command line with an argument too many.
local h = require "spec.helpers"

describe("connect and socks5 in front of a unix socket or a service", function()
  local echo, np, path

  setup(function()
    echo = h.peer_server("echo")
    path = h.tmpfile("back.sock")
    np = h.netproxy_start(([[
proxy { name = "back", from = { type = "unix", path = %q }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "cu", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "*:*" } },
        to = { type = "unix", path = %q } }
proxy { name = "cs", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "*:*" } },
        to = { type = "service", serve = function(c) c:write("hello from the service\n") end } }
proxy { name = "ss", from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" } },
        to = { type = "service", serve = function(c) c:write("hello from the service\n") end } }
proxy { name = "tu", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "unix", path = %q } }
]]):format(path, echo.port, path, path), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  local function quoted(s) return (s:gsub("%p", "%%%0")) end

  it("CONNECT to a unix `to`: 200, the socket's server, and the log names the socket", function()
    local out = h.talk(np.ports.cu, "CONNECT target.example:80 HTTP/1.1\r\n\r\nping\n", { want = "ping\n" })
    assert.are.equal("HTTP/1.1 200 Connection established\r\n\r\nping\n", out)
    h.wait_log(np, "cu: 127%.0%.0%.1:%d+ %-> unix:" .. quoted(path) .. " in=5 out=5 ")
    assert.falsy(np.log():find("-> target.example:80", 1, true), np.log())
  end)

  it("a tcp proxy to a unix socket names the socket in its log", function()
    assert.are.equal("ping\n", (h.talk(np.ports.tu, "ping\n")))
    h.wait_log(np, "tu: 127%.0%.0%.1:%d+ %-> unix:" .. quoted(path) .. " in=5 out=5 ")
  end)

  it("CONNECT to a service: 200, then the service talks", function()
    local out = h.talk(np.ports.cs, "CONNECT target.example:80 HTTP/1.1\r\n\r\n", { want = "service\n" })
    assert.are.equal("HTTP/1.1 200 Connection established\r\n\r\nhello from the service\n", out)
    h.wait_log(np, "cs: 127%.0%.0%.1:%d+ %-> service ")
  end)

  it("SOCKS5 to a service: success, then the service talks", function()
    local out = h.talk(np.ports.ss, "\5\1\0" .. "\5\1\0\3\14target.example\0\80", { want = "service\n" })
    assert.are.equal("\5\0" .. "\5\0\0\1\0\0\0\0\0\0" .. "hello from the service\n", out)
    h.wait_log(np, "ss: 127%.0%.0%.1:%d+ %-> service ")
  end)
end)

describe("--check", function()
  local function check(config, extra)
    local path = h.write(h.tmpfile("config.lua"), config)
    local argv = { h.netproxy, "--check", path }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    local out, err, rc = h.run(argv)
    return out, err, rc, path
  end

  it("refuses a dummy `to` behind a from that cannot choose another", function()
    for _, from in ipairs({ '{ type = "tcp", host = "127.0.0.1", port = 0 }',
                            '{ type = "connect", host = "127.0.0.1", port = 0, allow = { "*:*" } }' }) do
      local _, err, rc, path = check("\nproxy { name = \"p\", from = " .. from .. ", to = { type = \"dummy\" } }\n")
      assert.are.equal(1, rc, err)
      assert.truthy(err:find(path:gsub("%p", "%%%0") .. ":2: proxy 'p': to: the dummy connector connects to nothing: every connection from %w+ would fail"), err)
    end
    -- where the from picks the destination, dummy is its `to` (dual's default)
    local out, err, rc = check('proxy { from = { type = "dual", host = "127.0.0.1", port = 0, client_first = { type = "tcp", host = "127.0.0.1", port = 1 } }, to = { type = "dummy" } }\n')
    assert.are.equal(0, rc, err)
    assert.truthy(out:find(": OK\n"), out)
  end)

  it("is a usage error with an argument after the config script", function()
    local config = 'proxy { from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = 1 } }\n'
    local out, err, rc = check(config, { "extra" })
    assert.are.equal(2, rc, err)
    assert.are.equal("", out)
    assert.truthy(err:find("'extra' after the config script", 1, true), err)
    -- a config file whose name does not end in .lua, and a port-like word after it: the same
    local path = h.write(h.tmpfile("netproxy.conf"), config)
    _, err, rc = h.run({ h.netproxy, "-c", path, "extra" })
    assert.are.equal(2, rc, err)
    -- the script alone, and the one-line form's HOST PORT, still check
    out, err, rc = check(config)
    assert.are.equal(0, rc, err)
    out, err, rc = h.run({ h.netproxy, "--check", "localhost", "22" })
    assert.are.same({ "command line: OK\n", 0 }, { out, rc }, err)
  end)
end)
