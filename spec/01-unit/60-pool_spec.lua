-- netproxy.pool without the C core: the balancers' choices (no shared table: every server up,
-- no connection open), the config checks.
require "spec.helpers"
package.preload["netproxy.core"] = function() return { now = os.clock } end
local pool = require "netproxy.pool"

local function new(balance, servers)
  return pool.new(assert(pool.check({ servers = servers, balance = balance })), "unit")
end

local function picks(p, n, conn, tried)
  local out = {}
  for i = 1, n do out[i] = assert(p:pick(conn or { client = "127.0.0.1:1" }, tried)).name:sub(-1) end
  return table.concat(out)
end

describe("netproxy.pool", function()
  it("smooth weighted round robin: 5,1,1 interleaves (nginx's order)", function()
    local p = new("roundrobin", { { host = "h", port = 1, weight = 5 }, "h:2", "h:3" })
    assert.are.equal("1121311" .. "1121311", picks(p, 14))
  end)

  it("skips the servers this connection tried, then goes to the backups", function()
    local p = new("roundrobin", { "h:1", "h:2", { host = "h", port = 3, backup = true } })
    local s1 = p.servers[1]
    local s2 = p.servers[2]
    assert.are.equal("2", picks(p, 1, nil, { [s1] = true }))
    assert.are.equal("3", picks(p, 1, nil, { [s1] = true, [s2] = true }))
    local none, why = p:pick({}, { [s1] = true, [s2] = true, [p.servers[3]] = true })
    assert.is_nil(none)
    assert.are.equal("no server left to try", why)
  end)

  it("source: consistent hashing moves only the clients of a server that leaves, and they come back", function()
    local p = new("source", { "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80" })
    local before, spread = {}, {}
    for i = 1, 2000 do
      local ip = ("192.168.%d.%d:5"):format(math.floor(i / 256), i % 256)
      before[i] = p:pick({ client = ip }).name
      spread[before[i]] = (spread[before[i]] or 0) + 1
    end
    for _, s in ipairs(p.servers) do assert.is_true(spread[s.name] > 300, s.name .. ": " .. tostring(spread[s.name])) end
    local gone = { [p.servers[2]] = true }      -- as if down: tried counts the same for the ring
    local moved = 0
    for i = 1, 2000 do
      local ip = ("192.168.%d.%d:5"):format(math.floor(i / 256), i % 256)
      local now = p:pick({ client = ip }, gone).name
      if before[i] == "10.0.0.2:80" then
        assert.are_not.equal("10.0.0.2:80", now)
        moved = moved + 1
      else
        assert.are.equal(before[i], now)
      end
      assert.are.equal(before[i], p:pick({ client = ip }).name)   -- back: the same again
    end
    assert.are.equal(spread["10.0.0.2:80"], moved)
  end)

  -- balance = "hash" (issue 29): two instances agree, removing 1 of N moves about 1/N of the
  -- keys and no other, weights are respected; hash_key source, sni or a function.
  local function names(n, weights)
    local list = {}
    for i = 1, n do list[i] = { host = "10.0.1." .. i, port = 80, weight = weights and weights[i] or 1 } end
    return list
  end
  local function hashed(servers, key)
    return pool.new(assert(pool.check({ servers = servers, balance = "hash", hash_key = key })), "unit")
  end

  it("hash: two instances with the same servers send each of 10,000 keys to the same server", function()
    local a, b = hashed(names(10), "sni"), hashed(names(10), "sni")
    for i = 1, 10000 do
      local conn = { client = "127.0.0.1:1", sni = "host" .. i .. ".example" }
      assert.are.equal(a:pick(conn).name, b:pick(conn).name)
    end
  end)

  it("hash: removing 1 of 10 servers moves its keys only, about a tenth of 10,000", function()
    local all, nine = hashed(names(10), "sni"), nil
    local list = names(10)
    table.remove(list, 4)
    nine = hashed(list, "sni")
    local moved, counts = 0, {}
    for i = 1, 10000 do
      local conn = { client = "127.0.0.1:1", sni = "k" .. i }
      local before, after = all:pick(conn).name, nine:pick(conn).name
      counts[before] = (counts[before] or 0) + 1
      if before ~= after then
        moved = moved + 1
        assert.are.equal("10.0.1.4:80", before)     -- only the removed server's keys move
      end
    end
    assert.are.equal(counts["10.0.1.4:80"], moved)
    -- a tenth, within the ring's spread (160 points per server): 1,000 +- 35 %
    assert.is_true(moved > 650 and moved < 1350, "moved " .. moved)
  end)

  it("hash: a server of weight 3 gets about three times the keys of one of weight 1", function()
    local p = hashed(names(4, { 1, 1, 3, 1 }), function(conn) return conn.stash.user end)
    local counts = {}
    for i = 1, 12000 do
      local s = p:pick({ client = "127.0.0.1:1", stash = { user = "user" .. i } }).name
      counts[s] = (counts[s] or 0) + 1
    end
    local one = (counts["10.0.1.1:80"] + counts["10.0.1.2:80"] + counts["10.0.1.4:80"]) / 3
    local ratio = counts["10.0.1.3:80"] / one
    assert.is_true(ratio > 2.4 and ratio < 3.6, "ratio " .. ratio)
  end)

  it("hash: without its key a connection is hashed by its client address; hash_key is checked", function()
    local p = hashed(names(5), "sni")
    local by_client = hashed(names(5), "source")
    for i = 1, 200 do
      local conn = { client = ("192.0.2.%d:4000"):format(i) }
      assert.are.equal(by_client:pick(conn).name, p:pick(conn).name)
    end
    local _, problems = pool.check({ servers = names(2), balance = "hash", hash_key = "cookie" })
    assert.matches("hash_key: unknown 'cookie'", problems[1])
    _, problems = pool.check({ servers = names(2), balance = "source", hash_key = "sni" })
    assert.matches("hash_key: only with balance = \"hash\"", problems[1])
  end)

  it("first takes the first server up; random and leastconn spread over all", function()
    assert.are.equal("1111", picks(new("first", { "h:1", "h:2" }), 4))
    local seen = picks(new("random", { "h:1", "h:2", "h:3" }), 60)
    for _, d in ipairs({ "1", "2", "3" }) do assert.truthy(seen:find(d)) end
    assert.are.equal("123123", picks(new("leastconn", { "h:1", "h:2", "h:3" }), 6))
  end)

  it("a balance function gets the servers' state and the conn, and must return one of them", function()
    local p = new(function(servers, conn) return servers[tonumber(conn.client:match(":(%d)$"))] end,
                  { "h:1", { host = "h", port = 2, weight = 7, backup = true } })
    assert.are.equal("h:2", p:pick({ client = "c:2" }).name)
    assert.are.equal(7, p.views[2].weight)
    assert.is_true(p.views[2].backup)
    assert.is_true(p.views[1].up)
    local bad = new(function() return { name = "h:1" } end, { "h:1" })
    local s, why = bad:pick({ client = "c:1" })
    assert.is_nil(s)
    assert.matches("not one of its servers", why)
  end)

  it("check: what is wrong, said plainly", function()
    local function problems(conf, fields)
      local spec, list = pool.check(conf, fields)
      assert.is_nil(spec)
      return table.concat(list, "\n")
    end
    assert.matches("servers: empty list", problems({ servers = {} }))
    assert.matches("servers%[1%]: 'h': want HOST:PORT", problems({ servers = { "h" } }))
    assert.matches("servers%[1%]: weight 257 out of range %(want 1..256%)", problems({ servers = { { host = "h", port = 1, weight = 257 } } }))
    assert.matches("servers%[2%]: h:1 is already servers%[1%]", problems({ servers = { "h:1", "h:1" } }))
    assert.matches("balance: unknown 'rr'", problems({ servers = { "h:1" }, balance = "rr" }))
    assert.matches("check: expect: bad pattern", problems({ servers = { "h:1" }, check = { expect = "[" } }))
    assert.matches("check: unknown parameter 'every'", problems({ servers = { "h:1" }, check = { every = 1 } }))
    assert.matches("fail_timeout: want seconds > 0", problems({ servers = { "h:1" }, fail_timeout = 0 }))
    assert.matches("servers%[1%]: unknown parameter 'hostname'", problems({ servers = { { hostname = "h", port = 1 } } }))
    -- a pool of proxies: an entry's host and port are the proxy's
    local spec = assert(pool.check({ servers = { { host = "p", port = 3128 } } }, { "proxy_host", "proxy_port" }))
    assert.are.same({ proxy_host = "p", proxy_port = 3128 }, spec.servers[1].fields)
    assert.is_true(spec.proxies)
  end)
end)
