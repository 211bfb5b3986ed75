-- netproxy.dns without the C core: queries encoded, answers of a real dnsmasq parsed (their
-- TTLs, SRV priorities, weights, ports and targets), malformed answers refused with a reason;
-- and netproxy.pool's checks of the DNS forms of servers.
require "spec.helpers"
package.preload["netproxy.core"] = package.preload["netproxy.core"] or function() return { now = os.clock } end
local dns = require "netproxy.dns"
local pool = require "netproxy.pool"

-- dnsmasq's answers (spec/fuzz/targets.lua has the same): app.internal A with id 0x1234, two
-- records of TTL 1; _app._tcp.internal SRV: 20 1 7002 bk.internal, 10 5 7001 app.internal,
-- with the targets' A records in the additional section.
local A = "\18\52\133\128\0\1\0\2\0\0\0\1\3\97\112\112\8\105\110\116\101\114\110\97\108\0\0\1\0\1\192\12\0\1\0\1\0\0\0\1\0\4\127\0\0\3\192\12\0\1\0\1\0\0\0\1\0\4\127\0\0\5\0\0\41\4\208\0\0\0\0\0\0"
local SRV = "\18\52\133\128\0\1\0\2\0\0\0\4\4\95\97\112\112\4\95\116\99\112\8\105\110\116\101\114\110\97\108\0\0\33\0\1\192\12\0\33\0\1\0\0\0\1\0\19\0\20\0\1\27\90\2\98\107\8\105\110\116\101\114\110\97\108\0\192\12\0\33\0\1\0\0\0\1\0\20\0\10\0\5\27\89\3\97\112\112\8\105\110\116\101\114\110\97\108\0\192\85\0\1\0\1\0\0\0\1\0\4\127\0\0\5\192\85\0\1\0\1\0\0\0\1\0\4\127\0\0\3\192\54\0\1\0\1\0\0\0\1\0\4\127\0\0\9\0\0\41\4\208\0\0\0\0\0\0"

