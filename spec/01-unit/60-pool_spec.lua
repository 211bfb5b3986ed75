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
