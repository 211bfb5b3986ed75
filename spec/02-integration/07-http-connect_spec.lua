-- HTTP CONNECT both ways, against real peers: tinyproxy as the upstream proxy, curl as a
-- client of netproxy's own CONNECT proxy, fake proxies (np-peer reply) that misbehave, and
-- the stdio form as an ssh ProxyCommand with a real sshd.
local h = require "spec.helpers"

-- tinyproxy closes both directions at the first EOF, so exchanges through it keep the client's
-- write side open until every byte has come back (no --half-close).
local function via(name, target_port, proxy_port, extra)
  return ([[
proxy { name = %q, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "connect", host = "127.0.0.1", port = %d,
               proxy_host = "127.0.0.1", proxy_port = %d, %s } }
]]):format(name, target_port, proxy_port, extra or "")
end

-- A fake proxy (or HTTP server) answering `text` to the first request header.
local function fake(text, args)
  local save = h.tmpfile("request")
  local argv = { "--text", text, "--save", save }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = h.peer_server("reply", argv)
  p.request = function() return h.read(save) end
  return p
end

describe("to = connect (through an HTTP proxy)", function()
  local echo, tiny, tiny_auth, np

  setup(function()
    echo = h.peer_server("echo")
    tiny = h.tinyproxy()
    tiny_auth = h.tinyproxy({ alice = "wonderland" })
    np = h.netproxy_start(via("plain", echo.port, tiny.port) ..
                          via("auth", echo.port, tiny_auth.port, 'proxy_user = "alice", proxy_pass = "wonderland",') ..
                          via("wrongpass", echo.port, tiny_auth.port, 'proxy_user = "alice", proxy_pass = "nope",'),
                          { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("carries 1 MiB byte-exact through tinyproxy", function()
    local r = h.client("127.0.0.1", np.ports.plain, { "--bytes", "1M" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(1024 * 1024, r.bytes_recv)
    h.wait_log(np, "plain: proxy 127%.0%.0%.1:" .. tiny.port .. ": HTTP/1%.0 200 Connection established")
  end)

  it("authenticates to tinyproxy with proxy_user and proxy_pass", function()
    local r = h.client("127.0.0.1", np.ports.auth, { "--bytes", "1M" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(1024 * 1024, r.bytes_recv)
  end)

  it("closes the client and logs the proxy's status line when it refuses the credentials", function()
    local r = h.client("127.0.0.1", np.ports.wrongpass, { "--bytes", "1K", "--timeout", "5" })
    assert.are.equal(1, r.failed)
    h.wait_log(np, "wrongpass: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ said: HTTP/1%.0 401")
  end)

  describe("with a misbehaving proxy", function()
    local proxies, np2

    setup(function()
      proxies = {
        p407 = fake("HTTP/1.1 407 Proxy Authentication Required\\r\\nProxy-Authenticate: Basic realm=\"x\"\\r\\n\\r\\n", { "--close" }),
        garbage = fake("SSH-2.0-OpenSSH_9.2\\r\\n\\r\\n", { "--close" }),
        slow = fake("HTTP/1.1 200 OK\\r\\n\\r\\n", { "--delay", "5" }),
        eager = fake("HTTP/1.1 200 Connection established\\r\\nVia: fake\\r\\n\\r\\nBANNER from the tunnel\\r\\n"),
        huge = fake("HTTP/1.1 200 OK\\r\\nX-Junk: " .. ("j"):rep(3000) .. "\\r\\n\\r\\n"),
      }
      local config = ""
      for name, p in pairs(proxies) do
        -- the silent one gets 3 s: the others must be served within them, load or not
        local timeout = name == "slow" and 3 or 1
        config = config .. via(name, 9, p.port, 'proxy_agent = "netproxy-spec", reply_timeout = ' .. timeout .. ', max_header = 2048,')
      end
      np2 = h.netproxy_start(config .. via("ok", echo.port, tiny.port), { "-v" })
    end)
    teardown(function() h.stop(np2) end)
    before_each(function() np2.mark() end)

    it("sends a proper CONNECT request with the User-Agent", function()
      h.client("127.0.0.1", np2.ports.eager, { "--bytes", "1K", "--timeout", "2" })
      local req = proxies.eager.request()
      assert.are.equal("CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUser-Agent: netproxy-spec\r\n\r\n", req)
    end)

    it("closes on a 407 and logs the status line", function()
      assert.are.equal(1, h.client("127.0.0.1", np2.ports.p407, { "--bytes", "1K", "--timeout", "5" }).failed)
      h.wait_log(np2, "p407: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ said: HTTP/1%.1 407 Proxy Authentication Required")
    end)

    it("closes on garbage", function()
      assert.are.equal(1, h.client("127.0.0.1", np2.ports.garbage, { "--bytes", "1K", "--timeout", "5" }).failed)
      h.wait_log(np2, "garbage: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+ answered garbage: \"SSH%-2%.0%-OpenSSH_9%.2\"")
    end)

    it("closes on a reply header over max_header", function()
      assert.are.equal(1, h.client("127.0.0.1", np2.ports.huge, { "--bytes", "1K", "--timeout", "5" }).failed)
      h.wait_log(np2, "huge: [^\n]* end=connect failed: proxy 127%.0%.0%.1:%d+: reply header too long")
    end)

    it("gives up on a silent proxy after reply_timeout, while other connections are served", function()
      local waiting = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np2.ports.slow, "--bytes", "1K", "--timeout", "10" })
      h.wait_until(proxies.slow.request, 5, "netproxy's request to the silent proxy")
      local r = h.client("127.0.0.1", np2.ports.ok, { "--conns", "20", "--parallel", "5", "--bytes", "64K" })
      assert.are.equal(0, r.rc, r.err)
      -- served while the silent proxy is still waited for: a loop held by it would end that one first
      assert.falsy(np2.log():find("slow: [^\n]* end="), "served in " .. r.seconds .. "s, after the silent proxy's timeout")
      local took = h.wait_log(np2, "slow: [^\n]* time=([%d%.]+)s end=connect failed: proxy 127%.0%.0%.1:%d+: timeout")
      assert.is_true(h.about(took, 3), "gave up after " .. took .. "s")
      assert.are.equal(1, h.exit_status(waiting, 5))
    end)

    it("passes bytes the proxy sent right after its 200 on to the client", function()
      local want = "BANNER from the tunnel\r\nhello\n"
      assert.are.same({ want, "want" }, { h.talk(np2.ports.eager, "hello\n", { keep_open = true, want = #want }) })
    end)
  end)
end)

describe("from = connect (netproxy as the CONNECT proxy)", function()
  local web, echo, np

  setup(function()
    web = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n", "--close" })
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
proxy { name = "routed",
        from = { type = "connect", host = "127.0.0.1", port = 0,
                 route = function(host, port, conn)
                   if host == "old.example" then return "127.0.0.1", port end
                   if host == "forbidden.example" then return nil, "not today" end
                   return host, port
                 end } }
proxy { name = "listed",
        from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:%d" } } }
proxy { name = "locked",
        from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "*:*" },
                 users = { alice = "wonderland" }, realm = "spec" } }
]]):format(web.port), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  local function curl(port, url, ...)
    local argv = { "curl", "-sS", "-p", "-x", "http://127.0.0.1:" .. port, "--max-time", "5", ... }
    argv[#argv + 1] = url
    return h.run(argv)
  end

  it("tunnels curl to the target it asks for", function()
    local out, err, rc = curl(np.ports.routed, "http://127.0.0.1:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
  end)

  it("lets route rewrite the target, and logs it", function()
    local out, err, rc = curl(np.ports.routed, "http://old.example:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "routed: CONNECT old%.example:" .. web.port .. " rewritten to 127%.0%.0%.1:" .. web.port)
  end)

  it("answers 403 when route refuses", function()
    local _, err, rc = curl(np.ports.routed, "http://forbidden.example:" .. web.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("403", 1, true), err)
    h.wait_log(np, "routed: [^\n]* end=refused: route refused forbidden%.example:%d+: not today")
  end)

  it("serves only its allow list without a route function", function()
    local out, err, rc = curl(np.ports.listed, "http://127.0.0.1:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    _, err, rc = curl(np.ports.listed, "http://127.0.0.1:" .. echo.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("403", 1, true), err)
  end)

  it("asks for credentials with a 407 and lets the right ones in", function()
    local _, err, rc = curl(np.ports.locked, "http://127.0.0.1:" .. web.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("407", 1, true), err)
    local out
    out, err, rc = curl(np.ports.locked, "http://127.0.0.1:" .. web.port .. "/", "-U", "alice:wonderland")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    _, err, rc = curl(np.ports.locked, "http://127.0.0.1:" .. web.port .. "/", "-U", "alice:guess")
    assert.truthy(err:find("407", 1, true), err)
    h.wait_log(np, "locked: [^\n]* end=refused: bad credentials for user \"alice\"")
  end)

  it("answers 502 when the target cannot be reached", function()
    local closed = h.closed_port()
    local _, err, rc = curl(np.ports.routed, "http://127.0.0.1:" .. closed .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("502", 1, true), err)
  end)

  -- Sends bytes, the write side left open, and returns what came back until netproxy closed.
  local function raw(port, bytes)
    local out, how = h.talk(port, bytes, { keep_open = true })
    assert.are_not.equal("timeout", how, "netproxy did not close")
    return out
  end

  it("answers a garbage request with 400 and closes, unharmed", function()
    local out = raw(np.ports.routed, "\1\2\3 hello there\r\n\r\n")
    assert.truthy(out:match("^HTTP/1%.1 400 Bad Request\r\n"), out)
    -- origin form: a request for the proxy itself, not one to forward (78-http-forward)
    out = raw(np.ports.routed, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.truthy(out:match("^HTTP/1%.1 400 Bad Request\r\n"), out)
    assert.are.equal("hello\n", (curl(np.ports.routed, "http://127.0.0.1:" .. web.port .. "/")))
  end)

  it("answers a 70 KiB request line with 431 and closes, unharmed", function()
    local out = raw(np.ports.routed, "CONNECT " .. ("a"):rep(70 * 1024) .. ":80 HTTP/1.1\r\n\r\n")
    assert.truthy(out:match("^HTTP/1%.1 431 Request Header Fields Too Large\r\n"), out)
    h.wait_log(np, "routed: [^\n]* end=refused: request: too long")
    assert.are.equal("hello\n", (curl(np.ports.routed, "http://127.0.0.1:" .. web.port .. "/")))
  end)

  it("refuses a config that would be an open proxy", function()
    local path = h.write(h.tmpfile("open.lua"), 'proxy { from = { type = "connect", port = 3128 } }\n')
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("netproxy is no open proxy", 1, true), err)
  end)
end)

describe("from = stdio", function()
  local echo, tiny

  setup(function()
    echo = h.peer_server("echo")
    tiny = h.tinyproxy({ alice = "wonderland" })
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  -- Runs a shell command whose stdin gets the file `input` and is held open until `output`
  -- has as many bytes (tinyproxy closes both ways at the first EOF: what is in flight is lost).
  local function through(cmd, input, output)
    local size = #h.read(input)
    return h.interact({ "sh", "-c", cmd }, h.read(input), { want = function()
      return #(h.read(output) or "") >= size
    end })
  end
  local function bytes_file(n)
    local path = h.tmpfile("bytes")
    os.execute(("head -c %d /dev/urandom > %s"):format(n, path))
    return path
  end

  it("relays standard input and output through tinyproxy (one-line form), then exits 0", function()
    local input = bytes_file(1024 * 1024)
    local output = h.tmpfile("out")
    local cmd = ("NETPROXY_PROXY_PASS=wonderland %s -P 127.0.0.1:%d --proxy-user alice 127.0.0.1 %d > %s")
        :format(h.netproxy, tiny.port, echo.port, output)
    local _, err, rc = through(cmd, input, output)
    assert.are.equal(0, rc, err)
    assert.are.equal(h.read(input), h.read(output))
    assert.are.equal("", err)   -- quiet by default: ssh shows ProxyCommand's stderr
  end)

  it("relays a regular file as standard input to a regular file as standard output (no epoll for files)", function()
    local input = bytes_file(3 * 1024 * 1024)
    local output = h.tmpfile("out")
    local _, err, rc = h.run({ "sh", "-c", ("%s -q 127.0.0.1 %d < %s > %s"):format(h.netproxy, echo.port, input, output) })
    assert.are.equal(0, rc, err)
    assert.is_true(h.read(input) == h.read(output), "bytes differ")
  end)

  it("relays standard input and output from a config script", function()
    local config = h.write(h.tmpfile("stdio.lua"), ([[
proxy { from = { type = "stdio" },
        to = { type = "connect", host = "127.0.0.1", port = %d, proxy_host = "127.0.0.1",
               proxy_port = %d, proxy_user = "alice", proxy_pass = "wonderland" } }
]]):format(echo.port, tiny.port))
    local input = bytes_file(200000)
    local output = h.tmpfile("out")
    local _, err, rc = through(("%s %s > %s"):format(h.netproxy, config, output), input, output)
    assert.are.equal(0, rc, err)
    assert.are.equal(h.read(input), h.read(output))
    assert.truthy(err:find("stdio -> 127.0.0.1:" .. echo.port .. " in=200000 out=200000", 1, true), err)
  end)

  it("is ssh's ProxyCommand through a CONNECT proxy, to a real sshd", function()
    if os.execute("test -x /usr/sbin/sshd && test $(id -u) -eq 0") ~= 0 then
      pending("needs root and /usr/sbin/sshd (openssh-server)")
      return
    end
    local dir = h.tmp() .. "/ssh"
    os.execute("mkdir -p " .. dir .. " /run/sshd && chmod 700 " .. dir)
    os.execute(("ssh-keygen -q -t ed25519 -N '' -f %s/host_key && ssh-keygen -q -t ed25519 -N '' -f %s/user_key && cp %s/user_key.pub %s/authorized_keys")
               :format(dir, dir, dir, dir))
    local sshd = h.on_free_port("sshd", function(port)
      h.write(dir .. "/sshd_config", table.concat({
        "Port " .. port, "ListenAddress 127.0.0.1", "HostKey " .. dir .. "/host_key",
        "AuthorizedKeysFile " .. dir .. "/authorized_keys", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "StrictModes no",
        "UsePAM no", "PermitRootLogin prohibit-password", "PidFile " .. dir .. "/sshd.pid", "",
      }, "\n"))
      return h.spawn({ "/usr/sbin/sshd", "-D", "-e", "-f", dir .. "/sshd_config" })
    end)
    local port = sshd.port
    local proxy_command = ("env NETPROXY_PROXY_PASS=wonderland %s -P 127.0.0.1:%d --proxy-user alice %%h %%p")
        :format(h.netproxy, tiny.port)
    local out, err, rc = h.run({ "ssh", "-F", "/dev/null", "-i", dir .. "/user_key", "-p", tostring(port),
                                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                 "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                                 "-o", "ProxyCommand=" .. proxy_command,
                                 "root@127.0.0.1", "echo hello through netproxy" })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello through netproxy\n", out)
    h.stop(sshd)
  end)
end)
