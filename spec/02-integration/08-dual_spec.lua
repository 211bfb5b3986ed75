-- dual end to end: Net::Proxy's timing rule (server_first / client_first) and content probes,
-- with real servers that speak first, curl over TLS to two openssl s_server backends routed
-- by SNI (netproxy holds no key), and a ClientHello sent one byte at a time.
local h = require "spec.helpers"

local BANNER = "SSH-2.0-netproxy-spec-server"

-- Connects, sends `send` (or nothing), and reads one line: returns it and the seconds it took.
local function first_line(port, send)
  local script = ([[exec 3<>/dev/tcp/127.0.0.1/%d || exit 1
start=$(date +%%s.%%N)
%s
IFS= read -r -t 6 line <&3
end=$(date +%%s.%%N)
printf '%%s|%%s\n' "$line" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"]]):format(port, send and ("printf '%s' >&3"):format(send) or "")
  local out = h.run({ "bash", "-c", script })
  local line, seconds = out:match("^(.-)|([%d%.]+)")
  return line, tonumber(seconds)
end

describe("dual", function()
  local banner, echo, source, np

  setup(function()
    banner = h.peer_server("banner", { "--text", BANNER })
    echo = h.peer_server("echo")
    source = h.peer_server("source", { "--bytes", "64K" })
    np = h.netproxy_start(([[
proxy { name = "timing",
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 1,
                 server_first = { type = "tcp", host = "127.0.0.1", port = %d },
                 client_first = { type = "tcp", host = "127.0.0.1", port = %d } } }
proxy { name = "mixed",
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 1,
                 server_first = { type = "tcp", host = "127.0.0.1", port = %d },
                 client_first = { type = "tcp", host = "127.0.0.1", port = %d } } }
]]):format(banner.port, echo.port, source.port, echo.port), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("sends a silent client to server_first after about `timeout`", function()
    local line, seconds = first_line(np.ports.timing)
    assert.are.equal(BANNER, line)
    assert.is_true(seconds >= 0.9 and seconds < 3, "after " .. seconds .. "s")
  end)

  it("sends a talking client to client_first at once, its first bytes intact", function()
    local line, seconds = first_line(np.ports.timing, "hello from the client\\n")
    assert.are.equal("hello from the client", line)
    assert.is_true(seconds < 0.9, "after " .. seconds .. "s")   -- before the 1 s timeout
  end)

  it("routes 200 mixed clients at once, each to the right server", function()
    -- 100 silent ones must get the server-first stream, 100 talkers their echo, byte-exact
    local silent = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.mixed, "--expect", "source",
                             "--bytes", "64K", "--conns", "100", "--parallel", "100", "--timeout", "20" })
    local talkers = h.client("127.0.0.1", np.ports.mixed, { "--bytes", "64K", "--conns", "100",
                                                            "--parallel", "100", "--timeout", "20" })
    assert.are.equal(0, talkers.rc, talkers.err)
    assert.are.equal(100, talkers.ok)
    assert.are.equal(0, h.exit_status(silent, 20), h.read(silent.err))
    assert.truthy(h.read(silent.out):find("ok=100 failed=0", 1, true))
  end)

  it("does not let 50 silent clients delay a talking one", function()
    local silent = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. np.ports.mixed, "--expect", "source",
                             "--bytes", "64K", "--conns", "50", "--parallel", "50", "--timeout", "20" })
    h.wait_until(function() local _, n = np.log():gsub("mixed: accepted", "") return n == 50 end, 10, "50 silent clients")
    local line, seconds = first_line(np.ports.timing, "me first\\n")
    assert.are.equal("me first", line)
    assert.is_true(seconds < 0.9, "after " .. seconds .. "s")   -- before the 1 s timeout
    assert.are.equal(0, h.exit_status(silent, 20))
  end)
end)

