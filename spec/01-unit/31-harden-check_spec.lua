-- The hardened validators (netproxy.check), the reader and parser rules (netproxy.http,
-- netproxy.stream over a scripted socket) and the sandbox (netproxy.sandbox), as pure Lua.
local h = require "spec.helpers"
package.preload["netproxy.core"] = package.preload["netproxy.core"] or function()
  return { now = os.clock }
end
local check = require "netproxy.check"
local http = require "netproxy.http"
local sandbox = require "netproxy.sandbox"
local ffi = require "ffi"

pcall(ffi.cdef, "int inet_pton(int af, const char *src, void *dst);")
local pton_buf = ffi.new("uint8_t[16]")
local function pton(family, s) return ffi.C.inet_pton(family, s, pton_buf) == 1 end

describe("check.ipv4 and check.ipv6", function()
  it("agree with inet_pton", function()
    for _, s in ipairs({ "0.0.0.0", "255.255.255.255", "01.2.3.4", "256.1.1.1", "1.2.3", "1.2.3.4.5",
                         "::", "::1", "::1::2", "1::2:3:4:5:6:7", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:8",
                         "1:2:3:4:5:6:7:8:9", "12345::", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4", "1.2.3.4::",
                         "::ffff:01.2.3.4", "1:2:3:4:5:6:7::8", ":::", ":1::", "1::2:1.2.3.4:5", "fe80::1%lo",
                         "0001::", "00001::", "a::b::c", "::0.0.0.0", "", ":" }) do
      assert.are.equal(pton(2, s), check.ipv4(s) ~= nil, "ipv4 " .. s)
      assert.are.equal(pton(10, s), check.ipv6(s) ~= nil, "ipv6 " .. s)
    end
  end)

  it("give the groups of an address", function()
    assert.are.same({ 0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304 }, check.ipv6("::ffff:1.2.3.4"))
    assert.are.same({ 127, 0, 0, 1 }, check.ipv4("127.0.0.1"))
  end)
end)

describe("check: durations, counts, booleans", function()
  it("durations: 0 or 1 ms .. 30 days, never NaN or infinite", function()
    for _, ok in ipairs({ 0, 0.001, 1, "2.5", 2592000 }) do assert.is_not_nil(check.seconds(ok), tostring(ok)) end
    for _, bad in ipairs({ -1, 0.0009, 2592000.5, 1e300, math.huge, -math.huge, 0 / 0, "soon", true }) do
      local v, err = check.seconds(bad)
      assert.is_nil(v, tostring(bad))
      assert.truthy(err:find("(want 0 or 0.001..2592000 seconds)", 1, true), err)
    end
  end)

  it("int_range says its range", function()
    local v = check.int_range(16, 65536, "bytes")
    assert.are.equal(16, v("16"))
    local _, err = v(math.huge)
    assert.are.equal("bad value 'inf' (want an integer, 16..65536 bytes)", err)
    assert.is_nil(v(0 / 0))
    assert.is_nil(v(16.5))
    assert.is_nil(check.workers(64))
    assert.are.equal(63, check.workers(63))
    assert.is_nil(check.count(-1))
  end)

  it("booleans and the listen defaults", function()
    assert.are.equal(false, check.boolean(false))
    assert.is_nil(check.boolean("true"))
    local conf = { port = 1 }
    assert.is_nil(check.listen(conf))
    assert.are.equal("localhost", conf.host)
    assert.are.equal("missing port", check.listen({ host = "::1" }))
  end)
end)

describe("check.listen_clashes", function()
  local function clashes(a, b)
    return #check.listen_clashes({ { host = a[1], port = a[2], label = "a", where = "f:1" },
                                   { host = b[1], port = b[2], label = "b", where = "f:2" } }) > 0
  end

  it("compares what the addresses stand for", function()
    assert.is_true(clashes({ "localhost", 80 }, { "::1", 80 }))
    assert.is_true(clashes({ "::", 80 }, { "0:0::1", 80 }))
    assert.is_true(clashes({ "0.0.0.0", 80 }, { "10.0.0.1", "80" }))
    assert.is_false(clashes({ "0.0.0.0", 80 }, { "::", 80 }))
    assert.is_false(clashes({ "127.0.0.1", 0 }, { "127.0.0.1", 0 }))
    assert.is_false(clashes({ "a.example", 80 }, { "b.example", 80 }))
  end)

  it("names the earlier listener", function()
    local p = check.listen_clashes({ { host = "127.0.0.1", port = 80, label = "proxy 'a'", where = "f:1" },
                                     { host = "::1", port = 80, label = "proxy 'b'", where = "f:2" },
                                     { host = "localhost", port = 80, label = "proxy 'c'", where = "f:3" } })
    assert.are.equal(1, #p)
    assert.are.same({ where = "f:3", message = "proxy 'c': listen address localhost:80 clashes with 127.0.0.1:80 of proxy 'a' at f:1" }, p[1])
  end)
end)

