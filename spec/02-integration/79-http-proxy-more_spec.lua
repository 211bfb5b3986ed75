-- The HTTP proxy's rest of issue 26: HTTPS proxies upstream (`to = connect` with tls = true,
-- `-P https://`, in a chain), a WebSocket echo through `from = connect` (CONNECT and plain-http
-- Upgrade), the seed's host name mangling with a reload of its table, and a real browser
-- (headless Chromium) through the proxy.
--
-- The HTTPS proxy on loopback is socat's OPENSSL-LISTEN (an h.pki() certificate for
-- 127.0.0.1) in front of tinyproxy: a real TLS server in front of a real CONNECT proxy.
local h = require "spec.helpers"

-- An HTTPS proxy: TLS on .port, CONNECT served by tinyproxy behind it.
local function https_proxy(tiny)
  local pki = h.pki()
  return h.on_free_port("socat (https proxy)", function(port)
    return h.spawn({ "socat",
      ("OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,verify=0,cert=%s/localhost.pem,key=%s/localhost.key")
        :format(port, pki, pki),
      "TCP:127.0.0.1:" .. tiny.port })
  end)
end

-- One echo exchange through port: "hello\n" back?
local function echoes(port)
  local out, how = h.talk(port, "hello\n", { keep_open = true, want = "hello\n", timeout = 10 })
  return out == "hello\n", out .. " (" .. tostring(how) .. ")"
end

