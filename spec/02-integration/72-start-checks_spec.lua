-- What a start (or --check) says before anything listens: a user or group to run as that
-- does not exist stops the start at once; a PROXY-protocol listener that any client can
-- reach is a warning (its header is believed as sent).
local h = require "spec.helpers"

local CONFIG = [[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]]

describe("a start", function()
  after_each(h.stop_all)

  for _, case in ipairs({
    { args = { "-w", "1", "--user", "nosuchuser" }, says = "user nosuchuser: no such user" },
    { args = { "-w", "2", "--user", "nosuchuser" }, says = "user nosuchuser: no such user" },
    { args = { "-w", "2", "--group", "nosuchgroup" }, says = "group nosuchgroup: no such group" },
  }) do
    it("with " .. table.concat(case.args, " ") .. " fails at once, before listening", function()
      local path = h.write(h.tmpfile("user.lua"), CONFIG)
      local argv = { h.netproxy }
      for _, a in ipairs(case.args) do argv[#argv + 1] = a end
      argv[#argv + 1] = path
      local p = h.spawn(argv)
      local rc = h.exit_status(p, 10)       -- before the fix, workers failed and were replaced for ever
      local err = h.read(p.err)
      assert.are.equal(1, rc, err)
      assert.truthy(err:find(case.says, 1, true), err)
      assert.falsy(err:find("listening on", 1, true), err)
    end)
  end
end)

describe("--check and a PROXY-protocol listener", function()
  local function check(from, guards)
    local path = h.write(h.tmpfile("pp.lua"), ([[
proxy { name = "pp", %s
        from = { type = "tcp", %s port = 0, proxy_protocol = "v1" },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]]):format(guards or "", from))
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    return rc, err
  end

  it("warns (and passes) when any client can reach it without allow or deny", function()
    for _, from in ipairs({ 'host = "0.0.0.0",', 'host = "*",', 'host = "::",' }) do
      local rc, err = check(from)
      assert.are.equal(0, rc, err)
      assert.truthy(err:find(":%d+: warning: proxy 'pp': from: proxy_protocol on [^\n]* trusts the header of any client"), from .. "\n" .. err)
      assert.truthy(err:find("restrict it to your load balancers with allow", 1, true), err)
    end
  end)

  it("is quiet on loopback, or with allow or deny (the proxy's or server{}'s)", function()
    for _, c in ipairs({ { 'host = "127.0.0.1",' }, { "" }, { 'host = "::1",' },
                         { 'host = "0.0.0.0",', 'allow = { "10.0.0.0/8" },' },
                         { 'host = "0.0.0.0",', 'deny = { "192.0.2.0/24" },' } }) do
      local rc, err = check(c[1], c[2])
      assert.are.equal(0, rc, err)
      assert.falsy(err:find("warning", 1, true), c[1] .. "\n" .. err)
    end
    local path = h.write(h.tmpfile("pp-server.lua"), [[
server { allow = { "10.0.0.0/8" } }
proxy { name = "pp", from = { type = "tcp", host = "0.0.0.0", port = 0, proxy_protocol = "any" },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are.equal(0, rc, err)
    assert.falsy(err:find("warning", 1, true), err)
  end)
end)
