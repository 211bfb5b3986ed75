-- netproxy.addr (host:port text, the one meaning of `*`) and netproxy.bytes (big-endian
-- integers): pure functions, fed strings.
require "spec.helpers"
local addr = require "netproxy.addr"
local bytes = require "netproxy.bytes"

describe("addr.split", function()
  it("splits host:port, [v6]:port and a bare port with a default host", function()
    assert.are.same({ "example.org", 443 }, { addr.split("example.org:443") })
    assert.are.same({ "127.0.0.1", 0 }, { addr.split("127.0.0.1:0") })
    assert.are.same({ "2001:db8::1", 8080 }, { addr.split("[2001:db8::1]:8080") })
    assert.are.same({ "::1", 65535 }, { addr.split("[::1]:65535") })
    assert.are.same({ "localhost", 6789 }, { addr.split("6789", "localhost") })
  end)

  it("refuses what is not host:port, saying why", function()
    for _, s in ipairs({ "", "example.org", ":80", "host:", "host:http", "host:65536", "host:123456",
                         "a:b:80", "[::1]", "[::1]80", "[example.org]:80", "[]:80", "[::1]:x",
                         "::1:80", "host:-1", "host: 80", "6789" }) do
      local host, err = addr.split(s)
      assert.is_nil(host, s)
      assert.are.equal("string", type(err), s)
    end
    assert.truthy(select(2, addr.split("::1:80")):find("[IPv6]:PORT", 1, true))
    assert.truthy(select(2, addr.split("h:99999")):find("bad port '99999'", 1, true))
  end)

  it("never raises, whatever it is given", function()
    math.randomseed(7)
    for _ = 1, 2000 do
      local t = {}
      for i = 1, math.random(0, 20) do t[i] = string.char(math.random(0, 255)) end
      local ok = pcall(addr.split, table.concat(t), math.random() < 0.5 and "h" or nil)
      assert.is_true(ok)
    end
    assert.is_nil((addr.split(nil)))
    assert.is_nil((addr.split(80)))
  end)

  it("joins back, with brackets for IPv6", function()
    assert.are.equal("example.org:443", addr.join("example.org", 443))
    assert.are.equal("[::1]:22", addr.join("::1", 22))
    for _, s in ipairs({ "a.b:1", "[2001:db8::2]:443", "10.0.0.1:65535" }) do
      assert.are.equal(s, addr.join(addr.split(s)))
    end
  end)
end)

describe("addr patterns: one meaning of *", function()
  local m = addr.host_matches

  it("lets * match within one DNS label, never across a dot", function()
    assert.is_true(m("*.example.com", "www.example.com"))
    assert.is_false(m("*.example.com", "a.b.example.com"))
    assert.is_false(m("*.example.com", "example.com"))
    assert.is_false(m("*.example.com", ".example.com"))    -- a label of * is at least one character
    assert.is_true(m("web-*.corp", "web-12.corp"))
    assert.is_true(m("web-*.corp", "web-.corp"))           -- inside a label, * may be empty
    assert.is_false(m("web-*.corp", "web-1.x.corp"))
    assert.is_true(m("10.0.0.*", "10.0.0.7"))
    assert.is_false(m("10.0.*", "10.0.0.7"))
    assert.is_true(m("a.*.c", "a.b.c"))
    assert.is_false(m("a.*.c", "a.b.b.c"))
  end)

  it("lets a host pattern of * alone match every host", function()
    for _, host in ipairs({ "example.com", "a.b.c.d", "127.0.0.1", "::1", "[2001:db8::1]", "x" }) do
      assert.is_true(m("*", host), host)
    end
  end)

  it("compares in lower case, and exactly without *", function()
    assert.is_true(m("*.Example.COM", "WWW.example.com"))
    assert.is_true(m("host.test", "HOST.TEST"))
    assert.is_false(m("host.test", "host.test.evil"))
    assert.is_false(m("host.test", "xhost.test"))
    assert.is_false(m("h.t", "hxt"))                       -- a dot is a dot, not "any character"
    assert.is_false(m("a%", "a"))
  end)

  it("matches IPv6 addresses with or without brackets", function()
    assert.is_true(m("::1", "[::1]"))
    assert.is_true(m("[::1]", "::1"))
    assert.is_true(m("2001:db8::*", "2001:db8::42"))
    assert.is_false(m("::1", "::2"))
  end)

  it("never matches a missing name", function()
    assert.is_false(m("*.example.com", nil))
  end)

  it("checks host:port allow lists: port * or a number", function()
    local list = { "*.example.com:443", "127.0.0.1:*", "[::1]:22", "*:8080" }
    assert.are.same(list, (addr.check_patterns(list)))
    assert.is_true(addr.allowed(list, "www.example.com", 443))
    assert.is_false(addr.allowed(list, "www.example.com", 80))
    assert.is_false(addr.allowed(list, "a.b.example.com", 443))
    assert.is_true(addr.allowed(list, "127.0.0.1", 1))
    assert.is_true(addr.allowed(list, "::1", 22))
    assert.is_false(addr.allowed(list, "::1", 23))
    assert.is_true(addr.allowed(list, "anything.at.all", 8080))
    assert.is_true(addr.allowed({ "*:*" }, "x.y.z", 1))
    assert.is_false(addr.allowed({ "h:1" }, "h", 10))
  end)

  it("refuses malformed patterns with a message", function()
    for _, p in ipairs({ "example.com", "*.example.com:https", "a b:80", "h:1*", ":80", "h:70000" }) do
      local ok, err = addr.check_patterns({ p })
      assert.is_nil(ok, p)
      assert.truthy(err:find("bad pattern", 1, true), err)
    end
    assert.is_nil((addr.check_patterns(42)))
    assert.is_nil((addr.check_patterns({ 42 })))
    assert.are.same({ "h:1" }, (addr.check_patterns("h:1")))
  end)
end)

describe("bytes", function()
  it("reads big-endian u16 and u24 and writes u16", function()
    assert.are.equal(0x0102, bytes.u16("\1\2", 1))
    assert.are.equal(0xffff, bytes.u16("x\255\255", 2))
    assert.are.equal(0x010203, bytes.u24("\1\2\3", 1))
    assert.are.equal("\1\2", bytes.be16(0x0102))
    assert.are.equal("\0\0", bytes.be16(0))
    assert.are.equal("\255\255", bytes.be16(65535))
    for _, n in ipairs({ 0, 1, 255, 256, 1080, 65535 }) do
      assert.are.equal(n, bytes.u16(bytes.be16(n), 1))
    end
  end)

  it("returns nil past the end instead of raising", function()
    assert.is_nil(bytes.u16("\1", 1))
    assert.is_nil(bytes.u16("", 1))
    assert.is_nil(bytes.u24("\1\2", 1))
    assert.is_nil(bytes.u16("\1\2", 2))
  end)
end)