describe("http.parse_block", function()
  it("reads a real curl CONNECT request", function()
    local first, headers = http.parse_block(h.read(h.root .. "/spec/fixtures/corpus/connect-curl-auth"))
    assert.are.equal("CONNECT www.example.com:443 HTTP/1.1", first)
    assert.are.same({ "alice", "secret" }, { http.parse_basic(headers["proxy-authorization"]) })
    assert.are.equal("Keep-Alive", headers["proxy-connection"])
  end)

  it("refuses bare CR and LF inside lines, and trims values without patterns", function()
    assert.are.same({ nil, "malformed header line" }, { http.parse_block("CONNECT a:1 HTTP/1.1\r\nX: a\nb\r\n\r\n") })
    assert.are.same({ nil, "no first line" }, { http.parse_block("CONNECT a:1\nHTTP/1.1\r\n\r\n") })
    local _, headers = http.parse_block("C a:1 HTTP/1.1\r\nX-Y: \t a  b \t\r\nX-Y: second\r\n\r\n")
    assert.are.equal("a  b", headers["x-y"])
  end)

  it("is linear: the worst shapes of 64 KB parse in milliseconds", function()
    for _, block in ipairs({
      "CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-A: " .. ("a"):rep(65000) .. "\n\r\n\r\n",
      "CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-A: a" .. (" "):rep(65000) .. "b\r\n\r\n",
      "CONNECT 127.0.0.1:1 HTTP/1.1\r\n" .. ("X: y\r\n"):rep(10000) .. "\r\n",
      ("\n"):rep(65000) .. "\r\n\r\n",
      "C " .. ("x"):rep(65000) .. "\r\n\r\n",
    }) do
      local t0 = os.clock()
      http.parse_block(block)
      assert.is_true(os.clock() - t0 < 0.05, ("%.3f s"):format(os.clock() - t0))
    end
  end)
end)

describe("stream.read_until", function()
  local stream = require "netproxy.stream"

  -- A socket that delivers `data` in the given chunk sizes, peek as the C core does it:
  -- everything that has arrived, at least n bytes.
  local function scripted(data, sizes)
    local arrived, pos, i, peeks = "", 1, 1, 0
    local sock = {}
    function sock:peek(n)
      peeks = peeks + 1
      while #arrived < n do
        if pos > #data then return nil, "closed", arrived end
        local size = sizes[(i - 1) % #sizes + 1]
        arrived, pos, i = arrived .. data:sub(pos, pos + size - 1), pos + size, i + 1
      end
      return arrived
    end
    function sock:read(n)
      local got = arrived:sub(1, math.min(n, 65536))
      arrived = arrived:sub(#got + 1)
      return got
    end
    return sock, function() return peeks, arrived end
  end

  it("finds a delimiter split across arrivals, leaves the rest, one peek per arrival", function()
    local data = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY"
    for _, sizes in ipairs({ { 1 }, { 2, 3 }, { 7 }, { 100 } }) do
      local sock, state = scripted(data, sizes)
      assert.are.equal("GET / HTTP/1.1\r\nHost: x\r\n\r\n", stream.read_until(sock, "\r\n\r\n", 1024))
      local peeks, rest = state()
      assert.are.equal(data:sub(28, 27 + #rest), rest)          -- what follows stays for the relay
      assert.is_true(peeks <= math.ceil(#data / sizes[1]) + 1, peeks)
    end
  end)

  it("says too long at max, even when more has arrived", function()
    local sock = scripted(("a"):rep(5000) .. "\r\n\r\n", { 5000 })
    local v, err, partial = stream.read_until(sock, "\r\n\r\n", 1024)
    assert.is_nil(v)
    assert.are.equal("too long", err)
    assert.are.equal(1024, #partial)
  end)
end)

describe("netproxy.sandbox", function()
  it("lock() makes the forbidden calls raise, on the tables it is given", function()
    local libs = { os = { exit = os.exit }, debug = { sethook = debug.sethook, debug = debug.debug },
                   jit = { on = function() end }, _G = {} }
    sandbox.lock(libs)
    local ok, err = pcall(libs.os.exit, 0)
    assert.is_false(ok)
    assert.truthy(err:find("os.exit is not allowed in netproxy scripts", 1, true), err)
    assert.is_false(pcall(libs.debug.sethook))
    assert.is_false(pcall(libs.jit.on))
    assert.is_false(pcall(libs._G.collectgarbage, "stop"))
    assert.is_number(libs._G.collectgarbage("count"))
    assert.is_false(sandbox.in_netproxy())     -- the stand-in core: the spec process keeps os.exit
  end)

  it("bounded() stops a JIT-compilable loop and says where", function()
    local ok, err = pcall(sandbox.bounded, 0.2, function()
      local n = 0
      while true do n = n + 1 end
    end)
    assert.is_false(ok)
    assert.truthy(err:match("31%-harden%-check_spec%.lua:%d+: config took longer than 0%.2 s to load$"), err)
    assert.are.same({ true, 1, 2 }, { pcall(sandbox.bounded, 1, function(a, b) return a, b end, 1, 2) })
  end)

  it("error_message() reads non-string errors", function()
    local _, err = xpcall(function() error({ code = 3, why = "x" }) end, sandbox.error_message)
    assert.truthy(err:match("31%-harden%-check_spec%.lua:%d+: error raised with a table {"), err)
    assert.truthy(err:find("code = 3", 1, true), err)
    _, err = xpcall(function() error() end, sandbox.error_message)
    assert.truthy(err:find("error raised with nil (want a message", 1, true), err)
    _, err = xpcall(function() error("plain", 0) end, sandbox.error_message)
    assert.are.equal("plain", err)
  end)
end)
