-- The config of services, lifecycle hooks and shared dicts, checked without the C core.
local h = require "spec.helpers"
package.preload["netproxy.core"] = function() return {} end
local config = require "netproxy.config"

local function load(text)
  local path = h.write(h.tmpfile("config.lua"), text)
  return config.load(path, { builtin_connectors = h.root .. "/connectors" })
end

local FROM = 'from = { type = "tcp", port = 1 }'

describe("the service connector's config", function()
  it("takes serve, or the on_* callbacks with input_mode, timeout and max_output", function()
    local cfg = assert(load(([[
proxy { name = "a", %s, to = { type = "service", serve = function() end } }
proxy { name = "b", from = { type = "tcp", port = 2 }, to = { type = "service", on_input = function() end, input_mode = "line", timeout = 5 } }
]]):format(FROM)))
    assert.equal("function", type(cfg.proxies[1].to.serve))
    assert.equal("line", cfg.proxies[2].to.input_mode)
    assert.equal(5, cfg.proxies[2].to.timeout)
    assert.equal(1024 * 1024, cfg.proxies[2].to.max_output)
  end)

  it("refuses both forms at once, neither, a bad input_mode, and service as from", function()
    local cases = {
      { 'to = { type = "service", serve = function() end, on_input = function() end }', "two forms: use one" },
      { 'to = { type = "service" }', "want serve = function%(client, conn%) or on_input" },
      { 'to = { type = "service", on_input = function() end, input_mode = "word" }', "input_mode" },
      { 'to = { type = "service", serve = function() end, timeout = 3 }', "go with the on_%* callbacks" },
      { 'to = { type = "service", serve = "nope" }', "serve: want a function" },
    }
    for _, case in ipairs(cases) do
      local cfg, errors = load(("proxy { %s, %s }"):format(FROM, case[1]))
      assert.is_nil(cfg, case[1])
      assert.matches(case[2], table.concat(errors, "\n"))
      assert.matches("config%.lua:1: ", errors[1])
    end
    local _, errors = load('proxy { from = { type = "service", serve = function() end }, to = { type = "tcp", host = "h", port = 1 } }')
    assert.matches("cannot be used as 'from'", errors[1])
  end)
end)

describe("lifecycle hooks and shared dicts in the config", function()
  it("take on_start, on_stop, on_close as functions and dict sizes as bytes or k/m/g", function()
    local cfg = assert(load(([[
server { on_start = function() end, on_stop = function() end, shared = { a = "64k", b = "1m", c = 8192 } }
proxy { %s, to = { type = "service", serve = function() end }, on_close = function() end }
]]):format(FROM)))
    assert.same({ a = 65536, b = 1048576, c = 8192 }, cfg.server.shared)
    assert.equal("function", type(cfg.proxies[1].on_close))
  end)

  it("refuse what is not a function, bad dict names and sizes", function()
    for _, case in ipairs({
      { 'server { on_start = 1 }', "on_start: want a function" },
      { 'server { shared = { ["bad name"] = "1m" } }', "bad dict name 'bad name'" },
      { 'server { shared = { a = "1k" } }', "a: bad size '1k' %(want 8k%.%.1g%)" },
      { 'server { shared = { a = "lots" } }', "a: bad size 'lots'" },
      { 'server { shared = "1m" }', "want a table" },
    }) do
      local cfg, errors = load(case[1] .. ("\nproxy { %s, to = { type = \"service\", serve = function() end } }"):format(FROM))
      assert.is_nil(cfg, case[1])
      assert.matches(case[2], table.concat(errors, "\n"))
    end
    local _, errors = load(("proxy { %s, to = { type = \"service\", serve = function() end }, on_close = true }"):format(FROM))
    assert.matches("on_close: want a function", errors[1])
  end)
end)
