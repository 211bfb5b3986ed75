-- netproxy.config: the config language, checked without the C core.
local h = require "spec.helpers"
-- Checking a config never calls into the C core; connectors only need it to exist.
package.preload["netproxy.core"] = function() return {} end
local config = require "netproxy.config"

local function load(text, cli)
  cli = cli or {}
  cli.builtin_connectors = h.root .. "/connectors"
  local path = h.write(h.tmpfile("config.lua"), text)
  local cfg, errors = config.load(path, cli)
  return cfg, errors, path
end

describe("netproxy.config", function()
  it("normalises a proxy: defaults, listen address, server-wide options", function()
    local cfg = load([[
server { connect_timeout = 3 }
proxy { name = "web", from = { type = "tcp", port = "6789" }, to = { type = "tcp", host = "h", port = 1 } }
proxy { from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 }, connect_timeout = 1 }
]])
    local web = cfg.proxies[1]
    assert.are.equal("web", web.name)
    assert.are.same({ { host = "localhost", port = 6789, backlog = 4096 } }, web.listen)
    assert.are.equal(3, web.connect_timeout)
    assert.are.equal(3600, web.idle_timeout)
    assert.are.equal("auto", web.relay)
    assert.are.equal("proxy2", cfg.proxies[2].name)
    assert.are.equal(1, cfg.proxies[2].connect_timeout)
    assert.are.equal(2, cfg.server.log_level)
  end)

  it("lets the command line win over server{}", function()
    local cfg = load([[
server { log_level = "err", max_connections = 5, relay = "splice" }
proxy { from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 } }
]], { log_level = 3, max_connections = 7, relay = "buffered", verbose = 1 })
    assert.are.equal(4, cfg.server.log_level)
    assert.are.equal(7, cfg.server.max_connections)
    assert.are.equal("buffered", cfg.proxies[1].relay)
  end)

  it("finds connectors in the user's folders after the built-in one", function()
    local dir = h.tmp() .. "/my-connectors"
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/echoish.lua", 'return { positions = { to = true }, params = {}, connect = function() end }')
    local cfg, errors = load([[
server { connector_path = "my-connectors" }
proxy { from = { type = "tcp", port = 1 }, to = { type = "echoish" } }
]])
    assert.is_table(cfg, errors and errors[1])
    assert.are.equal("echoish", cfg.proxies[1].to.type)
  end)

  it("refuses a connector in a position it cannot take", function()
    local _, errors = load('proxy { from = { type = "dummy" }, to = { type = "tcp", host = "h", port = 2 } }\n')
    assert.truthy(errors[1]:find(":1: proxy 'proxy1': from: the dummy connector cannot be used as 'from'", 1, true), errors[1])
  end)

  it("reports proxy{} called with something else than a table", function()
    local _, errors = load('\nproxy "web"\n')
    assert.truthy(errors[1]:find(":2: proxy wants a table", 1, true), errors[1])
  end)
  describe("bandwidth", function()
    local function P(port)
      return ('from = { type = "tcp", port = %d }, to = { type = "tcp", host = "h", port = 2 }'):format(port)
    end

    it("reads rates in bytes a second: k, m, g are multiples of 1024, a b and a /s may follow", function()
      local cfg, errors = load(([[
proxy { %s, bandwidth = { per_conn = "1MB", per_source = "512k", per_proxy = "10mb" } }
proxy { %s, bandwidth = { per_conn = 2097152, per_source = "1.5m/s", per_proxy = 0 } }
proxy { %s, bandwidth = { per_conn = "1 GB" } }
]]):format(P(1), P(3), P(4)))
      assert.is_table(cfg, errors and errors[1])
      assert.are.same({ per_conn = 1048576, per_source = 524288, per_proxy = 10485760 }, cfg.proxies[1].bandwidth)
      assert.are.same({ per_conn = 2097152, per_source = 1572864, per_proxy = 0 }, cfg.proxies[2].bandwidth)
      assert.are.same({ per_conn = 1024 ^ 3 }, cfg.proxies[3].bandwidth)
    end)

    it("takes server{}'s rates as defaults, a proxy's own on top, key by key", function()
      local cfg, errors = load(([[
server { bandwidth = { per_conn = "1m", per_proxy = "100m" } }
proxy { %s, bandwidth = { per_conn = "2m", per_source = "10m" } }
proxy { %s }
]]):format(P(1), P(3)))
      assert.is_table(cfg, errors and errors[1])
      assert.are.same({ per_conn = 2097152, per_source = 10485760, per_proxy = 104857600 }, cfg.proxies[1].bandwidth)
      assert.are.same({ per_conn = 1048576, per_proxy = 104857600 }, cfg.proxies[2].bandwidth)
    end)

    it("refuses a bad rate, an unknown key, a non-table and shaping a udp proxy, each clearly", function()
      for bad, message in pairs({
        ['{ per_conn = "1x" }'] = "bandwidth: per_conn: bad rate '1x' (want bytes a second",
        ['{ per_conn = -5 }'] = "bandwidth: per_conn: bad rate '-5'",
        ['{ per_source = 100 }'] = "bandwidth: per_source: bad rate '100' (want bytes a second: a number, or with k, m or g, multiples of 1024",
        ['{ per_proxy = "2t" }'] = "bandwidth: per_proxy: bad rate '2t'",
        ['{ per_user = "1m" }'] = "bandwidth: unknown key 'per_user' (want per_conn, per_source, per_proxy)",
        ['"1m"'] = "bandwidth: want a table like { per_conn = \"1MB\"",
      }) do
        local cfg, errors = load(("proxy { %s, bandwidth = %s }"):format(P(1), bad))
        assert.is_nil(cfg, bad)
        assert.truthy(errors[1]:find(message, 1, true), bad .. " -> " .. errors[1])
      end
      local cfg, errors = load([[
proxy { from = { type = "udp", port = 1 }, to = { type = "udp", host = "h", port = 2 }, bandwidth = { per_conn = "1m" } }
]])
      assert.is_nil(cfg)
      assert.truthy(errors[1]:find("bandwidth does nothing on a udp proxy", 1, true), errors[1])
    end)
  end)
end)
