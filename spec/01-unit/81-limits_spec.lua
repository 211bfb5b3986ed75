-- netproxy.gate's per_source / per_user pieces: the validator of a rule and the key a client
-- address counts under (IPv6 grouped by prefix: ::1 is the only IPv6 address on loopback,
-- so the grouping is tested here, on the key; limits.c makes the same text at accept).
require "spec.helpers"
local gate = require "netproxy.gate"

describe("gate.source_key", function()
  it("keeps an IPv4 address whole, an IPv4-mapped one as IPv4", function()
    assert.are.equal("192.0.2.7", gate.source_key("192.0.2.7", 64))
    assert.are.equal("192.0.2.7", gate.source_key("::ffff:192.0.2.7", 64))
  end)

  it("groups IPv6 clients by /64 unless told", function()
    local a = gate.source_key("2001:db8:1:2:aaaa::1")
    assert.are.equal("2001:0db8:0001:0002:0000:0000:0000:0000/64", a)
    assert.are.equal(a, gate.source_key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64))
    assert.are_not.equal(a, gate.source_key("2001:db8:1:3::1", 64))
    assert.are.equal("0000:0000:0000:0000:0000:0000:0000:0000/64", gate.source_key("::1", 64))
  end)

  it("groups by the prefix given, to the bit", function()
    assert.are.equal(gate.source_key("2001:db8:1:2::1", 56), gate.source_key("2001:db8:1:ff::1", 56))
    assert.are_not.equal(gate.source_key("2001:db8:1:100::1", 56), gate.source_key("2001:db8:1:200::1", 56))
    assert.are.equal("2001:0db8:0000:0000:0000:0000:0000:0000/30", gate.source_key("2001:dbb:ffff::", 30))
    assert.are.equal("2001:0db8:0000:0000:0000:0000:0000:0001/128", gate.source_key("2001:db8::1", 128))
  end)

  it("has no key for what is not an IP address", function()
    assert.is_nil(gate.source_key("example.org", 64))
    assert.is_nil(gate.source_key("/run/x.sock", 64))
  end)
end)

describe("gate.check_limit", function()
  it("normalises max_conns, rate and ipv6_prefix", function()
    assert.are.same({ max_conns = 3, ipv6_prefix = 64 }, gate.check_limit({ max_conns = 3 }))
    assert.are.same({ rate_n = 10, rate_s = 60, ipv6_prefix = 56 }, gate.check_limit({ rate = "10/60", ipv6_prefix = 56 }))
    assert.are.same({ rate_n = 5, rate_s = 0.5, ipv6_prefix = 64 }, gate.check_limit({ rate = "5/0.5s" }))
  end)

  it("refuses what is not a rule, saying why", function()
    for v, want in pairs({
      [5] = "want { max_conns",
      [{}] = "want max_conns or rate",
      [{ max_conns = 0 }] = "max_conns: bad count '0'",
      [{ max_conns = 1.5 }] = "max_conns: bad count",
      [{ rate = "10" }] = "rate: bad rate '10'",
      [{ rate = "0/5" }] = "rate: bad rate",
      [{ rate = "5/0" }] = "rate: bad rate",
      [{ max_conns = 1, ipv6_prefix = 0 }] = "ipv6_prefix: bad prefix",
      [{ max_conns = 1, burst = 3 }] = "unknown field 'burst'",
    }) do
      local ok, err = gate.check_limit(v)
      assert.is_nil(ok)
      assert.truthy(err:find(want, 1, true), err)
    end
  end)
end)
