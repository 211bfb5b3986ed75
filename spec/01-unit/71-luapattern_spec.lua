-- netproxy.luapattern (issue 25, item 4): the one place a config's text becomes a Lua pattern
-- is a pool check's `expect`. --check tried it on "", which misses the errors the matcher
-- raises only when a subject leads it there ("pattern too complex" among them); such a raise
-- later ended that server's check loop. luapattern.check refuses them all at --check time.
require "spec.helpers"
package.preload["netproxy.core"] = package.preload["netproxy.core"] or function() return { now = os.clock } end
local luapattern = require "netproxy.luapattern"
local pool = require "netproxy.pool"

-- Does string.find raise on subject with pattern p?
local function raises(subject, p)
  return not pcall(string.find, subject, p)
end

describe("luapattern.check", function()
  it("takes well-formed patterns", function()
    for _, p in ipairs({ "", "^HTTP/1%.[01] 200", "^\18\52\133\128", "^%a\n", "[]]", "[^]]", "[%]]",
                         "%b()", "%f[%w]%w+", "(a)%1", "()", "(a(b)c)%2%1", "x$", "$x", "a-b+c*d?",
                         "^-", "%%", "[a-z]+", ("a?"):rep(199), ("()"):rep(32), "a\0%" }) do
      assert.are.equal(p, luapattern.check(p), ("%q"):format(p))
      assert.is_false(raises("ab(c)" .. ("a"):rep(200), p), p)
    end
  end)

  it("refuses what would raise later, each with its reason", function()
    local cases = {
      { "a%", "ends with '%'" }, { "a[b", "missing ']'" }, { "a[]", "missing ']'" }, { "a[%", "missing ']'" },
      { "a%b(", "missing arguments to '%b'" }, { "a%fx", "missing '[' after '%f'" },
      { "a%1", "invalid capture index %1" }, { "a(b%1)", "invalid capture index %1" }, { "a%0", "invalid capture index %0" },
      { "a)", "invalid pattern capture" }, { "a(b", "unfinished capture" },
      { ("()"):rep(33), "too many captures" }, { ("a?"):rep(200), "pattern too complex" },
      { ("[^.]*"):rep(200), "pattern too complex" }, { ("(a)"):rep(30) .. ("b*"):rep(140), "pattern too complex" },
    }
    for _, c in ipairs(cases) do
      local ok, why = luapattern.check(c[1])
      assert.is_nil(ok, c[1])
      assert.truthy(why:find(c[2], 1, true), why)
    end
    assert.truthy(select(2, luapattern.check(42)):find("want a Lua pattern", 1, true))
  end)

  it("refuses what trying the pattern on \"\" let through, and that a subject makes raise", function()
    for _, c in ipairs({ { "a%", "a" }, { ("a?"):rep(200), ("a"):rep(200) }, { "a" .. ("()"):rep(33), "a" },
                         { "a%1", "a" }, { "a(b", "ab" } }) do
      assert.is_false(raises("", c[1]), c[1])        -- what the check did before
      assert.is_true(raises(c[2], c[1]), c[1])
      assert.is_nil(luapattern.check(c[1]), c[1])
    end
    assert.is_false(raises(("a"):rep(199), ("a?"):rep(199)))   -- the boundary: 199 is fine
  end)

  it("takes only patterns that never raise, on random patterns and subjects", function()
    math.randomseed(25)
    local P = { "a", "b", "%", "[", "]", "^", "(", ")", "*", "+", "-", "?", "$", ".", "1", "2", "f",
                "%a", "%b()", "%1", "()", "[^a]", "%f[a]" }
    local S = { "a", "b", "(", ")", "]", "%", "-", "1" }
    local function pick(set, n)
      local t = {}
      for i = 1, n do t[i] = set[math.random(#set)] end
      return table.concat(t)
    end
    local taken = 0
    for _ = 1, 30000 do
      local p = pick(P, math.random(0, 10))
      if luapattern.check(p) then
        taken = taken + 1
        for _ = 1, 4 do
          local s = pick(S, math.random(0, 10))
          assert.is_false(raises(s, p), ("%q raised on %q"):format(p, s))
        end
      end
    end
    assert.is_true(taken > 5000, taken)              -- not a check that refuses everything
  end)

  it("is what a pool check's expect goes through at --check", function()
    local function problems(conf) return table.concat(select(2, pool.check(conf)) or {}, "\n") end
    assert.truthy(problems({ servers = { "h:1" }, check = { expect = ("a?"):rep(200) } })
                    :find("check: expect: bad pattern: pattern too complex", 1, true))
    assert.truthy(problems({ servers = { "h:1" }, check = { expect = "^OK%" } })
                    :find("check: expect: bad pattern: malformed pattern (ends with '%')", 1, true))
    assert.truthy(pool.check({ servers = { "h:1" }, check = { expect = "^HTTP/1%.[01] 200" } }))
  end)
end)
