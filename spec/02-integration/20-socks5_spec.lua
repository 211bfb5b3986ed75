-- SOCKS5 both ways against real peers: curl as a client of netproxy's SOCKS5 server; netproxy's
-- SOCKS5 client through microsocks and dante-server; fake servers (socat running a shell
-- script) that misbehave; hostile clients that must harm nobody else.
local h = require "spec.helpers"

-- curl through a SOCKS5 proxy on 127.0.0.1:port; mode "--socks5" (curl resolves) or
-- "--socks5-hostname" (the proxy resolves). Returns stdout, stderr, exit status.
local function socks_curl(mode, port, url, ...)
  local argv = { "curl", "-sS", "--max-time", "5", mode, "127.0.0.1:" .. port, ... }
  argv[#argv + 1] = url
  return h.run(argv)
end

-- Raw bytes to 127.0.0.1:port, then EOF; what came back before the other side closed.
local function raw(port, bytes)
  local file = h.write(h.tmpfile("raw"), bytes)
  return (h.run({ "sh", "-c", ("socat -t 3 - TCP:127.0.0.1:%d < %s"):format(port, h.quote(file)) }))
end

local function be16(n) return string.char(math.floor(n / 256), n % 256) end
local LOCALHOST_REQUEST = "\5\1\0\1\127\0\0\1"     -- CONNECT 127.0.0.1, the port to follow

-- A fake SOCKS5 server: socat runs a shell script per connection.
local function fake_socks(script)
  local file = h.write(h.tmpfile("fake.sh"), script)
  return h.on_free_port("the fake SOCKS server", function(port)
    return h.spawn({ "socat", "TCP-LISTEN:" .. port .. ",bind=127.0.0.1,reuseaddr,fork", "EXEC:sh " .. file })
  end)
end

local function through(name, target_host, target_port, proxy_port, extra)
  return ([[
proxy { name = %q, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "socks5", host = %q, port = %d, proxy_host = "127.0.0.1", proxy_port = %d, %s } }
]]):format(name, target_host, target_port, proxy_port, extra or "")
end

