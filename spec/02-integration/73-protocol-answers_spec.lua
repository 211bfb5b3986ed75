-- Protocol answers at the first byte that decides them (issues 25 and 26): a ClientHello
-- filling a whole TLS record is sniffed, a PROXY protocol listener refuses a client that
-- does not speak it at its first bytes, SOCKS5 answers an unsupported command from its
-- header, the CONNECT server answers a bare LF or a malformed request line with 400 at once,
-- and an error in `route` answers the client (SOCKS5 0x01, HTTP 502) and is logged with its
-- script:line. Every timeout here is long (30 s): "at once" is well before it.
local h = require "spec.helpers"

local function be16(n) return string.char(math.floor(n / 256) % 256, n % 256) end
local function be24(n) return string.char(math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) end

-- A ClientHello for `name` whose handshake message is `size` bytes (a padding extension,
-- RFC 7685, makes up the size), cut into records of at most `record` bytes of it each.
local function client_hello(name, size, record)
  local sni = be16(0) .. be16(#name + 5) .. be16(#name + 3) .. "\0" .. be16(#name) .. name
  local head = "\3\3" .. ("r"):rep(32) .. "\0" .. be16(2) .. "\19\1" .. "\1\0"
  local pad = size - (4 + #head + 2 + #sni + 4)
  local exts = sni .. be16(21) .. be16(pad) .. ("\0"):rep(pad)
  local body = head .. be16(#exts) .. exts
  local hs = "\1" .. be24(#body) .. body
  assert(#hs == size)
  local out = {}
  for i = 1, #hs, record do
    local part = hs:sub(i, i + record - 1)
    out[#out + 1] = "\22\3\1" .. be16(#part) .. part
  end
  return table.concat(out)
end

-- Sends bytes in pieces of `piece`, each its own arrival: the pause between them is the
-- behaviour under test (a client whose hello comes in several segments).
local function send_in_pieces(c, bytes, piece)
  for i = 1, #bytes, piece do
    assert.is_true(c:send(bytes:sub(i, i + piece - 1)))
    h.sleep(0.05)
  end
end

describe("dual's default max_peek", function()
  local echo, other, fallback, np

  setup(function()
    echo = h.peer_server("echo")
    other = h.peer_server("reply", { "--text", "other\n", "--close" })
    fallback = h.peer_server("reply", { "--text", "fallback\n", "--close" })
    -- "d": sniffed by the core; "s": the session (made to run by an accept function)
    local one = [[proxy { name = "%s", %s from = { type = "dual", host = "127.0.0.1", port = 0, probe_timeout = 30,
      client_first = { type = "tcp", host = "127.0.0.1", port = %d },
      probes = { { match = "tls", sni = "b.example", to = { type = "tcp", host = "127.0.0.1", port = %d } },
                 { match = "tls", sni = "a.example", to = { type = "tcp", host = "127.0.0.1", port = %d } } } } }
]]
    np = h.netproxy_start(one:format("d", "", fallback.port, other.port, echo.port) ..
                          one:format("s", "accept = function() return true end,", fallback.port, other.port, echo.port),
                          { "-vv" })
    assert.truthy(np.full_log():find("d: routed by the client's first bytes", 1, true), "d is sniffed by the core")
    assert.falsy(np.full_log():find("s: routed by the client's first bytes", 1, true), "s runs the session")
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  for _, case in ipairs({
    { "filling exactly one 16,384-byte record", 16384, 16384 },
    { "of 16 KiB split over several records", 16384, 4000 },
  }) do
    for _, which in ipairs({ "d", "s" }) do
      it(("routes a ClientHello %s by its SNI, sent in pieces (%s)"):format(case[1], which == "d" and "sniffed by the core" or "the session"), function()
        local hello = client_hello("a.example", case[2], case[3])
        local c = assert(h.connect(np.ports[which]))
        send_in_pieces(c, hello, 4096)
        local got = c:read(#hello, 10)
        c:close()
        assert.are.equal(#hello, #got, "the echo behind a.example, not the fallback: " .. got:sub(1, 20))
        assert.are.equal(hello, got)
        h.wait_log(np, which .. ": dual: probe 2 %(tls%) matched after " .. #hello .. " bytes")
      end)
    end
  end
end)

describe("a proxy_protocol listener", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
proxy { name = "pp", connect_timeout = 30, from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "any" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "pp2", connect_timeout = 30, from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v2" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("closes a client that sent 3 bytes of something else at once, saying why", function()
    local t0 = h.now()
    assert.are.same({ "", "eof" }, { h.talk(np.ports.pp, "\5\1\0", { keep_open = true, timeout = 5 }) })
    assert.is_true(h.now() - t0 < 3, "closed after " .. (h.now() - t0) .. "s")
    h.wait_log(np, "pp: [^\n]* end=refused: PROXY protocol: no PROXY header %(first bytes: 05 01 00%)")
  end)

  it("closes a client whose first bytes could start only a version it does not take", function()
    -- "\r\n" starts the v2 signature only: a v1 listener would wait; a v2 one takes it, "PR" not
    assert.are.same({ "", "eof" }, { h.talk(np.ports.pp2, "PR", { keep_open = true, timeout = 5 }) })
    h.wait_log(np, "pp2: [^\n]* end=refused: PROXY protocol: no PROXY v2 header %(first bytes: 50 52%)")
  end)

  it("still reads a valid header sent a byte at a time", function()
    local c = assert(h.connect(np.ports.pp, { nodelay = true }))
    local header = "PROXY TCP4 203.0.113.7 192.0.2.1 4444 443\r\n"
    for i = 1, #header do
      assert.is_true(c:send(header:sub(i, i)))
      h.sleep(0.002)            -- each byte its own arrival: the behaviour under test
    end
    c:send("hello\n")
    assert.are.equal("hello\n", (c:read("hello\n", 5)))
    c:close()
    h.wait_log(np, "pp: 203%.0%.113%.7:4444 %-> ")
  end)
end)

describe("the SOCKS5 and CONNECT servers' answers", function()
  local np

  setup(function()
    np = h.netproxy_start([[
proxy { name = "s", negotiation_timeout = 60,
        from = { type = "socks5", host = "127.0.0.1", port = 0, request_timeout = 30, allow = { "127.0.0.1:*" } } }
proxy { name = "sboom", negotiation_timeout = 60,
        from = { type = "socks5", host = "127.0.0.1", port = 0, request_timeout = 30,
                 route = function(host, port) error("no route for " .. host) end } }
proxy { name = "c", negotiation_timeout = 60,
        from = { type = "connect", host = "127.0.0.1", port = 0, request_timeout = 30, allow = { "127.0.0.1:*" } } }
proxy { name = "cboom", negotiation_timeout = 60,
        from = { type = "connect", host = "127.0.0.1", port = 0, request_timeout = 30,
                 route = function(host, port) local t = nil; return t.host end } }
]], { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  -- what the client gets within 5 s, holding its side open, and whether the proxy closed
  local function answer(port, input)
    return h.talk(port, input, { keep_open = true, timeout = 5 })
  end

  it("SOCKS5: answers 0x07 to an unsupported command from the request's header", function()
    assert.are.same({ "\5\0\5\7\0\1\0\0\0\0\0\0", "eof" }, { answer(np.ports.s, "\5\1\0" .. "\5\2") })
    h.wait_log(np, "s: [^\n]* end=refused: BIND is not supported")
    assert.are.same({ "\5\0\5\7\0\1\0\0\0\0\0\0", "eof" }, { answer(np.ports.s, "\5\1\0" .. "\5\9\0") })
    h.wait_log(np, "s: [^\n]* end=refused: command 9 is not supported")
  end)

  it("SOCKS5: answers 0x01 to a request whose route raises an error, and logs it with script:line", function()
    local request = "\5\1\0\3\9a.example" .. be16(443)
    assert.are.same({ "\5\0\5\1\0\1\0\0\0\0\0\0", "eof" }, { answer(np.ports.sboom, "\5\1\0" .. request) })
    h.wait_log(np, "sboom: [^\n]* end=lua error: [^\n]*%.lua:%d+: no route for a%.example")
  end)

  it("CONNECT: answers 502 when route raises an error, and logs it with script:line", function()
    local out, how = answer(np.ports.cboom, "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n")
    assert.truthy(out:match("^HTTP/1%.1 502 Bad Gateway\r\n"), out)
    assert.are.equal("eof", how)
    h.wait_log(np, "cboom: [^\n]* end=lua error: [^\n]*%.lua:%d+: attempt to index local 't'")
  end)

  it("CONNECT: answers 400 at once to a request typed with bare LFs", function()
    local out, how = answer(np.ports.c, "CONNECT 127.0.0.1:443 HTTP/1.1\n\n")
    assert.truthy(out:match("^HTTP/1%.1 400 Bad Request\r\n.*bare LF"), out)
    assert.are.equal("eof", how)
    h.wait_log(np, "c: [^\n]* end=refused: request: bare LF")
    -- the first line alone, as typed before the blank line
    out = answer(np.ports.c, "CONNECT 127.0.0.1:443 HTTP/1.1\n")
    assert.truthy(out:match("^HTTP/1%.1 400 Bad Request\r\n"), out)
  end)

  it("CONNECT: answers 400 at once to a malformed request line", function()
    local out, how = answer(np.ports.c, "hello there\r\n")
    assert.truthy(out:match("^HTTP/1%.1 400 Bad Request\r\n"), out)
    assert.are.equal("eof", how)
    h.wait_log(np, "c: [^\n]* end=refused: request: malformed request line")
  end)
end)
