-- The one-line form through proxies: -P socks5://, -P http:// (and no scheme), -P repeated for a
-- chain; standard input and output byte-exact through microsocks and tinyproxy, and ssh's
-- ProxyCommand to a real sshd through a SOCKS5 proxy and through two proxies in a row.
local h = require "spec.helpers"

local function bytes_file(n)
  local path = h.tmpfile("bytes")
  os.execute(("head -c %d /dev/urandom > %s"):format(n, path))
  return path
end

-- netproxy ARGS... with the file input on standard input, kept open until all of it has come
-- back on standard output (tinyproxy and microsocks close both ways at the first EOF), or
-- netproxy exits; env: "NAME=value" or nil. Returns output, stderr, status.
local function stdio(input, args, env)
  local data = h.read(input)
  local argv = env and { "env", env, h.netproxy } or { h.netproxy }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  -- (want sees stdout then stderr: the echo is whole once stdout begins with all of it)
  local out, err, rc = h.interact(argv, data, { timeout = 30, want = function(got) return got:sub(1, #data) == data end })
  return out, err, rc
end

-- A real sshd on a free port, with a key pair for root; nil when it cannot run here.
local function sshd()
  if os.execute("test -x /usr/sbin/sshd && test $(id -u) -eq 0") ~= 0 then return nil end
  local dir = h.tmp() .. "/ssh-oneline"
  os.execute("mkdir -p " .. dir .. " /run/sshd && chmod 700 " .. dir)
  os.execute(("ssh-keygen -q -t ed25519 -N '' -f %s/host_key && ssh-keygen -q -t ed25519 -N '' -f %s/user_key && cp %s/user_key.pub %s/authorized_keys")
             :format(dir, dir, dir, dir))
  local p = h.on_free_port("sshd", function(port)
    h.write(dir .. "/sshd_config", table.concat({
      "Port " .. port, "ListenAddress 127.0.0.1", "HostKey " .. dir .. "/host_key",
      "AuthorizedKeysFile " .. dir .. "/authorized_keys", "PasswordAuthentication no",
      "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "StrictModes no",
      "UsePAM no", "PermitRootLogin prohibit-password", "PidFile " .. dir .. "/sshd.pid", "",
    }, "\n"))
    return h.spawn({ "/usr/sbin/sshd", "-D", "-e", "-f", dir .. "/sshd_config" })
  end)
  p.dir = dir
  return p
end

local function ssh(server, proxy_command)
  return h.run({ "ssh", "-F", "/dev/null", "-i", server.dir .. "/user_key", "-p", tostring(server.port),
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ProxyCommand=" .. proxy_command,
                 "root@127.0.0.1", "echo hello through netproxy" })
end

describe("the one-line form with -P", function()
  local echo, tiny, ms, ms_auth

  setup(function()
    echo = h.peer_server("echo")
    tiny = h.tinyproxy()
    ms = h.microsocks()
    ms_auth = h.microsocks("bob", "builder")
  end)
  teardown(h.stop_all)

  it("relays standard input and output through -P socks5://, byte-exact", function()
    local input = bytes_file(1024 * 1024)
    local out, err, rc = stdio(input, { "-P", "socks5://127.0.0.1:" .. ms.port, "127.0.0.1", tostring(echo.port) })
    assert.are.equal(0, rc, err)
    assert.is_true(out == h.read(input), "bytes differ")
    assert.are.equal("", err)
  end)

  it("authenticates to the first -P with --proxy-user and NETPROXY_PROXY_PASS", function()
    local input = bytes_file(200000)
    local out, err, rc = stdio(input, { "-P", "socks5://127.0.0.1:" .. ms_auth.port, "--proxy-user", "bob", "localhost", tostring(echo.port) },
                               "NETPROXY_PROXY_PASS=builder")
    assert.are.equal(0, rc, err)
    assert.is_true(out == h.read(input), "bytes differ")
    _, err = stdio(input, { "-v", "-P", "socks5://127.0.0.1:" .. ms_auth.port, "--proxy-user", "bob", "localhost", tostring(echo.port) },
                   "NETPROXY_PROXY_PASS=wrong")
    assert.truthy(err:find("refused the credentials of user \"bob\"", 1, true), err)
  end)

  it("goes through a chain of -P in the order given: http://, then socks5://, then a bare one", function()
    local input = bytes_file(1024 * 1024)
    local out, err, rc = stdio(input, { "--log-level", "info", "-P", "http://127.0.0.1:" .. tiny.port, "-P", "socks5://127.0.0.1:" .. ms.port,
                                        "127.0.0.1", tostring(echo.port) })
    assert.are.equal(0, rc, err)
    assert.is_true(out == h.read(input), "bytes differ")
    assert.truthy(err:find("proxy 127.0.0.1:" .. ms.port .. ": SOCKS5 CONNECT 127.0.0.1:" .. echo.port .. " succeeded", 1, true), err)
    out, err, rc = stdio(input, { "--log-level", "info", "-P", "socks5h://127.0.0.1:" .. ms.port, "-P", "127.0.0.1:" .. tiny.port,
                                  "127.0.0.1", tostring(echo.port) })
    assert.are.equal(0, rc, err)
    assert.is_true(out == h.read(input), "bytes differ")
    assert.truthy(err:find("proxy 127.0.0.1:" .. ms.port .. ": SOCKS5 CONNECT 127.0.0.1:" .. tiny.port .. " succeeded", 1, true), err)
  end)

  it("says which -P is wrong", function()
    local _, err, rc = h.run({ h.netproxy, "-P", "ftp://127.0.0.1:21", "h", "22" })
    assert.are.equal(1, rc)
    assert.truthy(err:find("command line: -P ftp://127.0.0.1:21: unknown scheme 'ftp' (want http://, https:// or socks5://)", 1, true), err)
    _, err, rc = h.run({ h.netproxy, "-P", "socks5://127.0.0.1", "h", "22" })
    assert.are.equal(1, rc)
    assert.truthy(err:find("command line: -P socks5://127.0.0.1: want HOST:PORT", 1, true), err)
  end)

  it("is ssh's ProxyCommand through a SOCKS5 proxy, and through two proxies in a row, to a real sshd", function()
    local server = sshd()
    if not server then
      pending("needs root and /usr/sbin/sshd (openssh-server)")
      return
    end
    local out, err, rc = ssh(server, ("%s -P socks5://127.0.0.1:%d %%h %%p"):format(h.netproxy, ms.port))
    assert.are.equal(0, rc, err)
    assert.are.equal("hello through netproxy\n", out)
    out, err, rc = ssh(server, ("%s -P http://127.0.0.1:%d -P socks5://127.0.0.1:%d %%h %%p"):format(h.netproxy, tiny.port, ms.port))
    assert.are.equal(0, rc, err)
    assert.are.equal("hello through netproxy\n", out)
    h.stop(server)
  end)
end)
