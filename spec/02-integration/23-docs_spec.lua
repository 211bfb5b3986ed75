-- The docs say what the code does: the C surface docs/connectors.md lists is the binary's,
-- README's layout names every connector, negotiation_timeout = 0 means no limit.
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
