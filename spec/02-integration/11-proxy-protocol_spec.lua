-- The PROXY protocol, v1 and v2, both ways: headers written by hand (and malformed ones),
-- netproxy to netproxy, and HAProxy as the real peer on either side.
local h = require "spec.helpers"

local V2 = "\r\n\r\n\0\r\nQUIT\n"

-- Sends bytes (a Lua string), half-closes, and returns what came back until netproxy closed.
local function send(port, bytes, from)
  return (h.talk(port, bytes, { from = from }))
end

local function v2_tcp4(src, dst, sport, dport)
  local function ip(s) local a, b, c, d = s:match("(%d+)%.(%d+)%.(%d+)%.(%d+)") return string.char(a, b, c, d) end
  return V2 .. "\33\17\0\12" .. ip(src) .. ip(dst) .. string.char(math.floor(sport / 256), sport % 256, math.floor(dport / 256), dport % 256)
end

describe("PROXY protocol", function()
  local echo, np

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
proxy { name = "in1", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v1" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "inany", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "any" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "out1", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d, proxy_protocol = "v1" } }
proxy { name = "out2", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d, proxy_protocol = "v2" } }
]]):format(echo.port, echo.port, echo.port, echo.port), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("reads a v1 header and logs the real client", function()
    assert.are.equal("hello\n", send(np.ports.in1, "PROXY TCP4 203.0.113.7 192.0.2.1 4444 443\r\nhello\n"))
    h.wait_log(np, "in1: PROXY v1 header from 127%.0%.0%.1:%d+: client 203%.0%.113%.7:4444")
    h.wait_log(np, "in1: 203%.0%.113%.7:4444 %-> 127%.0%.0%.1:%d+ in=6 out=6 ")
  end)

  it("reads v1 (IPv6) and v2 headers when told any", function()
    assert.are.equal("six\n", send(np.ports.inany, "PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\nsix\n"))
    h.wait_log(np, "inany: %[2001:db8::7%]:5555 %-> ")
    assert.are.equal("two\n", send(np.ports.inany, v2_tcp4("198.51.100.9", "192.0.2.1", 6666, 443) .. "two\n"))
    h.wait_log(np, "inany: 198%.51%.100%.9:6666 %-> ")
    -- a v2 LOCAL header (a balancer's health check) keeps the connection's own address
    assert.are.equal("local\n", send(np.ports.inany, V2 .. "\32\0\0\0" .. "local\n"))
  end)

  it("closes, with a log line, a missing or malformed header", function()
    for _, bad in ipairs({ "hello without a header\n", "PROXY TCP4 nonsense\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
                           "PROXY " .. ("x"):rep(200) .. "\r\n", V2 .. "\49\17\0\12" .. ("\0"):rep(12) }) do
      assert.are.equal("", send(np.ports.inany, bad))
    end
    h.wait_log(np, "inany: [^\n]* end=refused: PROXY protocol: no PROXY header")
    h.wait_log(np, "inany: [^\n]* end=refused: PROXY protocol: malformed v1 header")
    h.wait_log(np, "inany: [^\n]* end=refused: PROXY protocol: malformed v1 addresses")
    h.wait_log(np, "inany: [^\n]* end=refused: PROXY protocol: v1 header without CRLF in 107 bytes")
    h.wait_log(np, "inany: [^\n]* end=refused: PROXY protocol: v2 header with version 3")
    assert.are.equal("v1 only\n", send(np.ports.in1, "PROXY UNKNOWN\r\nv1 only\n"))
  end)

  it("sends v1 and v2 headers to the server (the echo shows what it got)", function()
    local out = send(np.ports.out1, "data\n")
    assert.truthy(out:match("^PROXY TCP4 127%.0%.0%.1 127%.0%.0%.1 %d+ " .. np.ports.out1 .. "\r\ndata\n$"), out)
    out = send(np.ports.out2, "data\n")
    assert.are.equal(V2 .. "\33\17\0\12\127\0\0\1\127\0\0\1", out:sub(1, 24))
    assert.are.equal(np.ports.out2, out:byte(27) * 256 + out:byte(28))
    assert.are.equal("data\n", out:sub(29))
  end)

  it("carries the client's address across two netproxies", function()
    local inner = h.netproxy_start(([[
proxy { name = "inner", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v2" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
    local outer = h.netproxy_start(([[
proxy { name = "outer", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d, proxy_protocol = "v2" } }
]]):format(inner.ports.inner))
    assert.are.equal("across\n", send(outer.ports.outer, "across\n", "127.0.0.9"))
    h.wait_log(inner, "inner: 127%.0%.0%.9:%d+ %-> ")
    h.stop(outer)
    h.stop(inner)
  end)

  describe("with HAProxy", function()
    -- HAProxy with cfg (a format string whose first %d is its frontend's port) on a free port.
    local function haproxy(cfg, ...)
      local args = { ... }
      return h.on_free_port("haproxy", function(port)
        local path = h.write(h.tmpfile("haproxy.cfg"), cfg:format(port, unpack(args)))
        return h.spawn({ "haproxy", "-db", "-f", path })
      end)
    end

    it("reads what HAProxy sends (send-proxy-v2)", function()
      local np2 = h.netproxy_start(([[
proxy { name = "behind", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v2" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port))
      local front = haproxy([[
defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend f
  bind 127.0.0.1:%d
  default_backend b
backend b
  server s 127.0.0.1:%d send-proxy-v2
]], np2.ports.behind).port
      assert.are.equal("via haproxy\n", send(front, "via haproxy\n", "127.0.0.7"))
      h.wait_log(np2, "behind: 127%.0%.0%.7:%d+ %-> ")
    end)

    it("is read by HAProxy (accept-proxy)", function()
      local p = haproxy([[
global
  log stdout format raw local0
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend f
  bind 127.0.0.1:%d accept-proxy
  default_backend b
backend b
  server s 127.0.0.1:%d
]], echo.port)
      local np2 = h.netproxy_start(([[
proxy { name = "front", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d, proxy_protocol = "v1" } }
]]):format(p.port))
      assert.are.equal("to haproxy\n", send(np2.ports.front, "to haproxy\n", "127.0.0.8"))
      h.wait_until(function() return (h.read(p.out) or ""):find("127.0.0.8:", 1, true) end, 5, "haproxy's log line")
    end)
  end)
end)
