-- The docs say what the code does: the C surface docs/connectors.md lists is the binary's
-- (each call once), README's layout names every connector, the guide's example table every
-- example, negotiation_timeout = 0 means no limit, core.stats() sums the workers, and a
-- flood of refusals is summarised as the guide says.
local h = require "spec.helpers"

local function doc(name)
  return assert(h.read(h.root .. "/" .. name), name)
end

describe("the docs", function()
  teardown(h.stop_all)

  it("docs/connectors.md lists every function of netproxy.core and every socket method", function()
    -- the config runs in the binary's Lua state, where netproxy.core is the real one
    local path = h.write(h.tmpfile("surface.lua"), [[
local core = require "netproxy.core"
local names = {}
for k in pairs(core) do names[#names + 1] = "core." .. k end
for k in pairs(debug.getregistry()["netproxy.sock"].__index) do names[#names + 1] = "sock:" .. k end
io.stderr:write("SURFACE ", table.concat(names, " "), "\n")
proxy { from = { type = "tcp", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = 1 } }
]])
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are.equal(0, rc, err)
    local surface = assert(err:match("SURFACE ([^\n]+)"), err)
    local text, n = doc("docs/connectors.md"), 0
    for name in surface:gmatch("%S+") do
      n = n + 1
      assert.truthy(text:find("`" .. name, 1, true), name .. " is not in docs/connectors.md")
    end
    assert.is_true(n >= 25, n .. " names")
  end)

  it("README's layout names every built-in connector", function()
    -- the connectors/ line and the indented lines that continue it
    local layout = doc("README.md"):match("\nconnectors/[^\n]+") .. (doc("README.md"):match("\nconnectors/[^\n]+(\n +[^\n]+)") or "")
    for file in io.popen("ls " .. h.root .. "/connectors/*.lua"):lines() do
      local name = file:match("([%w_]+)%.lua$")
      assert.truthy(layout:find("[ (,]" .. name .. "[,)]"), name .. " is not in README's layout: " .. layout)
    end
  end)

  it("docs/connectors.md lists each core function and socket method once", function()
    local seen, n = {}, 0
    for name in doc("docs/connectors.md"):gmatch("\n| `((%a+[.:][%w_]+))") do
      n = n + 1
      assert.is_nil(seen[name], name .. " is listed twice in docs/connectors.md")
      seen[name] = true
    end
    assert.is_true(n >= 25, n .. " rows")
  end)

  it("the guide's example table names every file in examples/", function()
    local guide = doc("docs/guide.md")
    local section = assert(guide:match("\n## Examples\n(.-)\n## ") or guide:match("\n## Examples\n(.*)$"), "no Examples section")
    local n = 0
    for file in io.popen("ls " .. h.root .. "/examples"):lines() do
      n = n + 1
      assert.truthy(section:find("| `examples/" .. file .. "` |", 1, true), file .. " is not in docs/guide.md's Examples table")
    end
    assert.is_true(n >= 19, n .. " examples")
  end)

  it("core.stats() sums every worker's counters, as docs/connectors.md says", function()
    assert.truthy(doc("docs/connectors.md"):find("| `core.stats()` | the counters /metrics serves, summed over every worker", 1, true))
    local echo = h.peer_server("echo")
    local np = h.netproxy_start(([[
server { workers = 2 }
proxy { name = "up", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "stats", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client)
    client:write(require("netproxy.core").stats().proxies.up.opened .. "\n")
  end } }
]]):format(echo.port), { "-w", "2", "-v" })
    h.wait_workers(np.pid, 2)
    -- clients in parallel until both workers have served some (a bounded number of rounds)
    local sent, workers = 0, {}
    for _ = 1, 10 do
      local r = h.client("127.0.0.1", np.ports.up, { "--conns", "100", "--parallel", "8", "--bytes", "16" })
      assert.are.equal(0, r.rc, r.err)
      sent = sent + 100
      workers = {}
      for pid in np.log():gmatch("%[(%d+)%] #%d+ up: accepted") do workers[pid] = true end
      if next(workers) and next(workers, next(workers)) then break end
    end
    assert.truthy(next(workers) and next(workers, next(workers)), "both workers served clients")
    -- whichever worker answers, it counts the other's clients too
    for _ = 1, 4 do
      assert.are.equal(sent .. "\n", (h.talk(np.ports.stats, "", { want = "\n" })))
    end
  end)

  it("a flood of refusals: one line a second per proxy, the next one counting those left out", function()
    -- the guide says so where it says every connection ends with one line
    assert.truthy(doc("docs/guide.md"):find("never becomes a connection: it\ngets a `NAME: refused ADDR: RULE` line instead, at most one a second per proxy", 1, true))
    local np = h.netproxy_start([[
proxy { name = "shut", deny = { "127.0.0.0/8" }, from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]])
    local t0 = h.now()
    h.talk(np.ports.shut, "")
    local first_done = h.now()
    -- more within the second after the first line (logged at t0 or later): counted, not logged
    local left_out = 0
    while h.now() < t0 + 0.8 and left_out < 5 do
      h.talk(np.ports.shut, "")
      left_out = left_out + 1
    end
    assert.is_true(left_out >= 1, "no refusal within the second")
    -- the one-second window is the behaviour under test: wait it out, then one more
    h.wait_until(function() return h.now() > first_done + 1.05 end, 3, "the second to pass")
    h.talk(np.ports.shut, "")
    local n = h.wait_log(np, "shut: refused [^\n]*%(and (%d+) more since the last such line%)")
    assert.are.equal(left_out, tonumber(n), np.log())
    local _, lines = np.log():gsub("shut: refused", "")
    assert.are.equal(2, lines, np.log())
    assert.truthy(np.log():find("shut: refused 127%.0%.0%.1:%d+: deny 127%.0%.0%.0/8\n"), np.log())
  end)

  it("negotiation_timeout = 0 never closes a negotiating client; a small one does", function()
    local echo = h.peer_server("echo")
    local function dual(name, negotiation)
      return ([[
proxy { name = %q, negotiation_timeout = %s,
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 60,
                 client_first = { type = "tcp", host = "127.0.0.1", port = %d } } }
]]):format(name, negotiation, echo.port)
    end
    local np = h.netproxy_start(dual("bounded", "0.3") .. dual("unbounded", "0"))
    local t0 = h.now()
    local bounded, unbounded = assert(h.connect(np.ports.bounded)), assert(h.connect(np.ports.unbounded))
    h.wait_log(np, "bounded: [^\n]*end=negotiation timeout")
    -- the behaviour under test: both clients keep quiet for 1.5 s, then talk
    h.sleep(math.max(0, 1.5 - (h.now() - t0)))
    bounded:send("ping\n")
    unbounded:send("ping\n")
    local got, how = bounded:read(nil, 5)
    assert.are.equal("", got)                               -- 0.3: closed before it spoke
    assert.are_not.equal("timeout", how)
    assert.are.equal("ping\n", (unbounded:read("\n", 5)))   -- 0: served after 1.5 s of silence
    bounded:close()
    unbounded:close()
    assert.truthy(np.log():find("bounded: [^\n]*end=negotiation timeout"), np.log())
    assert.falsy(np.log():find("unbounded: [^\n]*end=negotiation timeout"), np.log())
    h.stop(np)
    h.stop(echo)
  end)
end)