describe("from = socks5 (netproxy as the SOCKS5 server)", function()
  local web, web6, echo, hole, np

  setup(function()
    local hello = { "--text", "HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n", "--close" }
    web = h.peer_server("reply", hello)
    web6 = h.peer_server("reply", hello, "[::1]")
    echo = h.peer_server("echo")
    hole = h.peer_server("blackhole")
    np = h.netproxy_start(([[
proxy { name = "routed",
        from = { type = "socks5", host = "127.0.0.1", port = 0,
                 route = function(host, port, conn)
                   if host == "old.example" then return "127.0.0.1", port end
                   if host == "forbidden.example" then return nil, "not today" end
                   return host, port
                 end } }
proxy { name = "listed",
        from = { type = "socks5", host = "127.0.0.1", port = 0,
                 allow = { "127.0.0.1:%d", "*.example.test:*", "[::1]:*" } } }
proxy { name = "locked",
        from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" },
                 users = { alice = "wonderland" } } }
proxy { name = "askfn",
        from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" },
                 users = function(user, pass, conn) return user == "bob" and pass == "builder" end } }
proxy { name = "four",
        from = { type = "socks5", host = "127.0.0.1", port = 0, socks4 = true, allow = { "127.0.0.1:*", "localhost:*" } } }
proxy { name = "quick", connect_timeout = 1, negotiation_timeout = 2,
        from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "*:*" } } }
]]):format(web.port), { "-v" })
  end)
  teardown(h.stop_all)
  -- one netproxy for the describe: each test reads only the log lines since its own mark
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("serves curl --socks5 (curl resolves) and --socks5-hostname (netproxy resolves)", function()
    local out, err, rc = socks_curl("--socks5", np.ports.routed, "http://127.0.0.1:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    out, err, rc = socks_curl("--socks5-hostname", np.ports.routed, "http://localhost:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "routed: SOCKS5 CONNECT localhost:" .. web.port .. "\n")
    h.wait_log(np, "routed: 127%.0%.0%.1:%d+ %-> localhost:" .. web.port .. " in=%d+ out=%d+ [^\n]*end=eof")
  end)

  it("serves an IPv6 target", function()
    local out, err, rc = socks_curl("--socks5", np.ports.listed, "http://[::1]:" .. web6.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "listed: SOCKS5 CONNECT %[::1%]:" .. web6.port)
  end)

  it("lets route rewrite the target, and logs it at notice", function()
    local out, err, rc = socks_curl("--socks5-hostname", np.ports.routed, "http://old.example:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "notice [^\n]* routed: SOCKS5 CONNECT old%.example:" .. web.port .. " rewritten to 127%.0%.0%.1:" .. web.port)
  end)

  it("answers 0x02 when route refuses", function()
    local _, err, rc = socks_curl("--socks5-hostname", np.ports.routed, "http://forbidden.example:" .. web.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("(2)", 1, true), err)
    h.wait_log(np, "routed: [^\n]* end=refused: route refused forbidden%.example:%d+: not today")
  end)

  it("serves only its allow list without route: 0x02 otherwise, * within one label", function()
    local out, err, rc = socks_curl("--socks5", np.ports.listed, "http://127.0.0.1:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    _, err, rc = socks_curl("--socks5", np.ports.listed, "http://127.0.0.1:" .. echo.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("(2)", 1, true), err)
    _, err = socks_curl("--socks5-hostname", np.ports.listed, "http://a.b.example.test/")
    assert.truthy(err:find("(2)", 1, true), err)
    h.wait_log(np, "listed: [^\n]* end=refused: not in the allow list: a%.b%.example%.test:80")
    -- one label: allowed, then it does not resolve
    _, err = socks_curl("--socks5-hostname", np.ports.listed, "http://a.example.test/")
    assert.truthy(err:find("(4)", 1, true), err)
  end)

  it("answers 0x04 for a name that does not resolve", function()
    local _, err, rc = socks_curl("--socks5-hostname", np.ports.routed, "http://no-such-host.invalid:" .. web.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("(4)", 1, true), err)
    h.wait_log(np, "routed: [^\n]*no%-such%-host%.invalid:%d+ [^\n]* end=connect failed: resolve: ")
  end)

  it("answers 0x05 when the target refuses the connection", function()
    local closed = h.closed_port()
    local _, err, rc = socks_curl("--socks5", np.ports.routed, "http://127.0.0.1:" .. closed .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("(5)", 1, true), err)
  end)

  it("answers 0x06 when connecting to the target times out", function()
    local _, err, rc = socks_curl("--socks5", np.ports.quick, "http://127.0.0.1:" .. hole.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("(6)", 1, true), err)
    h.wait_log(np, "quick: [^\n]* end=connect failed: timeout")
  end)

  it("answers 0x07 to BIND, 0x08 to an unknown address type (UDP ASSOCIATE: 51-socks5-udp_spec)", function()
    assert.are.equal("\5\0\5\7\0\1\0\0\0\0\0\0", raw(np.ports.routed, "\5\1\0" .. "\5\2\0\1\127\0\0\1\0\0"))
    h.wait_log(np, "routed: [^\n]* end=refused: BIND is not supported")
    assert.are.equal("\5\0\5\8\0\1\0\0\0\0\0\0", raw(np.ports.routed, "\5\1\0" .. "\5\1\0\9\0\0\0\0\0\0"))
    h.wait_log(np, "routed: [^\n]* end=refused: request: address type 9")
  end)

  it("replies with the address it connects from (BND.ADDR, BND.PORT)", function()
    local out = raw(np.ports.routed, "\5\1\0" .. LOCALHOST_REQUEST .. be16(echo.port) .. "ping")
    assert.are.equal("\5\0\5\0\0\1\127\0\0\1", out:sub(1, 10))
    assert.is_true(out:byte(11) * 256 + out:byte(12) > 0)
    assert.are.equal("ping", out:sub(13))
  end)

  it("asks for a user name with users: 0xFF to a client without, the right ones let in", function()
    local _, err, rc = socks_curl("--socks5", np.ports.locked, "http://127.0.0.1:" .. web.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:lower():find("no authentication method was acceptable", 1, true), err)
    assert.are.equal("\5\255", raw(np.ports.locked, "\5\1\0"))
    h.wait_log(np, "locked: [^\n]* end=refused: no acceptable method %(offered 0, want 2%)")
    local out
    out, err, rc = socks_curl("--socks5", np.ports.locked, "http://127.0.0.1:" .. web.port .. "/", "-U", "alice:wonderland")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "locked: SOCKS5 CONNECT 127%.0%.0%.1:" .. web.port .. " for user \"alice\"")
    _, err, rc = socks_curl("--socks5", np.ports.locked, "http://127.0.0.1:" .. web.port .. "/", "-U", "alice:guess")
    assert.are_not.equal(0, rc)
    h.wait_log(np, "locked: [^\n]* end=refused: bad credentials for user \"alice\"")
    assert.are.equal("\1\1", raw(np.ports.locked, "\5\1\2" .. "\1\5alice\5guess"):sub(3))
  end)

  it("asks a users function", function()
    local out, err, rc = socks_curl("--socks5-hostname", np.ports.askfn, "http://localhost:" .. web.port .. "/", "-U", "bob:builder")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    _, _, rc = socks_curl("--socks5-hostname", np.ports.askfn, "http://localhost:" .. web.port .. "/", "-U", "bob:x")
    assert.are_not.equal(0, rc)
    h.wait_log(np, "askfn: [^\n]* end=refused: bad credentials for user \"bob\"")
  end)

  it("closes only the hostile clients (truncated, oversized, random, byte by byte) while others are served", function()
    math.randomseed(1080)
    local junk = {}
    for i = 1, 4096 do junk[i] = string.char(math.random(0, 255)) end
    junk = table.concat(junk)
    local function client() return assert(h.connect(np.ports.quick, { nodelay = true })) end
    local hostile = { truncated = client(), oversized = client(), random = client(), bytewise_junk = client() }
    hostile.truncated:send("\5\2\0")                        -- and nothing more: held open
    hostile.oversized:send("\5\1\0" .. ("A"):rep(70000))
    hostile.random:send("\5\1" .. junk)
    -- meanwhile: a good client, byte by byte too, and curl
    local good = client()
    local junk_bytes, good_bytes = "\5\1\0\5\1\0\7\0\0", "\5\1\0" .. LOCALHOST_REQUEST .. be16(echo.port) .. "ok"
    for i = 1, math.max(#junk_bytes, #good_bytes) do
      hostile.bytewise_junk:send(junk_bytes:sub(i, i))
      good:send(good_bytes:sub(i, i))
      if i <= 5 then
        local out, err, rc = socks_curl("--socks5", np.ports.quick, "http://127.0.0.1:" .. web.port .. "/")
        assert.are.equal(0, rc, err)
        assert.are.equal("hello\n", out)
      end
      h.sleep(0.02)   -- the behaviour under test: each byte read by netproxy on its own
    end
    h.wait_log(np, "quick: [^\n]* end=negotiation timeout")                      -- truncated
    h.wait_log(np, "quick: [^\n]* end=refused: request: request version 65, not 5")   -- oversized greeting, then junk
    h.wait_log(np, "quick: [^\n]* end=refused: request: address type 7")          -- byte by byte
    for name, c in pairs(hostile) do
      local _, how = c:read(nil, 5)
      assert.truthy(how == "eof" or how == "reset", name .. " still open: " .. how)
    end
    local echoed = good:read(10 + 2 + #"ok", 5)   -- the reply (BND.ADDR, BND.PORT), then the echo
    assert.are.equal("\5\0\5\0\0\1\127\0\0\1", echoed:sub(1, 10))
    assert.are.equal("ok", echoed:sub(13))
    assert.is_true(h.alive(np.pid))
    local out = socks_curl("--socks5", np.ports.quick, "http://127.0.0.1:" .. web.port .. "/")
    assert.are.equal("hello\n", out)
  end)

  it("serves SOCKS4 and SOCKS4a with socks4 = true, SOCKS5 on the same port", function()
    for _, mode in ipairs({ "--socks4", "--socks4a", "--socks5", "--socks5-hostname" }) do
      local out, err, rc = socks_curl(mode, np.ports.four, "http://localhost:" .. web.port .. "/")
      assert.are.equal(0, rc, mode .. ": " .. err)
      assert.are.equal("hello\n", out)
    end
    h.wait_log(np, "four: SOCKS4 CONNECT localhost:" .. web.port .. "\n")     -- 4a: the name
    h.wait_log(np, "four: SOCKS4 CONNECT 127%.0%.0%.1:" .. web.port .. "\n")  -- 4: curl resolved it
    local _, err, rc = socks_curl("--socks4", np.ports.four, "http://127.0.0.1:" .. h.closed_port() .. "/")
    assert.are_not.equal(0, rc)
    h.wait_log(np, "four: [^\n]* end=connect failed: refused")
    assert.are.equal("\0\91\0\0\0\0\0\0", raw(np.ports.four, "\4\1\0\80\10\0\0\1\0"))
    h.wait_log(np, "four: [^\n]* end=refused: not in the allow list: 10%.0%.0%.1:80")
    local path = h.write(h.tmpfile("four.lua"), 'proxy { from = { type = "socks5", port = 1, socks4 = true, allow = { "*:*" }, users = { a = "b" } } }\n')
    _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("socks4 = true with users: SOCKS4 carries no password", 1, true), err)
  end)

  it("closes a SOCKS4 client with a log line without socks4 = true", function()
    assert.are.equal("", raw(np.ports.routed, "\4\1" .. be16(web.port) .. "\127\0\0\1user\0"))
    h.wait_log(np, "routed: [^\n]* end=refused: greeting: version 4, not 5")
  end)

  it("refuses a config that would be an open proxy", function()
    local path = h.write(h.tmpfile("open.lua"), 'proxy { from = { type = "socks5", port = 1080 } }\n')
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("open.lua:1: proxy 'proxy1': from: needs route = function(host, port, conn) or an allow list: netproxy is no open proxy", 1, true), err)
  end)

  it("carries 1 MiB byte-exact, netproxy's SOCKS5 client to its own server", function()
    local np2 = h.netproxy_start(through("loop", "127.0.0.1", echo.port, np.ports.routed) ..
                                 through("loopname", "localhost", echo.port, np.ports.routed))
    for _, name in ipairs({ "loop", "loopname" }) do
      local r = h.client("127.0.0.1", np2.ports[name], { "--bytes", "1M", "--half-close" })
      assert.are.equal(0, r.rc, r.err)
      assert.are.equal(1024 * 1024, r.bytes_recv)
    end
    h.stop(np2)
  end)
end)

describe("to = socks5 (through a SOCKS5 proxy)", function()
  local echo

  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)

  it("carries 1 MiB byte-exact through microsocks, by address and by name, with and without credentials", function()
    local ms = h.microsocks()
    local ms_auth = h.microsocks("bob", "builder")
    local np = h.netproxy_start(through("addr", "127.0.0.1", echo.port, ms.port) ..
                                through("name", "localhost", echo.port, ms.port) ..
                                through("auth", "127.0.0.1", echo.port, ms_auth.port, 'proxy_user = "bob", proxy_pass = "builder"') ..
                                through("wrongpass", "127.0.0.1", echo.port, ms_auth.port, 'proxy_user = "bob", proxy_pass = "x"') ..
                                through("nocreds", "127.0.0.1", echo.port, ms_auth.port) ..
                                through("refused", "127.0.0.1", h.closed_port(), ms.port), { "-v" })
    -- microsocks closes both ways at the first EOF: the client keeps writing open until all is back
    for _, name in ipairs({ "addr", "name", "auth" }) do
      local r = h.client("127.0.0.1", np.ports[name], { "--bytes", "1M" })
      assert.are.equal(0, r.rc, name .. ": " .. r.err)
      assert.are.equal(1024 * 1024, r.bytes_recv)
    end
    h.wait_log(np, "name: proxy 127%.0%.0%.1:" .. ms.port .. ": SOCKS5 CONNECT localhost:" .. echo.port .. " succeeded")
    for _, name in ipairs({ "wrongpass", "nocreds", "refused" }) do
      assert.are.equal(1, h.client("127.0.0.1", np.ports[name], { "--bytes", "1K", "--timeout", "5" }).failed)
    end
    h.wait_log(np, "wrongpass: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ refused the credentials of user \"bob\"")
    h.wait_log(np, "nocreds: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ accepts none of our methods %(0%)")
    h.wait_log(np, "refused: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ said: connection refused %(5%)")
  end)

  it("resolves the name itself with remote_dns = false (core.resolve), and sends the address", function()
    local ms = h.microsocks()
    local np = h.netproxy_start(through("localdns", "localhost", echo.port, ms.port, "remote_dns = false") ..
                                through("nowhere", "no-such-host.invalid", echo.port, ms.port, "remote_dns = false"),
                                { "-v" })
    local r = h.client("127.0.0.1", np.ports.localdns, { "--bytes", "1M" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(1024 * 1024, r.bytes_recv)
    h.wait_log(np, "localdns: proxy 127%.0%.0%.1:" .. ms.port .. ": SOCKS5 CONNECT localhost:" .. echo.port .. " succeeded")
    assert.are.equal(1, h.client("127.0.0.1", np.ports.nowhere, { "--bytes", "1K", "--timeout", "10" }).failed)
    h.wait_log(np, "nowhere: [^\n]* end=connect failed: [^\n]*resolve", 10)
  end)

  it("carries 1 MiB byte-exact through dante-server, and logs its failure codes by name", function()
    local dante = h.danted()
    local np = h.netproxy_start(through("dante", "localhost", echo.port, dante.port) ..
                                through("dante6", "::1", h.peer_server("echo", nil, "[::1]").port, dante.port) ..
                                through("danteref", "127.0.0.1", h.closed_port(), dante.port), { "-v" })
    for _, name in ipairs({ "dante", "dante6" }) do
      local r = h.client("127.0.0.1", np.ports[name], { "--bytes", "1M", "--half-close" })
      assert.are.equal(0, r.rc, name .. ": " .. r.err)
      assert.are.equal(1024 * 1024, r.bytes_recv)
    end
    assert.are.equal(1, h.client("127.0.0.1", np.ports.danteref, { "--bytes", "1K", "--timeout", "5" }).failed)
    h.wait_log(np, "danteref: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ said: connection refused %(5%)")
  end)

  it("authenticates to dante-server with a system user's name and password", function()
    if os.execute("test $(id -u) -eq 0") ~= 0 then
      pending("dante's username method checks system users: creating one needs root")
      return
    end
    -- the pid: two runs side by side (run-tests runs both builds at once) draw the same
    -- math.random numbers
    local user, pass = "npspec" .. h.pid(), "Socks5-" .. math.random(100000, 999999)
    assert.are.equal(0, os.execute(("useradd -M -s /usr/sbin/nologin %s && echo '%s:%s' | chpasswd"):format(user, user, pass)))
    finally(function() os.execute("userdel " .. user .. " 2>/dev/null") end)
    local dante = h.danted("username")
    local np = h.netproxy_start(through("good", "127.0.0.1", echo.port, dante.port, ('proxy_user = %q, proxy_pass = %q'):format(user, pass)) ..
                                through("bad", "127.0.0.1", echo.port, dante.port, ('proxy_user = %q, proxy_pass = "nope"'):format(user)) ..
                                through("none", "127.0.0.1", echo.port, dante.port), { "-v" })
    local r = h.client("127.0.0.1", np.ports.good, { "--bytes", "1M", "--half-close" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(1024 * 1024, r.bytes_recv)
    assert.are.equal(1, h.client("127.0.0.1", np.ports.bad, { "--bytes", "1K", "--timeout", "5" }).failed)
    assert.are.equal(1, h.client("127.0.0.1", np.ports.none, { "--bytes", "1K", "--timeout", "5" }).failed)
    h.wait_log(np, "bad: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ refused the credentials of user \"" .. user .. "\"")
    h.wait_log(np, "none: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ accepts none of our methods")
  end)

  describe("with a misbehaving proxy", function()
    it("passes bytes the proxy sent right after its reply on to the client", function()
      local fake = fake_socks([[
dd bs=1 count=3 of=/dev/null 2>/dev/null
printf '\005\000'
dd bs=1 count=10 of=/dev/null 2>/dev/null
printf '\005\000\000\001\177\000\000\001\000\001BANNER from the tunnel\r\n'
exec cat
]])
      local np = h.netproxy_start(through("eager", "127.0.0.1", 9, fake.port))
      local out = h.run({ "sh", "-c", ("printf 'hello\\n' | socat -t 3 - TCP:127.0.0.1:%d"):format(np.ports.eager) })
      assert.are.equal("BANNER from the tunnel\r\nhello\n", out)
    end)

    it("closes on garbage, on a method it did not offer, and on a silent proxy", function()
      -- each reads the greeting first: closing with it unread would reset the connection
      local garbage = fake_socks("dd bs=1 count=3 of=/dev/null 2>/dev/null\nprintf 'HTTP/1.0 400 Bad Request\\r\\n\\r\\n'\nsleep 2\n")
      local gssapi = fake_socks("dd bs=1 count=3 of=/dev/null 2>/dev/null\nprintf '\\005\\001'\nsleep 5\n")
      local silent = h.peer_server("silent")
      local np = h.netproxy_start(through("garbage", "127.0.0.1", 9, garbage.port) ..
                                  through("gssapi", "127.0.0.1", 9, gssapi.port) ..
                                  through("silent", "127.0.0.1", 9, silent.port, "reply_timeout = 1"))
      for _, name in ipairs({ "garbage", "gssapi", "silent" }) do
        assert.are.equal(1, h.client("127.0.0.1", np.ports[name], { "--bytes", "1K", "--timeout", "5" }).failed)
      end
      h.wait_log(np, "garbage: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+: greeting: version 72, not 5")
      h.wait_log(np, "gssapi: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ chose method 1, which we did not offer")
      local took = h.wait_log(np, "silent: [^\n]* time=([%d%.]+)s end=connect failed: proxy 127%.0%.0%.1:%d+: greeting: timeout")
      assert.is_true(h.about(took, 1), "gave up after " .. took .. "s")
    end)
  end)

  it("is checked: proxy_host and proxy_port wanted, remote_dns a boolean", function()
    local path = h.write(h.tmpfile("bad.lua"), [[
proxy { name = "a", from = { type = "tcp", port = 1 }, to = { type = "socks5", host = "h", port = 2 } }
proxy { name = "b", from = { type = "tcp", port = 1 }, to = { type = "socks5", host = "h", port = 2, proxy_host = "p", proxy_port = 3, remote_dns = "yes" } }
proxy { name = "c", from = { type = "tcp", port = 1 }, to = { type = "socks5", host = "h", port = 2, proxy_host = "p", proxy_port = 3, users = {} } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("bad.lua:1: proxy 'a': to: missing proxy_host or proxy_port", 1, true), err)
    assert.truthy(err:find("bad.lua:2: proxy 'b': to: remote_dns: want true or false", 1, true), err)
    assert.truthy(err:find("bad.lua:3: proxy 'c': to: 'users' is for the other position, not 'to'", 1, true), err)
  end)
end)

describe("examples/socks-server.lua", function()
  teardown(h.stop_all)

  it("serves the team with passwords, logs who asked, and rewrites a legacy name", function()
    local web = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n", "--close" })
    local config = h.read(h.root .. "/examples/socks-server.lua")
        :gsub("port = 1080", "port = 0"):gsub("%[80%] = true", "[" .. web.port .. "] = true")
    local np = h.netproxy_start(config)
    local port = np.ports["team-socks"]
    local url = "http://legacy.team.example:" .. web.port .. "/"
    local out, err, rc = socks_curl("--socks5-hostname", port, url, "-U", "alice:wonderland")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "team%-socks: alice asks for legacy%.team%.example:" .. web.port .. " %-> 127%.0%.0%.1")
    h.wait_log(np, "team%-socks: SOCKS5 CONNECT legacy%.team%.example:%d+ for user \"alice\" rewritten to 127%.0%.0%.1:%d+")
    _, err, rc = socks_curl("--socks5-hostname", port, url)
    assert.are_not.equal(0, rc)
    _, err, rc = socks_curl("--socks5-hostname", port, "http://legacy.team.example:8/", "-U", "bob:builder")
    assert.truthy(err:find("(2)", 1, true), err)
    h.wait_log(np, "team%-socks: [^\n]* end=refused: route refused legacy%.team%.example:8: port 8 is not served here")
  end)
end)
