-- dual with a server-side branch: SOCKS5 (netproxy's own server, curl as the client), SSH (a
-- real sshd and ssh) and HTTPS (openssl s_server, curl) on one port; an HTTP CONNECT branch
-- that goes on through microsocks; hostile SOCKS5 clients of the branch.
local h = require "spec.helpers"

describe("dual with a socks5 branch", function()
  local pki, web, https, ms, sshd, np

  setup(function()
    pki = h.pki()
    web = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n", "--close" })
    ms = h.microsocks()
    local dir = h.tmp() .. "/dual-www"
    os.execute(("mkdir -p %s && echo 'served by s_server' > %s/who.txt && cp %s/localhost.pem %s/localhost.key %s/")
               :format(dir, dir, pki, pki, dir))
    https = h.on_free_port("s_server", function(port)
      return h.spawn({ "sh", "-c", ("cd %s && exec openssl s_server -quiet -WWW -accept 127.0.0.1:%d -cert localhost.pem -key localhost.key")
                                   :format(dir, port) })
    end)
    if os.execute("test -x /usr/sbin/sshd && test $(id -u) -eq 0") == 0 then
      local sdir = h.tmp() .. "/ssh-dual"
      os.execute("mkdir -p " .. sdir .. " /run/sshd && chmod 700 " .. sdir)
      os.execute(("ssh-keygen -q -t ed25519 -N '' -f %s/host_key && ssh-keygen -q -t ed25519 -N '' -f %s/user_key && cp %s/user_key.pub %s/authorized_keys")
                 :format(sdir, sdir, sdir, sdir))
      sshd = h.on_free_port("sshd", function(port)
        h.write(sdir .. "/sshd_config", table.concat({
          "Port " .. port, "ListenAddress 127.0.0.1", "HostKey " .. sdir .. "/host_key",
          "AuthorizedKeysFile " .. sdir .. "/authorized_keys", "PasswordAuthentication no",
          "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "StrictModes no",
          "UsePAM no", "PermitRootLogin prohibit-password", "PidFile " .. sdir .. "/sshd.pid", "",
        }, "\n"))
        return h.spawn({ "/usr/sbin/sshd", "-D", "-e", "-f", sdir .. "/sshd_config" })
      end)
      sshd.dir = sdir
    end
    np = h.netproxy_start(([[
proxy { name = "oneport", negotiation_timeout = 3,
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 2, probes = {
          { match = "ssh", to = { type = "tcp", host = "127.0.0.1", port = %d } },
          { match = "tls", to = { type = "tcp", host = "127.0.0.1", port = %d } },
          { match = "socks5", from = { type = "socks5", allow = { "127.0.0.1:*", "localhost:*" },
                                       users = { alice = "wonderland" } } },
          { match = "http", from = { type = "connect", allow = { "localhost:*" } },
            to = { type = "socks5", proxy_host = "127.0.0.1", proxy_port = %d } },
        } } }
]]):format(sshd and sshd.port or 9, https.port, ms.port), { "-v" })
  end)
  teardown(h.stop_all)
  -- one netproxy for the describe: each test reads only the log lines since its own mark
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  local function socks_curl(...)
    local argv = { "curl", "-sS", "--max-time", "5", "--socks5-hostname", "127.0.0.1:" .. np.ports.oneport, ... }
    return h.run(argv)
  end

  it("serves SOCKS5 on the shared port, with its users and allow list", function()
    local out, err, rc = socks_curl("-U", "alice:wonderland", "http://localhost:" .. web.port .. "/")
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "oneport: dual: probe 3 %(socks5%) matched after %d+ bytes")
    h.wait_log(np, "oneport: SOCKS5 CONNECT localhost:" .. web.port .. " for user \"alice\"")
    local _
    _, err, rc = socks_curl("-U", "alice:wonderland", "http://example.invalid:" .. web.port .. "/")
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("(2)", 1, true), err)
    _, _, rc = socks_curl("http://localhost:" .. web.port .. "/")
    assert.are_not.equal(0, rc)
    h.wait_log(np, "oneport: [^\n]* end=refused: no acceptable method")
  end)

  it("serves HTTPS on the same port", function()
    local out, err, rc = h.run({ "curl", "-sS", "--max-time", "5", "--cacert", pki .. "/ca.pem",
                                 "--resolve", "localhost:" .. np.ports.oneport .. ":127.0.0.1",
                                 "https://localhost:" .. np.ports.oneport .. "/who.txt" })
    assert.are.equal(0, rc, err)
    assert.are.equal("served by s_server\n", out)
    h.wait_log(np, "oneport: dual: probe 2 %(tls%) matched")
  end)

  it("serves SSH on the same port, to a real sshd", function()
    if not sshd then
      pending("needs root and /usr/sbin/sshd (openssh-server)")
      return
    end
    local out, err, rc = h.run({ "ssh", "-F", "/dev/null", "-i", sshd.dir .. "/user_key", "-p", tostring(np.ports.oneport),
                                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                 "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1", "echo hello over the shared port" })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello over the shared port\n", out)
    h.wait_log(np, "oneport: dual: probe 1 %(ssh%) matched")
  end)

  it("serves HTTP CONNECT on the same port, going on through microsocks", function()
    local out, err, rc = h.run({ "curl", "-sS", "--max-time", "5", "-p", "-x", "http://127.0.0.1:" .. np.ports.oneport,
                                 "http://localhost:" .. web.port .. "/" })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello\n", out)
    h.wait_log(np, "oneport: proxy 127%.0%.0%.1:" .. ms.port .. ": SOCKS5 CONNECT localhost:" .. web.port .. " succeeded")
  end)

  it("closes a hostile SOCKS5 client of the branch, and goes on serving", function()
    local file = h.write(h.tmpfile("hostile"), "\5\1\2" .. "\1\0\0")   -- the greeting, then an empty user name
    local out = h.run({ "sh", "-c", ("socat -t 3 - TCP:127.0.0.1:%d < %s"):format(np.ports.oneport, file) })
    assert.are.equal("\5\2", out)
    h.wait_log(np, "oneport: [^\n]* end=refused: authentication: empty user name")
    local good = socks_curl("-U", "alice:wonderland", "http://localhost:" .. web.port .. "/")
    assert.are.equal("hello\n", good)
  end)

  it("is checked: a branch's from must hear its target from the client, and may not listen", function()
    local path = h.write(h.tmpfile("bad-dual.lua"), [[
proxy { name = "a", from = { type = "dual", port = 1, probes = { { match = "socks5", from = { type = "tcp" } } } } }
proxy { name = "b", from = { type = "dual", port = 1, probes = { { match = "socks5", from = { type = "socks5" } } } } }
proxy { name = "c", from = { type = "dual", port = 1, probes = { { match = "socks5", from = { type = "socks5", port = 2, allow = { "*:*" } } } } } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("bad-dual.lua:1: proxy 'a': from: probes[1].from: the tcp connector does not hear a target from the client", 1, true), err)
    assert.truthy(err:find("bad-dual.lua:2: proxy 'b': from.probes[1].from: from: needs route", 1, true), err)
    assert.truthy(err:find("bad-dual.lua:3: proxy 'c': from.probes[1].from: from: no host or port here", 1, true), err)
  end)
end)
