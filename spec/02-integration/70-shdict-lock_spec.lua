-- Shared dicts under failing allocations: an operation that raises (lua_call_memory spent, a
-- bad argument) must leave the dict's lock free, so that the same process still serves its
-- connections, the dict stays usable and SIGTERM still stops netproxy (issue 25, items 1, 13).
local h = require "spec.helpers"

-- A service on a dict "d": "fill" stores a 440-byte string; "starve" spends what is left of
-- the call's lua_call_memory on a chain of small tables and then reads that string back, so
-- that pushing it fails; "get" answers its length; "bad <method>" calls a method with a key
-- of 256 bytes and answers the error.
local CONFIG = [[
local core = require "netproxy.core"
server { shared = { d = "64k" } }
proxy { name = "dict", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        lua_call_memory = "64k",
        to = { type = "service", serve = function(c)
          local d = core.shared("d")
          local cmd = c:read("*l")
          if cmd == "fill" then
            d:set("big", ("v"):rep(439) .. "!")
            c:write("ok\n")
          elseif cmd == "starve" then
            collectgarbage()        -- the value's string, made by "fill", is gone: get must make it
            local chain
            pcall(function() while true do chain = { chain } end end)
            local v = d:get("big")  -- not enough memory (raised with the lock held, before the fix)
            c:write(#v .. " " .. tostring(chain ~= nil) .. "\n")
          elseif cmd == "get" then
            c:write(#d:get("big") .. "\n")
          elseif cmd == "errors" then
            local long = ("k"):rep(256)
            for _, call in ipairs({
              function() d:get(long) end, function() d:set(long, 1) end,
              function() d:incr(long, 1, 0) end, function() d:delete(long) end,
              function() d:get("") end, function() d:get({}) end,
              function() d:set("k", {}) end, function() d:set("k", 1, -1) end,
              function() d:set("k", 1, "soon") end, function() d:incr("k", "one") end,
              function() d:incr("k", 1, true) end, function() d.get("k") end,
              function() d.capacity() end }) do
              local ok, err = pcall(call)
              c:write(tostring(ok) .. " " .. tostring(err) .. "\n")
            end
            c:write(tostring(d:set("k", 1)) .. " " .. tostring(d:incr("k", 1)) .. "\n")
          end
        end } }
]]

describe("a shared dict", function()
  after_each(h.stop_all)

  it("is unlocked when get's value cannot be pushed (lua_call_memory spent): the process serves on and SIGTERM stops it", function()
    local np = h.netproxy_start(CONFIG)
    local port = np.ports.dict
    assert.equal("ok\n", (h.talk(port, "fill\n", { want = "\n", timeout = 5 })))
    local out = h.talk(port, "starve\n", { timeout = 5 })
    assert.equal("", out)
    h.wait_log(np, "dict[^\n]*end=lua error: not enough memory")
    -- the same (single) process, the same dict: a held lock would hang both for ever
    for _ = 1, 3 do
      assert.equal("440\n", (h.talk(port, "get\n", { want = "\n", timeout = 5 })))
    end
    os.execute("kill -TERM " .. np.pid)
    assert.equal(0, h.exit_status(np, 10))
  end)

  it("names the method in its argument errors (a key longer than 255 bytes, ...) and stays usable", function()
    local np = h.netproxy_start(CONFIG)
    local out = h.talk(np.ports.dict, "errors\n", { timeout = 5 })
    local want = {
      "get: key longer than 255 bytes", "set: key longer than 255 bytes",
      "incr: key longer than 255 bytes", "delete: key longer than 255 bytes",
      "get: empty key", "get: key must be a string, not table",
      "set: value must be a string, number, boolean or nil, not table",
      "set: ttl must be >= 0 (0: never expires)", "set: ttl must be a number, not string",
      "incr: by must be a number, not string", "incr: init must be a number, not boolean",
      "get: call it as dict:get(...), on a dict from core.shared",
      "capacity: call it as dict:capacity(...), on a dict from core.shared",
    }
    local lines = {}
    for line in out:gmatch("[^\n]*\n") do lines[#lines + 1] = line end
    assert.equal(#want + 1, #lines, out)
    for i, msg in ipairs(want) do
      -- the caller's file:line, then the method's message
      assert.matches("^false [^\n]*config%.lua:%d+: " .. msg:gsub("%p", "%%%0") .. "\n$", lines[i])
    end
    assert.equal("true 2\n", lines[#want + 1])
  end)
end)