-- netproxy's one-line stdio form with "hello\n" on its input; env: VAR=value words first.
local function oneline(env, args)
  local argv = { "env" }
  for _, e in ipairs(env) do argv[#argv + 1] = e end
  argv[#argv + 1] = h.netproxy
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return h.interact(argv, "hello\n", { want = "hello\n", timeout = 15 })
end

describe("to = connect with tls = true: an HTTPS proxy upstream", function()
  local echo, tiny, tiny2, https, pki

  setup(function()
    pki = h.pki()
    echo = h.peer_server("echo")
    tiny, tiny2 = h.tinyproxy(), h.tinyproxy()
    https = https_proxy(tiny)
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  -- A netproxy from a tcp port to the echo server through `to`'s text.
  local function through(to)
    return h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "connect", host = "127.0.0.1", port = %d, %s } }
]]):format(echo.port, to), { "-v" })
  end

  it("reaches the target through the HTTPS proxy, its certificate verified against ca", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, ca = %q"):format(https.port, pki .. "/ca.pem"))
    assert(echoes(np.ports.p))
    h.wait_log(np, "tls to the proxy 127%.0%.0%.1:" .. https.port .. ": TLS")
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. https.port .. ": HTTP/1%.%d 200")
  end)

  it("refuses a proxy whose certificate another CA signed, saying so", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, ca = %q"):format(https.port, pki .. "/other-ca.pem"))
    local ok, out = echoes(np.ports.p)
    assert.is_false(ok, out)
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. https.port .. ": tls: [^\n]*certificate verify failed")
  end)

  it("refuses a certificate for another name (verify_name)", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, ca = %q, verify_name = 'elsewhere.test'")
                       :format(https.port, pki .. "/ca.pem"))
    assert.is_false((echoes(np.ports.p)))
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. https.port .. ": tls: [^\n]*")
  end)

  it("accepts any certificate with verify = false", function()
    local np = through(("proxy_host = '127.0.0.1', proxy_port = %d, tls = true, verify = false"):format(https.port))
    assert(echoes(np.ports.p))
  end)

  it("goes through a chain: an HTTPS proxy, then an HTTP proxy", function()
    local np = h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "chain", host = "127.0.0.1", port = %d, hops = {
                 { type = "connect", proxy_host = "127.0.0.1", proxy_port = %d, tls = true, ca = %q },
                 { type = "connect", proxy_host = "127.0.0.1", proxy_port = %d } } } }
]]):format(echo.port, https.port, pki .. "/ca.pem", tiny2.port), { "-v" })
    assert(echoes(np.ports.p))
    h.wait_log(np, "tls to the proxy 127%.0%.0%.1:" .. https.port)
    h.wait_log(np, "proxy 127%.0%.0%.1:" .. tiny2.port .. ": HTTP/1%.%d 200")
  end)

  -- The forwarder's bodies with TLS on the server side: sock:splice_to copies them in C.
  it("forwards plain http:// bodies through it both ways, every byte intact (copied in C, not spliced)", function()
    local portfile = h.tmpfile("origin-port")
    h.spawn({ "python3", h.root .. "/spec/support/http_origin.py", portfile, "tls" })
    local origin = tonumber(h.wait_until(function() return h.read(portfile) end, 10, "the origin's port"))
    local np = h.netproxy_start(([[
proxy { name = "web", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" } },
        to = { type = "connect", proxy_host = "127.0.0.1", proxy_port = %d, tls = true, ca = %q } }
]]):format(https.port, pki .. "/ca.pem"), { "-v" })
    local sent = h.tmpfile("upload")
    assert.are.equal(0, h.exit_status(h.spawn({ "sh", "-c", "head -c 4194304 /dev/urandom > " .. sent }), 10))
    local function sha256(file) return (h.run({ "sha256sum", file })):match("^(%x+)") end
    for _, upload in ipairs({ { "--data-binary", "@" .. sent, "/echo" },
                              { "-T", sent, "-H", "Transfer-Encoding: chunked", "/echo?chunked=100000" } }) do
      local got = h.tmpfile("echoed")
      local path = table.remove(upload)
      local argv = { "curl", "-sS", "--max-time", "20", "-x", "http://127.0.0.1:" .. np.ports.web, "-o", got }
      for _, a in ipairs(upload) do argv[#argv + 1] = a end
      argv[#argv + 1] = "http://127.0.0.1:" .. origin .. path
      local _, err, rc = h.run(argv)
      assert.are.equal(0, rc, err)
      assert.are.equal(sha256(sent), sha256(got), path)
    end
    h.wait_log(np, "tls to the proxy 127%.0%.0%.1:" .. https.port .. ": TLS")
    h.wait_log(np, "web: PUT [^\n]*/echo%?chunked=100000 200 ")
  end)

  it("-P https:// as ssh's ProxyCommand: verified against $SSL_CERT_FILE", function()
    local out, err, rc = oneline({ "SSL_CERT_FILE=" .. pki .. "/ca.pem" },
                                 { "-P", "https://127.0.0.1:" .. https.port, "127.0.0.1", tostring(echo.port) })
    assert.are.equal("hello\n", out, err)
    assert.are.equal(0, rc, err)
  end)

  it("-P https:// then -P http://: a chain", function()
    local out, err = oneline({ "SSL_CERT_FILE=" .. pki .. "/ca.pem" },
                             { "-P", "https://127.0.0.1:" .. https.port, "-P", "http://127.0.0.1:" .. tiny2.port,
                               "127.0.0.1", tostring(echo.port) })
    assert.are.equal("hello\n", out, err)
  end)

  it("-P https:// to a proxy the system's CAs do not know: the reason on stderr, exit 1", function()
    local out, err, rc = h.run({ "env", "SSL_CERT_FILE=" .. pki .. "/other-ca.pem", h.netproxy,
                                 "-P", "https://127.0.0.1:" .. https.port, "127.0.0.1", tostring(echo.port) })
    assert.are.equal("", out)
    assert.are.equal(1, rc, err)
    assert.truthy(err:find("proxy 127%.0%.0%.1:" .. https.port .. ": tls: [^\n]*certificate verify failed"), err)
  end)

  it("--check refuses what TLS to a proxy cannot do, clearly", function()
    local function check(to)
      local conf = h.write(h.tmpfile("bad.lua"), ([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = %s }
]]):format(to))
      local _, err, rc = h.run({ h.netproxy, "--check", conf })
      assert.are_not.equal(0, rc)
      return err
    end
    local err = check([[{ type = "connect", host = "h", port = 1, proxy_host = "p", proxy_port = 2, ca = "x.pem" }]])
    assert.truthy(err:find("'ca' goes with tls = true", 1, true), err)
    err = check([[{ type = "connect", host = "h", port = 1, proxy_host = "p", proxy_port = 2, tls = true, ca = "/nonexistent.pem" }]])
    assert.truthy(err:find("tls to the proxy: ", 1, true), err)
    err = check([[{ type = "chain", host = "h", port = 1, hops = {
      { type = "connect", proxy_host = "a", proxy_port = 1, tls = true, verify = false },
      { type = "connect", proxy_host = "b", proxy_port = 2, tls = true, verify = false } } }]])
    assert.truthy(err:find("hop 2: tls = true after hop 1's: TLS inside TLS is not supported", 1, true), err)
    err = check([[{ type = "connect_ssl", host = "h", port = 1, proxy_host = "p", proxy_port = 2, tls = true }]])
    assert.truthy(err:find("tls", 1, true), err)
  end)
