-- netproxy.udp's pool per flow without the C core: pick() chooses once, failed() records a
-- server that refused and pick() then goes to another, never one twice, at most 1 + retries;
-- pool.check() of a udp pool's check (send required).
require "spec.helpers"
package.preload["netproxy.core"] = function() return { now = os.clock } end
local pool = require "netproxy.pool"
local udp = require "netproxy.udp"

local function flow(conf, client)
  local spec = assert(pool.check(conf, nil, true))
  local proxy = { name = "unit", to = { type = "udp", _pool = pool.new(spec, "unit") } }
  return assert(udp.start(proxy, 1, client or "127.0.0.1:5000", nil))
end

describe("netproxy.udp with a pool", function()
  it("picks a server per flow and names it as the flow's target", function()
    local conn = flow({ servers = { "10.0.0.1:53", "10.0.0.2:53" } })
    assert.is_nil(conn.target)
    local name, host, port, row, failed = udp.pick(conn)
    assert.are.same({ "10.0.0.1:53", "10.0.0.1", 53, nil, nil }, { name, host, port, row, failed })
    assert.are.equal("10.0.0.1:53", conn.target)
  end)

  it("after a failure goes to a server not tried yet, and lists the failed ones", function()
    local conn = flow({ servers = { "10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53" }, balance = "first" })
    assert.are.equal("10.0.0.1:53", (udp.pick(conn)))
    assert.is_nil(udp.failed(conn, "refused"))         -- no shared table here: never "down"
    local name, _, _, _, failed = udp.pick(conn)
    assert.are.equal("10.0.0.2:53", name)
    assert.are.equal("10.0.0.1:53", failed)
    udp.failed(conn, "refused")
    name, _, _, _, failed = udp.pick(conn)
    assert.are.equal("10.0.0.3:53", name)
    assert.are.equal("10.0.0.1:53,10.0.0.2:53", failed)
    udp.failed(conn, "name does not resolve")
    local none, why, all = udp.pick(conn)
    assert.is_nil(none)
    assert.are.equal("10.0.0.3:53: name does not resolve", why)
    assert.are.equal("10.0.0.1:53,10.0.0.2:53,10.0.0.3:53", all)
  end)

  it("tries at most 1 + retries servers", function()
    local conn = flow({ servers = { "10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53" }, retries = 1 })
    udp.pick(conn)
    udp.failed(conn, "refused")
    assert.truthy(udp.pick(conn))
    udp.failed(conn, "refused")
    local none, why = udp.pick(conn)
    assert.is_nil(none)
    assert.matches(": refused$", why)
  end)

  it("source: the same client address (any port) gets the same server", function()
    local servers = { "10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53", "10.0.0.4:53" }
    for i = 1, 50 do
      local ip = "192.168.0." .. i
      local first = udp.pick(flow({ servers = servers, balance = "source" }, ip .. ":1000"))
      assert.are.equal(first, (udp.pick(flow({ servers = servers, balance = "source" }, ip .. ":" .. (2000 + i)))))
    end
  end)

  it("a balance function sees the flow's conn", function()
    local conn = flow({ servers = { "10.0.0.1:53", "10.0.0.2:53" },
                        balance = function(servers, c) return c.client:find("^10%.") and servers[2] or servers[1] end },
                      "10.9.9.9:7")
    assert.are.equal("10.0.0.2:53", (udp.pick(conn)))
  end)
end)

describe("pool.check for udp", function()
  local function problems(conf)
    local spec, list = pool.check(conf, nil, true)
    assert.is_nil(spec)
    return table.concat(list, "\n")
  end

  it("wants send in a check table, or a function", function()
    assert.matches("check: send: required for udp", problems({ servers = { "h:1" }, check = { interval = 1 } }))
    assert.matches("waits for a reply matching expect", problems({ servers = { "h:1" }, check = { expect = "^x" } }))
    local spec = assert(pool.check({ servers = { "h:1" }, check = { send = "ping", expect = "^pong" } }, nil, true))
    assert.is_true(spec.check.datagram)
    assert.is_true(assert(pool.check({ servers = { "h:1" }, check = function() return true end }, nil, true)).check.datagram)
    -- the same check table is fine for TCP: a connect is a check there
    assert.truthy(pool.check({ servers = { "h:1" }, check = { interval = 1 } }))
  end)
end)
