-- The HTTP proxy (from = connect) forwards plain http:// requests (absolute-URI requests,
-- not CONNECT): real clients (curl, wget, Python's http.client and urllib) through netproxy
-- to small HTTP/1.1 origin servers (spec/support/http_origin.py) on loopback.
local h = require "spec.helpers"

local ORIGIN = h.root .. "/spec/support/http_origin.py"

-- An origin server named name ("hello from NAME"); .port once it listens.
local function origin(name)
  local portfile = h.tmpfile("origin-port")
  local p = h.spawn({ "python3", ORIGIN, portfile, name })
  p.port = tonumber(h.wait_until(function() return h.read(portfile) end, 10, "the origin's port"))
  return p
end

-- The 1 MiB the origin's /big sends: bytes 0..255 over and over.
local function pattern(n)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t):rep(n / 256)
end

describe("from = connect forwarding plain http://", function()
  local one, two, np, proxy_url

  local function curl(args)
    local argv = { "curl", "-sS", "--max-time", "20" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return h.run(argv)
  end

  local function url(server, path) return "http://127.0.0.1:" .. server.port .. path end

  -- Sends raw bytes to a proxy port and reads until the close (or want).
  local function raw(port, bytes, want)
    local out, how = h.talk(port, bytes, { keep_open = true, want = want, timeout = 10 })
    assert.are_not.equal("timeout", how, "no answer in time: " .. out)
    return out
  end

  setup(function()
    one, two = origin("one"), origin("two")
    np = h.netproxy_start(([[
proxy { name = "web",
        from = { type = "connect", host = "127.0.0.1", port = 0, response_timeout = 1,
                 -- the seed's host name mangling: a legacy name goes to loopback
                 route = function(host, port)
                   if host == "legacy.example" then return "127.0.0.1", port end
                   if host == "boom.example" then error("a bug in route") end
                   if host == "127.0.0.1" then return host, port end
                   return nil, "no such site: " .. host
                 end } }
proxy { name = "allowed", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:%d" } } }
proxy { name = "auth", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" },
                                users = { alice = "wonderland" } } }
proxy { name = "tunnel", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" },
                                  http = false } }
]]):format(one.port), { "-v" })
    proxy_url = "http://127.0.0.1:" .. np.ports.web
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("serves curl's http:// request and logs it (method, URL as routed, status, bytes)", function()
    local out, err, rc = curl({ "-x", proxy_url, url(one, "/hello") })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello from one\n", out)
    h.wait_log(np, "web: GET http://127%.0%.0%.1:" .. one.port .. "/hello 200 15 bytes [%d.]+s")
    h.wait_log(np, "web: [^\n]*end=eof: 1 request\n")
  end)

  it("keeps the client's connection across requests to two servers (curl --next)", function()
    local out, err, rc = curl({ "-x", proxy_url, url(one, "/hello"), "-w", "%{num_connects}\n",
                                "--next", "-x", proxy_url, url(two, "/hello"), "-w", "%{num_connects}\n" })
    assert.are.equal(0, rc, err)
    -- the second transfer made no new connection to the proxy
    assert.are.equal("hello from one\n1\nhello from two\n0\n", out)
    h.wait_log(np, "web: [^\n]*end=eof: 2 requests\n")
  end)

  it("sends the origin form with Host kept and no hop-by-hop header; route rewrites the name", function()
    local out, err, rc = curl({ "-x", proxy_url, "http://legacy.example:" .. one.port .. "/headers",
                                "-H", "Connection: X-Secret", "-H", "X-Secret: 1", "-H", "Keep-Alive: 300",
                                "-H", "TE: trailers", "-H", "Proxy-Authorization: Basic YTpi", "-H", "X-Kept: yes" })
    assert.are.equal(0, rc, err)
    assert.matches("^GET /headers HTTP/1%.1\n", out)
    assert.matches("\nHost: legacy%.example:" .. one.port .. "\n", out)
    assert.matches("\nX%-Kept: yes\n", out)
    for _, gone in ipairs({ "X%-Secret", "Keep%-Alive", "TE:", "Proxy%-", "Connection" }) do
      assert.is_nil(out:find("\n" .. gone), gone .. " was forwarded:\n" .. out)
    end
    h.wait_log(np, "web: GET http://127%.0%.0%.1:" .. one.port .. "/headers %(for legacy%.example:" .. one.port .. "%) 200")
  end)

  it("reuses the server connection for successive requests to the same server", function()
    local out, err, rc = curl({ "-x", proxy_url, url(one, "/conn"), "--next", "-x", proxy_url, url(one, "/conn") })
    assert.are.equal(0, rc, err)
    local a, b = out:match("^conn (%d+)\nconn (%d+)\n$")
    assert.is_not_nil(a, out)
    assert.are.equal(a, b)
  end)

  it("sends a GET again on a new server connection when the kept one was closed meanwhile", function()
    local out, err, rc = curl({ "-x", proxy_url, url(two, "/drop"), "--next", "-x", proxy_url, url(two, "/conn") })
    assert.are.equal(0, rc, err)
    local a, b = out:match("^conn (%d+) dropped\nconn (%d+)\n$")
    assert.is_not_nil(a, out)
    assert.are_not.equal(a, b)
    h.wait_log(np, "web: [^\n]*end=eof: 2 requests\n")
  end)

  it("keeps an HTTP/1.1 client's connection after an HTTP/1.0 server's framed answer", function()
    local old = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold\n", "--close" })
    local out, err, rc = curl({ "-x", proxy_url, "-D", "-", "http://127.0.0.1:" .. old.port .. "/",
                                "--next", "-x", proxy_url, url(one, "/hello"), "-w", "%{num_connects}\n" })
    assert.are.equal(0, rc, err)
    assert.matches("^HTTP/1%.1 200 OK\r\n", out)
    assert.matches("\r\nVia: 1%.0 netproxy\r\n\r\nold\nhello from one\n0\n$", out)
  end)

  it("answers 502 for a server that answers garbage", function()
    local garbage = h.peer_server("reply", { "--text", "SSH-2.0-OpenSSH\r\n\r\n" })
    local out = curl({ "-x", proxy_url, "-w", "%{http_code}", "http://127.0.0.1:" .. garbage.port .. "/" })
    assert.matches("broken response", out)
    assert.matches("502$", out)
  end)

  it("reaches servers through the proxy's to: another HTTP proxy (tinyproxy), a SOCKS5 one (microsocks)", function()
    local tiny, socks = h.tinyproxy(), h.microsocks()
    local chained = h.netproxy_start(([[
proxy { name = "http", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" } },
        to = { type = "connect", proxy_host = "127.0.0.1", proxy_port = %d } }
proxy { name = "socks", from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" } },
        to = { type = "socks5", proxy_host = "127.0.0.1", proxy_port = %d } }
]]):format(tiny.port, socks.port), { "-v" })
    for _, name in ipairs({ "http", "socks" }) do
      local via = "http://127.0.0.1:" .. chained.ports[name]
      local out, err, rc = curl({ "-x", via, url(one, "/hello"), "--next", "-x", via, url(two, "/hello") })
      assert.are.equal(0, rc, err)
      assert.are.equal("hello from one\nhello from two\n", out)
      h.wait_log(chained, name .. ": [^\n]*end=eof: 2 requests\n")
    end
    h.wait_log(chained, "http: proxy 127%.0%.0%.1:" .. tiny.port .. ": HTTP/1%.0 200 Connection established")
  end)

  it("serves Python's http.client and urllib (ProxyHandler), chunked and HEAD included", function()
    local script = h.write(h.tmpfile("client.py"), ([[
import http.client, urllib.request, sys
c = http.client.HTTPConnection("127.0.0.1", %d)
for method, path in [("GET", "/hello"), ("HEAD", "/big?n=1000"), ("GET", "/chunked"), ("GET", "/204"), ("GET", "/304"), ("GET", "/hello")]:
    c.request(method, "http://127.0.0.1:%d" + path)
    r = c.getresponse()
    body = r.read()
    print(method, path, r.status, r.getheader("Content-Length"), len(body))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": "http://127.0.0.1:%d"}))
print(opener.open("http://127.0.0.1:%d/hello").read().decode(), end="")
print(len(opener.open("http://127.0.0.1:%d/chunked").read()))
]]):format(np.ports.web, one.port, np.ports.web, two.port, two.port))
    local out, err, rc = h.run({ "python3", script })
    assert.are.equal(0, rc, err)
    assert.are.equal(table.concat({
      "GET /hello 200 15 15", "HEAD /big?n=1000 200 1000 0", "GET /chunked 200 None 225",
      "GET /204 204 None 0", "GET /304 304 None 0", "GET /hello 200 15 15",
      "hello from two", "225", "" }, "\n"), out)
    -- http.client kept one connection for its six requests
    h.wait_log(np, "web: [^\n]*end=eof: 6 requests\n")
  end)

  it("serves wget with its http_proxy", function()
    local out, err, rc = h.run({ "wget", "-q", "-O", "-", "-e", "use_proxy=yes",
                                 "-e", "http_proxy=127.0.0.1:" .. np.ports.web, url(two, "/hello") })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello from two\n", out)
  end)

  it("streams a 1 MiB response intact", function()
    local file = h.tmpfile("big")
    local _, err, rc = curl({ "-x", proxy_url, "-o", file, url(one, "/big?n=1048576") })
    assert.are.equal(0, rc, err)
    local got = h.read(file)
    assert.are.equal(1048576, #got)
    assert.is_true(got == pattern(1048576), "the body differs from what the origin sent")
    h.wait_log(np, "web: GET [^\n]*/big%?n=1048576 200 1048576 bytes")
  end)

  it("passes a chunked response through with its framing and trailer", function()
    local framed, err, rc = curl({ "-x", proxy_url, "--raw", url(two, "/chunked") })
    assert.are.equal(0, rc, err)
    assert.matches("^f\r\nchunk 0 of two\n\r\n", framed)
    assert.matches("\r\n0\r\nX%-Trailer: yes\r\n\r\n$", framed)
    local plain = curl({ "-x", proxy_url, url(two, "/chunked") })
    assert.are.equal(("chunk 4 of two\n"):rep(5), plain:sub(-75))
  end)

  it("streams request bodies (Content-Length with Expect: 100-continue, and chunked)", function()
    local body = pattern(256 * 1024)
    local c = assert(h.connect(np.ports.web))
    c:send(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n")
           :format(url(one, "/echo"), #body))
    local out, how = c:read("HTTP/1%.1 100 Continue\r\n\r\n", 10)
    assert.are.equal("want", how, out)
    c:send(body)
    out = c:read(function(s) return #s >= #"HTTP/1.1 100 Continue\r\n\r\n" + #body + 100 and s:find("\r\n\r\n.*\r\n\r\n") end, 10)
    local head, echoed = out:match("^HTTP/1%.1 100 Continue\r\n\r\n(HTTP/1%.1 200 .-\r\n\r\n)(.*)$")
    assert.is_not_nil(head, out:sub(1, 200))
    assert.matches("Content%-Length: " .. #body, head)
    assert.is_true(echoed == body, "the echoed body differs")
    c:close()

    local file = h.write(h.tmpfile("post"), body:sub(1, 100000))
    local got, err, rc = curl({ "-x", proxy_url, "-T", file, "-H", "Transfer-Encoding: chunked", url(one, "/echo") })
    assert.are.equal(0, rc, err)
    assert.is_true(got == body:sub(1, 100000), "the chunked upload differs")
  end)

  -- The bytes netproxy passed through read() and write() so far (/proc/PID/io: rchar and
  -- wchar): a body spliced from socket to socket counts in neither, a copied one in both.
  local function copied(pid)
    local io = h.read("/proc/" .. pid .. "/io")
    return tonumber(io:match("rchar: (%d+)")) + tonumber(io:match("wchar: (%d+)"))
  end

  local function sha256(file) return (h.run({ "sha256sum", file })):match("^(%x+)") end

  -- Sends a file of 8 MiB of random bytes to the origin's /echo (query: its answer's framing)
  -- through the proxy, with curl's arguments upload(file); checks the echo byte for byte (sha256)
  -- and that the proxy copied less than bound bytes of the 16 MiB of bodies through user space.
  local function echo_8m(query, upload, bound)
    local sent, got = h.tmpfile("upload"), h.tmpfile("echoed")
    assert.are.equal(0, h.exit_status(h.spawn({ "sh", "-c", "head -c 8388608 /dev/urandom > " .. sent }), 10))
    local before = copied(np.pid)
    local argv = { "-x", proxy_url, "-o", got }
    for _, a in ipairs(upload(sent)) do argv[#argv + 1] = a end
    argv[#argv + 1] = url(one, "/echo" .. query)
    local _, err, rc = curl(argv)
    assert.are.equal(0, rc, err)
    local through_user_space = copied(np.pid) - before
    assert.are.equal(8388608, #h.read(got))
    assert.are.equal(sha256(sent), sha256(got))
    assert.is_true(through_user_space < bound, through_user_space .. " bytes went through read() and write()")
  end

  -- Without Expect: 100-continue the body follows the head at once: the heads' reads must not
  -- take it ahead (64 KiB each before they read through a window of 4 KiB).
  it("moves an 8 MiB Content-Length body each way intact, spliced (not read into user space)", function()
    echo_8m("", function(file)
      return { "--data-binary", "@" .. file, "-H", "Content-Type: application/octet-stream", "-H", "Expect:" }
    end, 65536)
    h.wait_log(np, "web: POST [^\n]*/echo 200 8388608 bytes")
  end)

  it("moves an 8 MiB chunked body each way intact, each chunk's data spliced", function()
    echo_8m("?chunked=100000", function(file) return { "-T", file, "-H", "Transfer-Encoding: chunked" } end, 262144)
    h.wait_log(np, "web: PUT [^\n]*/echo%?chunked=100000 200 %d+ bytes")
  end)

  it("answers pipelined requests in order", function()
    local req = "GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
    local out = raw(np.ports.web, req:format(url(one, "/hello")) .. req:format(url(two, "/hello")) ..
                    "HEAD " .. url(one, "/big?n=5000") .. " HTTP/1.1\r\n\r\n" .. req:format(url(one, "/204")) ..
                    "GET " .. url(two, "/hello") .. " HTTP/1.1\r\nConnection: close\r\n\r\n")
    local statuses, bodies = {}, {}
    for s in out:gmatch("HTTP/1%.1 (%d+)") do statuses[#statuses + 1] = s end
    for b in out:gmatch("hello from %a+") do bodies[#bodies + 1] = b end
    assert.are.same({ "200", "200", "200", "204", "200" }, statuses)
    assert.are.same({ "hello from one", "hello from two", "hello from two" }, bodies)
    assert.matches("Content%-Length: 5000\r\n", out)
    h.wait_log(np, "web: [^\n]*end=closed: [^\n]*5 requests\n")
  end)

  it("reads a body without a length until the server closes, then closes the client", function()
    local out = raw(np.ports.web, "GET " .. url(one, "/close") .. " HTTP/1.1\r\n\r\n")
    local head, body = out:match("^(.-\r\n\r\n)(.*)$")
    assert.matches("^HTTP/1%.1 200", head)
    assert.matches("\r\nConnection: close\r\n", head)
    assert.are.equal(("until the close\n"):rep(1000), body)
  end)

  it("turns a 101 upgrade into a relay", function()
    local c = assert(h.connect(np.ports.web))
    c:send("GET " .. url(two, "/ws") .. " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    local out = c:read("\r\n\r\n", 10)
    assert.matches("^HTTP/1%.1 101 ", out)
    assert.matches("\r\nUpgrade: websocket\r\n", out)
    c:send("ping through the relay\n")
    out = c:read("relay\n", 10)
    assert.matches("\r\n\r\nping through the relay\n$", out)
    c:close()
    h.wait_log(np, "web: GET [^\n]*/ws 101 ")
  end)

  it("answers 403 for a target route or allow refuses, with the reason", function()
    local out, err, rc = curl({ "-x", proxy_url, "-w", "%{http_code}", "http://elsewhere.example/" })
    assert.are.equal(0, rc, err)
    assert.are.equal("netproxy: no such site: elsewhere.example\n403", out)
    out = curl({ "-x", "http://127.0.0.1:" .. np.ports.allowed, "-w", "%{http_code}", url(two, "/hello") })
    assert.are.equal("netproxy: target not allowed\n403", out)
    out = curl({ "-x", "http://127.0.0.1:" .. np.ports.allowed, url(one, "/hello") })
    assert.are.equal("hello from one\n", out)
  end)

  it("answers 502 to a request whose route raises, and logs the error", function()
    local out = curl({ "-x", proxy_url, "-w", "%{http_code}", "-o", "/dev/null", "http://boom.example/" })
    assert.are.equal("502", out)
    h.wait_log(np, "web: [^\n]*end=lua error: [^\n]*a bug in route")
  end)

  it("tells the server the URI's host, not another Host the client sent, and adds Via", function()
    local out = curl({ "-x", proxy_url, "-H", "Host: other.example", url(one, "/headers") })
    assert.matches("\nHost: 127%.0%.0%.1:" .. one.port .. "\n", out)
    assert.is_nil(out:find("other.example", 1, true), out)
    assert.matches("\nVia: 1%.1 netproxy\n", out)
    local head = curl({ "-x", proxy_url, "-D", "-", "-o", "/dev/null", url(one, "/hello") })
    assert.matches("\r\nVia: 1%.1 netproxy\r\n", head)
  end)

  it("answers 407 without credentials and serves with them", function()
    local auth = "http://127.0.0.1:" .. np.ports.auth
    local out, err = curl({ "-x", auth, "-D", "-", "-o", "/dev/null", url(one, "/hello") })
    assert.matches("^HTTP/1%.1 407 ", out, err)
    assert.matches('Proxy%-Authenticate: Basic realm="netproxy"', out)
    out = curl({ "-x", auth, "-U", "alice:nope", "-w", "%{http_code}", "-o", "/dev/null", url(one, "/hello") })
    assert.are.equal("407", out)
    out = curl({ "-x", auth, "-U", "alice:wonderland", url(one, "/hello") })
    assert.are.equal("hello from one\n", out)
  end)

  it("answers 502 for a refused server and 504 for one that never answers", function()
    local out = curl({ "-x", proxy_url, "-w", "%{http_code}", "-o", "/dev/null", "http://127.0.0.1:" .. h.closed_port() .. "/" })
    assert.are.equal("502", out)
    local t0 = h.now()
    out = curl({ "-x", proxy_url, "-w", "%{http_code}", "-o", "/dev/null", url(one, "/never") })
    assert.are.equal("504", out)
    assert.is_true(h.now() - t0 < 10, "the 504 took " .. (h.now() - t0) .. " s")
    h.wait_log(np, "web: GET [^\n]*/never 504 ")
  end)

  it("answers 400 for a malformed request or URI and 501 for https:// and other schemes", function()
    assert.matches("^HTTP/1%.1 400 ", raw(np.ports.web, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.matches("^HTTP/1%.1 400 ", raw(np.ports.web, "GET http://u@127.0.0.1/ HTTP/1.1\r\n\r\n"))
    assert.matches("^HTTP/1%.1 400 ", raw(np.ports.web, "GET http:/// HTTP/1.1\r\n\r\n"))
    assert.matches("^HTTP/1%.1 400 ", raw(np.ports.web, "GET http://127.0.0.1:" .. one.port ..
                                        "/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"))
    local out = raw(np.ports.web, "GET https://127.0.0.1:" .. one.port .. "/ HTTP/1.1\r\n\r\n")
    assert.matches("^HTTP/1%.1 501 .*https:// goes through CONNECT", out)
    assert.matches("^HTTP/1%.1 501 ", raw(np.ports.web, "GET ftp://127.0.0.1/x HTTP/1.1\r\n\r\n"))
    -- and the proxy goes on serving
    assert.are.equal("hello from one\n", (curl({ "-x", proxy_url, url(one, "/hello") })))
  end)

  it("answers 405 with http = false (CONNECT only), as before", function()
    local out = curl({ "-x", "http://127.0.0.1:" .. np.ports.tunnel, "-w", "%{http_code}", "-o", "/dev/null", url(one, "/hello") })
    assert.are.equal("405", out)
  end)

  it("runs examples/mangle.lua: http://legacy.example/ served from loopback", function()
    local config = h.read(h.root .. "/examples/mangle.lua"):gsub("port = 3128", "port = 0")
                    :gsub("%[80%] = true", "[" .. one.port .. "] = true")
    local mangle = h.netproxy_start(config)
    local out, err, rc = curl({ "-x", "http://127.0.0.1:" .. mangle.ports.mangle,
                                "http://legacy.example:" .. one.port .. "/hello" })
    assert.are.equal(0, rc, err)
    assert.are.equal("hello from one\n", out)
    h.wait_log(mangle, "mangle: legacy%.example:" .. one.port .. " asked by 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1")
  end)

  it("refuses at --check a hook that would not see forwarded requests", function()
    local function check(from_extra, to)
      local path = h.write(h.tmpfile("hooked.lua"), ([[
proxy { from = { type = "connect", port = 3128, allow = { "*:80" }, %s }, to = %s }
]]):format(from_extra, to or "nil"))
      return h.run({ h.netproxy, "--check", path })
    end
    local _, err, rc = check("hook = function(d) end")
    assert.are_not.equal(0, rc)
    assert.matches("from: hook does not see plain http:// requests", err)
    _, err, rc = check("", '{ type = "tcp", hook = function(d) end }')
    assert.are_not.equal(0, rc)
    assert.matches("to: hook does not see plain http:// requests", err)
    _, err, rc = check("http = false, hook = function(d) end")
    assert.are.equal(0, rc, err)
  end)
end)