end)

-- Debian's python3 (python3-websockets is a Debian package: a python3 of another install on
-- PATH may not have it).
local PY = "/usr/bin/python3"
local ORIGIN = h.root .. "/spec/support/http_origin.py"

-- A small server started with its port file: python3 SCRIPT PORT_FILE ARGS...; .port once up.
local function served(script, ...)
  local portfile = h.tmpfile("port")
  local argv = { PY, script, portfile }
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  local p = h.spawn(argv)
  p.port = tonumber(h.wait_until(function() return h.read(portfile) end, 10, script .. "'s port"))
  return p
end

describe("a WebSocket through from = connect (python3-websockets' server)", function()
  local ws, np

  setup(function()
    ws = served(h.root .. "/spec/support/ws_echo.py")
    np = h.netproxy_start([[
proxy { name = "web", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" } } }
]], { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  local function client(mode, message)
    return h.run({ PY, h.root .. "/spec/support/ws_client.py", mode, tostring(np.ports.web), "127.0.0.1",
                   tostring(ws.port), message })
  end

  it("echoes through a CONNECT tunnel (python3-websockets' client)", function()
    local out, err, rc = client("connect", "through the tunnel")
    assert.are.equal(0, rc, err)
    assert.are.equal("echo: through the tunnel\n", out)
    h.wait_log(np, "CONNECT 127%.0%.0%.1:" .. ws.port)
  end)

  it("echoes through a plain-http Upgrade: 101, then the relay", function()
    local out, err, rc = client("upgrade", "upgraded")
    assert.are.equal(0, rc, err)
    assert.are.equal("echo: upgraded\n", out)
    h.wait_log(np, "web: GET http://127%.0%.0%.1:" .. ws.port .. "/ 101 ")
  end)
end)

describe("the seed's mangling (examples/mangle.lua) for an http:// URL, with a reload", function()
  it("sends legacy.example to the new target once the table is edited and SIGHUP sent", function()
    h.test_begin()
    -- one origin on 127.0.0.1:P and another on 127.0.0.2:P: mangle.lua rewrites the host only
    local one = served(ORIGIN, "one")
    local dir = h.tmp() .. "/two"
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/hello", "hello from two\n")
    local two = h.spawn({ PY, "-m", "http.server", "--bind", "127.0.0.2", "--directory", dir, tostring(one.port) })
    h.wait_until(function() return h.listening_ports(two.pid)[one.port] end, 10, "the second origin")

    local example = h.read(h.root .. "/examples/mangle.lua")
    local function config(port, target)
      local text = example:gsub("port = 3128", "port = " .. port)
                          :gsub("%[80%] = true", "[80] = true, [" .. one.port .. "] = true")
                          :gsub('"legacy.example"%] = "127.0.0.1"', '"legacy.example"] = "' .. target .. '"')
      assert(text:find(target, 1, true) and text:find(tostring(one.port), 1, true), "examples/mangle.lua changed its form")
      return text
    end
    local path = h.write(h.tmpfile("mangle.lua"), config(0, "127.0.0.1"))
    local np = h.netproxy_start(path, { "-w", "2", "-v" })
    local port = np.ports.mangle
    h.write(path, config(port, "127.0.0.1"))    -- its port kept across the reload
    h.wait_log(np, "master: 2 workers")
    local function get()
      return h.run({ "curl", "-sS", "--max-time", "10", "-x", "http://127.0.0.1:" .. port,
                     "http://legacy.example:" .. one.port .. "/hello" })
    end
    local out, err = get()
    assert.are.equal("hello from one\n", out, err)
    h.wait_log(np, "legacy%.example:" .. one.port .. " asked by [^\n]* %-> 127%.0%.0%.1")

    h.write(path, config(port, "127.0.0.2"))   -- the table edited: legacy.example moves
    os.execute("kill -HUP " .. np.pid)
    h.wait_reloaded(np, 1)
    out, err = get()
    assert.are.equal("hello from two\n", out, err)
    h.wait_log(np, "legacy%.example:" .. one.port .. " asked by [^\n]* %-> 127%.0%.0%.2")
    h.stop_all()
    h.test_end()
  end)
end)

-- Headless Chromium (Debian's chromium; root needs --no-sandbox) through the proxy.
describe("a real browser through from = connect", function()
  local np, origin, tls_origin, profile, runnable

  -- chromium --dump-dom URL through the proxy; returns the DOM, stderr, exit status.
  local function browse(url)
    return h.run({ "timeout", "60", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                   "--no-first-run", "--user-data-dir=" .. profile, "--ignore-certificate-errors",
                   "--proxy-server=http://127.0.0.1:" .. np.ports.web, "--proxy-bypass-list=<-loopback>",
                   "--dump-dom", url })
  end

  setup(function()
    profile = h.tmp() .. "/chromium-profile"
    -- runs at all? (no binary, or a machine where it cannot start: no /dev/shm, say)
    local _, err, rc = h.run({ "sh", "-c", "command -v chromium >/dev/null && timeout 60 chromium --headless --no-sandbox " ..
                               "--disable-gpu --user-data-dir=" .. profile .. " --dump-dom 'data:text/html,<p>up</p>'" })
    runnable = rc == 0 or ("chromium cannot run on this machine (exit " .. tostring(rc) .. "): " .. err:sub(-300))
    if runnable ~= true then return end
    local pki = h.pki()
    origin = served(ORIGIN, "one")
    tls_origin = h.on_free_port("socat (https origin)", function(port)
      return h.spawn({ "socat",
        ("OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,verify=0,cert=%s/localhost.pem,key=%s/localhost.key")
          :format(port, pki, pki),
        "TCP:127.0.0.1:" .. origin.port })
    end)
    -- only loopback is served: the browser's own calls home get a 403
    np = h.netproxy_start([[
proxy { name = "web", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" } } }
]], { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("loads an http:// page (an absolute-URI request), the DOM checked", function()
    if runnable ~= true then return pending(runnable) end
    local dom, err, rc = browse("http://127.0.0.1:" .. origin.port .. "/hello")
    assert.are.equal(0, rc, err)
    assert.truthy(dom:find("<body><pre[^>]*>hello from one\n</pre></body>"), dom)
    h.wait_log(np, "web: GET http://127%.0%.0%.1:" .. origin.port .. "/hello 200 ")
  end)

  it("loads an https:// page (a CONNECT tunnel), the DOM checked", function()
    if runnable ~= true then return pending(runnable) end
    local dom, err, rc = browse("https://127.0.0.1:" .. tls_origin.port .. "/hello")
    assert.are.equal(0, rc, err)
    assert.truthy(dom:find("<body><pre[^>]*>hello from one\n</pre></body>"), dom)
    h.wait_log(np, "CONNECT 127%.0%.0%.1:" .. tls_origin.port)
  end)
end)
