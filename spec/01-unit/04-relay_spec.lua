-- The relay on its own (src/relay.c): spec/c/relay_test.c drives it over loopback TCP pairs
-- with no connection, no Lua; each case is a separate run of the relay-test binary.
local h = require "spec.helpers"

local binary = h.build .. "/relay-test"

local function cases()
  local list = {}
  local p = io.popen(h.quote(binary))
  for name in p:lines() do list[#list + 1] = name end
  p:close()
  return list
end

describe("the relay alone (C, over socket pairs)", function()
  local list = cases()

  it("has its cases", function()
    assert.is_true(#list >= 15, "relay-test lists " .. #list .. " cases")
  end)

  for _, name in ipairs(list) do
    it(name, function()
      local out, err, rc = h.run({ binary, name })
      assert.are.equal(0, rc, out .. err)
      assert.matches(name .. ": ok", out)
    end)
  end
end)
