-- netproxy.check: the validators behind every config value.
require "spec.helpers"
local check = require "netproxy.check"

describe("netproxy.check", function()
  it("takes ports as numbers or numeric strings, 0..65535", function()
    assert.are.equal(80, check.port(80))
    assert.are.equal(6789, check.port("6789"))
    assert.are.equal(0, check.port(0))
    for _, bad in ipairs({ -1, 65536, 1.5, "http", true }) do
      local v, err = check.port(bad)
      assert.is_nil(v)
      assert.truthy(err:find("bad port", 1, true))
    end
  end)

  it("takes host names and IP literals, IPv6 with or without brackets", function()
    assert.are.equal("example.com", check.host("example.com"))
    assert.are.equal("127.0.0.1", check.host("127.0.0.1"))
    assert.are.equal("::1", check.host("::1"))
    assert.are.equal("::1", check.host("[::1]"))
    assert.are.equal("my_host-1", check.host("my_host-1"))
    for _, bad in ipairs({ "", "bad host", "a..b", "x/y", 12, ("a"):rep(254), "[zz::1]" }) do
      assert.is_nil(check.host(bad), tostring(bad))
    end
  end)

  it("knows the log levels by number and by name", function()
    assert.are.equal(0, check.log_level("err"))
    assert.are.equal(4, check.log_level("debug"))
    assert.are.equal(3, check.log_level(3))
    assert.is_nil(check.log_level(5))
    assert.is_nil(check.log_level("loud"))
  end)

  it("checks the fields of a table and names unknown ones", function()
    local out, problems = check.fields({ port = "80", colour = "red", host = "bad host" },
                                       { port = check.port, host = check.host })
    assert.are.equal(80, out.port)
    assert.is_nil(out.host)
    assert.are.same({ "host: bad host 'bad host'", "unknown parameter 'colour'" }, problems)
  end)

  it("takes nameservers as ip or ip:port", function()
    assert.are.same({ "127.0.0.1:53" }, check.resolvers("127.0.0.1:53"))
    assert.are.same({ "::1", "[::1]:5353" }, check.resolvers({ "::1", "[::1]:5353" }))
    assert.is_nil(check.resolvers({ "dns.example" }))
    assert.is_nil(check.resolvers({}))
  end)
end)
