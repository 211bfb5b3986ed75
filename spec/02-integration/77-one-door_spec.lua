-- Every call of user code runs under its proxy's (or the server's) limits, read once from the
-- config (src/call.c, the one door into user Lua): a SOCKS5 UDP route, a pool's check
-- function, server{ on_start } and server{ on_stop } are stopped at their hook_budget with
-- file:line in the log, and the rest goes on. Each of these ran under a fixed 1 s (UDP routes,
-- checks) or with no bound at all (on_start, on_stop) before.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"
local ffi = require "ffi"            -- kill(), declared by spec.helpers

local PEER = h.root .. "/spec/support/udp_peer.py"

local bystander = require "spec.support.bystander"
local PLAIN, served = bystander.PROXY, bystander.served

describe("the limits of every call of user code", function()
  local echo
  before_each(function() echo = h.peer_server("echo") end)
  after_each(h.stop_all)

  it("stops a SOCKS5 UDP route at the proxy's hook_budget", function()
    local udp_echo = h.udp_echo_server()
    local np = h.netproxy_start(([[
proxy { name = "s5", hook_budget = 0.2,
        from = { type = "socks5", host = "127.0.0.1", port = 0,
                 route = function(host, port)
                   if port == %d then while true do end end
                   return host, port
                 end } }
]] .. PLAIN):format(udp_echo.port, echo.port))
    local out = h.run({ "python3", PEER, "socks5udp", tostring(np.ports.s5), "127.0.0.1", tostring(udp_echo.port), "1" })
    h.wait_log(np, "UDP ASSOCIATE: [^\n]*%.lua:4: ran longer than its budget of 0%.2", 10)
    assert.is_nil(np.log():find("budget of 1%.0"), np.log())
    assert.truthy(out, "the client ran")
    assert.is_true(served(np.ports.plain))
  end)

  it("stops a pool's check function at the proxy's hook_budget; the check counts it failed", function()
    local b = h.peer_server("echo")
    local np = h.netproxy_start(([[
proxy { name = "pool", hook_budget = 0.2,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", max_fails = 0, servers = { "127.0.0.1:%d" },
               check = { interval = 0.2, timeout = 0.5, fall = 1, rise = 1,
                         fn = function(sock, server) while true do end end } } }
]] .. PLAIN):format(b.port, echo.port))
    h.wait_log(np, "server 127%.0%.0%.1:" .. b.port .. " down: check failed 1 times: check function: [^\n]*%.lua:5: ran longer than its budget of 0%.2", 10)
    assert.is_true(served(np.ports.plain))
  end)

  for _, workers in ipairs({ "1", "2" }) do
    it("stops a loop in on_start at the server's hook_budget and serves (" .. workers .. " workers)", function()
      local np = h.netproxy_start(([[
server { hook_budget = 0.3,
         on_start = function(w)
           while true do end
         end }
]] .. PLAIN):format(echo.port), { "-w", workers })
      h.wait_log(np, "on_start: [^\n]*%.lua:3: ran longer than its budget of 0%.3", 10)
      assert.is_true(served(np.ports.plain))
      if workers == "2" then
        h.wait_until(function() local n = 0 for _ in np.log():gmatch("on_start: [^\n]*ran longer") do n = n + 1 end return n == 2 end,
                     10, "both workers' on_start stopped")
        assert.is_nil(np.log():find("watchdog"), np.log())
      end
    end)
  end

  it("stops a loop in on_stop: SIGTERM still ends netproxy", function()
    local np = h.netproxy_start(([[
server { hook_budget = 0.3,
         on_stop = function()
           while true do end
         end }
]] .. PLAIN):format(echo.port))
    ffi.C.kill(np.pid, 15)
    assert.are.equal(0, h.exit_status(np, 8))
    assert.truthy(np.full_log():find("on_stop: [^\n]*%.lua:3: ran longer than its budget of 0%.3"), np.full_log())
  end)

  -- core.call's own budget: the calls a resume makes are theirs, not the resume's (a busy
  -- service's callbacks, issue 25 #3), yet a loop of calls each within its budget is stopped.
  it("charges core.call's time to the call, not to the resume that made it", function()
    local np = h.netproxy_start(([[
local core = require "netproxy.core"
local function spin(s) local t = os.clock() while os.clock() - t < s do end end
proxy { name = "calls", hook_budget = 0.2,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(client)
                 for i = 1, 4 do                -- 0.6 s in all, 0.15 s a call
                   assert(core.call(spin, 0.15))
                   local x = 0                  -- work of its own between calls: the budget's
                   for j = 1, 20000 do x = x + j end   -- count hook ticks in the resume too
                 end
                 client:write("done\n")
               end } }
proxy { name = "runaway", hook_budget = 0.1,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(client)
                 while true do core.call(function() end) end
               end } }
]] .. PLAIN):format(echo.port))
    local got = h.talk(np.ports.calls, "", { want = "done\n", keep_open = true, timeout = 10 })
    assert.are.equal("done\n", got)
    local victim = assert(tcp.connect(np.ports.runaway))
    h.wait_log(np, "runaway: [^\n]* end=lua error: [^\n]*%.lua:16: ran longer than its budget of 0%.1", 10)
    victim:close()
    assert.is_true(served(np.ports.plain))
  end)
end)