describe("dual with probes", function()
  local dir, tls_a, tls_b, echo, banner, web, np

  -- An openssl s_server with its own self-signed certificate for `name`, serving the files
  -- of its own folder (-WWW): GET /who.txt answers which backend it is.
  local function tls_backend(name)
    local d = dir .. "/" .. name
    os.execute(("mkdir -p %s && cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 " ..
                "-nodes -keyout key.pem -out cert.pem -subj /CN=%s -days 2 2>/dev/null && echo 'backend %s' > who.txt")
               :format(d, d, name, name))
    return h.on_free_port("s_server", function(port)
      return h.spawn({ "sh", "-c", ("cd %s && exec openssl s_server -quiet -WWW -accept 127.0.0.1:%d -cert cert.pem -key key.pem")
                                   :format(d, port) })
    end)
  end

  setup(function()
    dir = h.tmp() .. "/tls"
    tls_a = tls_backend("a.test")
    tls_b = tls_backend("b.test")
    echo = h.peer_server("echo")
    banner = h.peer_server("banner", { "--text", BANNER })
    web = h.peer_server("reply", { "--text", "HTTP/1.0 200 OK\\r\\nContent-Length: 4\\r\\n\\r\\nweb\\n", "--close" })
    np = h.netproxy_start(([[
proxy { name = "probes",
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 10,
                 probes = {
                   { match = "ssh", to = { type = "tcp", host = "127.0.0.1", port = %d } },
                   { match = "tls", sni = "a.test", to = { type = "tcp", host = "127.0.0.1", port = %d } },
                   { match = "tls", sni = "*.b.test", to = { type = "tcp", host = "127.0.0.1", port = %d } },
                   { match = "tls", sni = "www.example.com", to = { type = "tcp", host = "127.0.0.1", port = %d } },
                   { match = "http", to = { type = "tcp", host = "127.0.0.1", port = %d } },
                   { match = function(bytes)
                       if #bytes < 4 then return nil end
                       return bytes:sub(1, 4) == "PING"
                     end, to = { type = "tcp", host = "127.0.0.1", port = %d } },
                 } } }
proxy { name = "capped",
        max_negotiating = 5,
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 10,
                 server_first = { type = "tcp", host = "127.0.0.1", port = %d } } }
]]):format(banner.port, tls_a.port, tls_b.port, echo.port, web.port, echo.port, banner.port), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  local function curl_tls(name)
    return h.run({ "curl", "-sSk", "--max-time", "5", "--resolve", ("%s:%d:127.0.0.1"):format(name, np.ports.probes),
                   ("https://%s:%d/who.txt"):format(name, np.ports.probes) })
  end

  it("routes curl over TLS by SNI to two TLS backends, holding no key itself", function()
    local out, err, rc = curl_tls("a.test")
    assert.are.equal(0, rc, err)
    assert.are.equal("backend a.test\n", out)
    out, err, rc = curl_tls("www.b.test")
    assert.are.equal(0, rc, err)
    assert.are.equal("backend b.test\n", out)
  end)

  it("closes a TLS client whose name matches no probe", function()
    local _, _, rc = curl_tls("c.test")
    assert.are_not.equal(0, rc)
    h.wait_log(np, "probes: [^\n]* end=refused: no probe matched the first %d+ bytes")
  end)

  it("routes a ClientHello sent one byte at a time", function()
    local hello = h.read(h.root .. "/spec/fixtures/tls/clienthello-openssl.bin")
    local c = assert(h.connect(np.ports.probes, { nodelay = true }))
    for i = 1, #hello do
      c:send(hello:sub(i, i))
      h.sleep(0.001)   -- paces the bytes, one segment each: what is tested
    end
    assert.are.same({ hello, "want" }, { c:read(#hello) })
  end)

  it("routes SSH, HTTP and a Lua probe by their first bytes", function()
    local line = first_line(np.ports.probes, "SSH-2.0-client\\r\\n")
    assert.are.equal(BANNER, line)
    assert.are.equal("web\n", (h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.ports.probes .. "/" })))
    line = first_line(np.ports.probes, "PING me\\n")
    assert.are.equal("PING me", line)
  end)

  it("caps how many clients may sit in the sniffing state", function()
    for _ = 1, 5 do assert(h.connect(np.ports.capped)) end   -- silent, held until the test ends
    h.wait_until(function() local _, n = np.log():gsub("capped: accepted", "") return n == 5 end, 5, "5 clients")
    -- the sixth keeps its write side open: netproxy closes it at once
    assert.are.same({ "", "eof" }, { h.talk(np.ports.capped, "", { keep_open = true, timeout = 5 }) })
    h.wait_log(np, "capped: refused 127%.0%.0%.1:%d+: 5 connections negotiating %(max_negotiating%)")
  end)
end)
