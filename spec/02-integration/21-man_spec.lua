-- The man pages: built from man/*.scd, free of roff warnings, and complete: every option
-- of --help, every server{} and proxy{} option, every connector and its parameters.
local h = require "spec.helpers"
package.preload["netproxy.core"] = package.preload["netproxy.core"] or function() return {} end
local config = require "netproxy.config"
local connectors = require "netproxy.connectors"

local function page(name)
  return h.build .. "/man/" .. name
end

-- The page as man shows it, and what man said on stderr with --warnings.
local function render(name)
  local out, err, rc = h.run({ "sh", "-c", "MANWIDTH=80 man --warnings -l " .. h.quote(page(name)) .. " | col -b" })
  return out, err, rc
end

-- Words as the rendered page shows them (man hyphenates long words at line ends).
local function flat(text)
  return (text:gsub("‐\n%s*", ""):gsub("%-\n%s*", "-"):gsub("%s+", " "))
end

describe("man pages", function()
  teardown(h.stop_all)

  for _, name in ipairs({ "netproxy.1", "netproxy.lua.5" }) do
    it(name .. " renders without a warning", function()
      local out, err, rc = render(name)
      assert.are.equal(0, rc, err)
      assert.are.equal("", err)
      assert.truthy(#out > 2000, "a page of " .. #out .. " bytes")
    end)
  end

  it("netproxy(1) has every option of --help, and the sections a man page needs", function()
    local help = h.run({ h.netproxy, "--help" })
    local text = flat((render("netproxy.1")))
    local n = 0
    for opt in help:gmatch("%-%-[%a][%w%-]+") do
      n = n + 1
      assert.truthy(text:find(opt, 1, true), opt .. " is not in netproxy(1)")
    end
    assert.is_true(n >= 20, n .. " options in --help")
    for _, section in ipairs({ "SYNOPSIS", "OPTIONS", "SIGNALS", "EXIT STATUS", "FILES", "ENVIRONMENT", "EXAMPLES" }) do
      assert.truthy(text:find(section, 1, true), section)
    end
    for _, word in ipairs({ "SIGHUP", "SIGTERM", "SIGUSR1", "NETPROXY_PROXY_PASS", "NOTIFY_SOCKET", "LISTEN_FDS" }) do
      assert.truthy(text:find(word, 1, true), word)
    end
  end)

  it("netproxy(1)'s description names every built-in connector type", function()
    local text = flat((render("netproxy.1")))
    local description = assert(text:match("DESCRIPTION(.-)OPTIONS"), "no DESCRIPTION")
    local n = 0
    for file in io.popen("ls " .. h.root .. "/connectors/*.lua"):lines() do
      local name = file:match("([%w_]+)%.lua$")
      n = n + 1
      assert.truthy(description:find("%f[%w_]" .. name .. "%f[^%w_]"), name .. " is not in netproxy(1)'s DESCRIPTION:\n" .. description)
    end
    assert.is_true(n >= 12, n .. " connectors")
  end)

  it("netproxy.lua(5) has every server{} and proxy{} option", function()
    local text = flat((render("netproxy.lua.5")))
    for _, options in ipairs({ config.SERVER_OPTIONS, config.PROXY_OPTIONS }) do
      for name in pairs(options) do
        assert.truthy(text:find(name, 1, true), name .. " is not in netproxy.lua(5)")
      end
    end
  end)

  it("netproxy.lua(5) has every built-in connector and each of its parameters", function()
    local text = flat((render("netproxy.lua.5")))
    connectors.set_path({ h.root .. "/connectors" })
    local n = 0
    for file in io.popen("ls " .. h.root .. "/connectors/*.lua"):lines() do
      local name = file:match("([%w_]+)%.lua$")
      local mod = assert(connectors.get(name))
      n = n + 1
      assert.truthy(text:find("\n?%s" .. name .. " %(") or text:find(" " .. name .. " %((%a+)"), name .. " has no section")
      for param in pairs(mod.params or {}) do
        assert.truthy(text:find(param, 1, true), name .. "." .. param .. " is not in netproxy.lua(5)")
      end
    end
    assert.is_true(n >= 7, n .. " connectors")
    for _, common in ipairs({ "hook", "hook_mode", "proxy_protocol" }) do
      assert.truthy(text:find(common, 1, true), common)
    end
  end)
end)