describe("netproxy.dns", function()
  it("encodes a query: id, one question, recursion desired, an EDNS0 OPT record", function()
    local q = assert(dns.query(0x1234, "app.internal", dns.A))
    assert.are.equal("\18\52\1\0\0\1\0\0\0\0\0\1\3app\8internal\0\0\1\0\1", q:sub(1, 30))
    assert.are.equal(30 + 11, #q)
    assert.is_nil(dns.query(1, "a..b", dns.A))
    assert.is_nil(dns.query(1, ("x"):rep(64) .. ".org", dns.A))
  end)

  it("parses A records with their TTLs, and SRV records with their targets' addresses", function()
    local r = assert(dns.parse(A, 0x1234, "app.internal", dns.A))
    assert.are.same({ { type = "A", name = "app.internal", ttl = 1, address = "127.0.0.3" },
                      { type = "A", name = "app.internal", ttl = 1, address = "127.0.0.5" } }, r.answers)
    r = assert(dns.parse(SRV, 0x1234, "_app._tcp.internal", dns.SRV))
    assert.are.same({ type = "SRV", name = "_app._tcp.internal", ttl = 1, priority = 20, weight = 1, port = 7002,
                      target = "bk.internal" }, r.answers[1])
    assert.are.same({ 10, 5, 7001, "app.internal" }, { r.answers[2].priority, r.answers[2].weight, r.answers[2].port,
                                                      r.answers[2].target })
    assert.are.equal(3, #r.additional)       -- the OPT record is not one of them
    assert.are.equal("127.0.0.9", r.additional[3].address)
  end)

  it("refuses what is not the answer asked for, or malformed, with a reason", function()
    local function why(s, ...) local r, err = dns.parse(s, ...) assert.is_nil(r) return err end
    assert.are.equal("not our id", why(A, 0x1235, "app.internal", dns.A))
    assert.are.equal("not our question", why(A, 0x1234, "other.internal", dns.A))
    assert.are.equal("not our question", why(A, 0x1234, "app.internal", dns.AAAA))
    assert.are.equal("short answer", why(A:sub(1, 11)))
    for cut = 12, #A - 12 do assert.is_string(why(A:sub(1, cut))) end      -- every truncation
    assert.are.equal("truncated answer (over 1232 bytes)", why(A:sub(1, 2) .. "\135\128" .. A:sub(5)))
    assert.are.equal("no such name", why(A:sub(1, 3) .. "\131" .. A:sub(5)))
    -- a pointer to itself, one forwards, a record's length that is not its type's
    assert.are.equal("record 1: pointer forwards", why(A:sub(1, 30) .. "\192\30" .. A:sub(33)))
    assert.are.equal("record 1: pointer forwards", why(A:sub(1, 30) .. "\192\60" .. A:sub(33)))
    assert.are.equal("record 1: A record of 5 bytes", why(A:sub(1, 40) .. "\0\5" .. A:sub(43, 46) .. "\0" .. A:sub(47)))
    assert.are.equal("record 2's data past the end", why(A:sub(1, 56) .. "\1\0" .. A:sub(59)))
    -- a TTL with its high bit set is 0 (RFC 2181); a huge one is a week
    local r = assert(dns.parse(A:sub(1, 36) .. "\128\0\0\0" .. A:sub(41, 52) .. "\127\255\255\255" .. A:sub(57)))
    assert.are.same({ 0, 604800 }, { r.answers[1].ttl, r.answers[2].ttl })
  end)
end)

describe("netproxy.pool servers from DNS", function()
  local function problems(conf)
    local spec, list = pool.check(conf)
    return spec and "" or table.concat(list, "; ")
  end

  it("takes resolve = NAME:PORT and srv = _service._proto.NAME, with resolve_min and resolve_max", function()
    local spec = assert(pool.check({ servers = { resolve = "app.internal:8080" } }))
    assert.are.same({ "resolve", "app.internal", 8080 }, { spec.dns.kind, spec.dns.name, spec.dns.port })
    assert.are.same({ 1, 300 }, { spec.resolve_min, spec.resolve_max })
    spec = assert(pool.check({ servers = { srv = "_app._tcp.internal" }, resolve_min = 5, resolve_max = 60 }))
    assert.are.same({ "srv", "_app._tcp.internal", 5, 60 }, { spec.dns.kind, spec.dns.name, spec.resolve_min, spec.resolve_max })
  end)

  it("refuses a bad name, a bad srv form, both, and bounds out of order", function()
    assert.matches("servers: resolve: 'app.internal': want HOST:PORT", problems({ servers = { resolve = "app.internal" } }))
    assert.matches("is not a DNS name", problems({ servers = { resolve = "10.0.0.1:80" } }))
    assert.matches("is not a DNS name", problems({ servers = { resolve = "a..b:80" } }))
    assert.matches("port 0", problems({ servers = { resolve = "app.internal:0" } }))
    assert.matches("srv: 'app.internal' is not \"_service._proto.NAME\"", problems({ servers = { srv = "app.internal" } }))
    assert.matches("resolve or srv, not both", problems({ servers = { srv = "_a._tcp.x", resolve = "x:1" } }))
    assert.matches("unknown parameter 'weight' next to resolve/srv", problems({ servers = { resolve = "x:1", weight = 2 } }))
    assert.matches("resolve_min %(9%) is above resolve_max %(3%)", problems({ servers = { resolve = "x:1" }, resolve_min = 9, resolve_max = 3 }))
    assert.matches("resolve_min: want seconds > 0", problems({ servers = { resolve = "x:1" }, resolve_min = 0 }))
    assert.matches("resolve_min, resolve_max: only with servers", problems({ servers = { "h:1" }, resolve_max = 3 }))
    assert.matches("want a connector with a host and a port", select(2, pool.check({ servers = { resolve = "x:1" } }, { "path" }))[1])
  end)
end)
