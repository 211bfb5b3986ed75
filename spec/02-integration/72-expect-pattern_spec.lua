-- A pool check's expect is a Lua pattern: --check refuses one that would raise only later, on
-- a reply that leads the matcher there (issue 25, item 4: netproxy.luapattern).
local h = require "spec.helpers"

describe("a pool check's expect", function()
  after_each(h.stop_all)

  it("is refused by --check when the matcher would raise on some reply", function()
    for _, c in ipairs({ { 'string.rep("a?", 200)', "pattern too complex" },
                         { '"^OK%"', "malformed pattern (ends with '%')" },
                         { '"^OK (%d+"', "unfinished capture" } }) do
      local config = h.write(h.tmpfile("config.lua"), ([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { "127.0.0.1:1" },
               check = { send = "ping\n", expect = %s } } }
]]):format(c[1]))
      local out, err, rc = h.run({ h.netproxy, "--check", config })
      assert.are_not.equal(0, rc, c[1])
      assert.truthy((out .. err):find("check: expect: bad pattern: " .. c[2], 1, true), out .. err)
    end
  end)
end)
