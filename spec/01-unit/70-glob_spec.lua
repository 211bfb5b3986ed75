-- netproxy.addr's host patterns (issue 25, item 4): several `*` in one label are matched in
-- linear time (they were a Lua pattern whose backtracking grew with the cube of a name the
-- client chooses), with the meaning they had: a table of cases, the growth of the time with
-- the name's length, and random short patterns and names against a brute-force reference.
require "spec.helpers"
local addr = require "netproxy.addr"
local reference = require "spec.fuzz.glob_reference"

local m = addr.host_matches

-- CPU seconds of one call (the least of a few runs: the machine is shared).
local function cost(pattern, name)
  local best = math.huge
  for _ = 1, 5 do
    local t0 = os.clock()
    m(pattern, name)
    best = math.min(best, os.clock() - t0)
  end
  return best
end

describe("host patterns", function()
  it("keep their meaning: a table of matches and misses", function()
    local cases = {
      -- pattern, name, matches
      { "*-*-*.example.org", "a-b-c.example.org", true },
      { "*-*-*.example.org", "--.example.org", true },         -- each * may be empty inside a label
      { "*-*-*.example.org", "-.example.org", false },
      { "*-*-*.example.org", "a-b.c-d.example.org", false },   -- never across a dot
      { "*-*-*.example.org", "a-b-c.example.org.evil", false },
      { "*-*-*.example.org", ("-"):rep(400), false },
      { "web-*-*.corp", "web-1-2.corp", true },
      { "web-*-*.corp", "web--.corp", true },
      { "web-*-*.corp", "web-1.corp", false },
      { "a*b*c", "abc", true },
      { "a*b*c", "axxbyyc", true },
      { "a*b*c", "acb", false },
      { "a*b*c", "abcb", false },                             -- the last piece ends the label
      { "a*bc*bc", "abcbc", true },
      { "a*bc*bc", "abcbcbc", true },
      { "a*bc*bc", "abc", false },                            -- pieces may not overlap
      { "ab*ba", "aba", false },
      { "ab*ba", "abba", true },
      { "**", "", true },                                     -- two stars are not `*` alone
      { "**.x", ".x", true },
      { "*", "", true },                                      -- `*` alone: every host
      { "*.x", ".x", false },                                 -- a label of `*` alone: one character at least
      { "*.*", "a.b", true },
      { "*.*", "a.b.c", false },
      { "*.example.com", "www.example.com", true },
      { "*.example.com", "example.com", false },
      { "*.Example.COM", "WWW.example.com", true },           -- lower case
      { "*X*", "axb", true },
      { "h.t", "hxt", false },                                -- a dot is a dot
      { "a%", "a%", true },                                   -- no character is special but * and .
      { "a%", "a", false },
      { "a(b", "a(b", true },
      { "[::1]", "::1", true },                               -- brackets dropped
      { "2001:db8::*", "[2001:DB8::42]", true },
      { "2001:db8::*", "2001:db8::4.2", false },
      { "10.0.0.*", "10.0.0.7", true },
      { "10.0.*", "10.0.0.7", false },
      { "http/1.*", "http/1.1", true },                       -- ALPN names use the same rule
      { "h2", "h2c", false },
      { "", "", true },
      { "a", "", false },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[3], m(c[1], c[2]), ("%q against %q"):format(c[1], c[2]:sub(1, 40)))
      assert.are.equal(c[3], reference(c[1], c[2]), "the reference disagrees on " .. c[1])
    end
    assert.is_false(m("*-*", nil))
    assert.is_false(m("*-*", 42))
  end)

  it("take time linear in the name's length, whatever the stars (2,000 vs 8,000 characters)", function()
    local patterns = {
      { "*-*-*.example.org", "-" }, { "*-*-*-*-*-*-*-*.example.org", "-" },
      { "*a*a*a*a*a*a*a*a*b", "a" }, { "a*aa*aaa*aaaa*b.x", "a" }, { "*.*-*-*", "-" },
    }
    for _, p in ipairs(patterns) do
      local pattern, c = p[1], p[2]
      local took = {}
      for _, n in ipairs({ 250, 500, 1000, 2000, 4000, 8000 }) do
        local worst = 0
        -- the run alone, with a miss at its end, with the pattern's other labels
        for _, name in ipairs({ c:rep(n), c:rep(n) .. "z", c:rep(n) .. ".example.org", "a." .. c:rep(n) }) do
          local t = cost(pattern, name)
          assert.is_true(t < 0.05, ("%s against %d characters: %.3f s"):format(pattern, #name, t))
          worst = math.max(worst, t)
        end
        took[n] = worst
      end
      -- 4 times the length: about 4 times the time when linear, 16 quadratic, 64 cubic; the
      -- floor keeps timer noise on calls of a few microseconds from counting
      local ratio = math.max(took[8000], 1e-4) / math.max(took[2000], 1e-4)
      assert.is_true(ratio < 12, ("%s: 8,000 characters took %.1f times as long as 2,000"):format(pattern, ratio))
    end
  end)

  it("give the reference's answer on random short patterns and names", function()
    math.randomseed(25)
    local P = { "*", "*", "*", "-", ".", "a", "b", "A", "[", "]", "%", ":" }
    local N = { "-", ".", "a", "b", "B", "[", "]", "%", ":" }
    local function pick(set, n)
      local t = {}
      for i = 1, n do t[i] = set[math.random(#set)] end
      return table.concat(t)
    end
    for _ = 1, 50000 do
      local pattern, name = pick(P, math.random(0, 8)), pick(N, math.random(0, 10))
      assert.are.equal(reference(pattern, name), m(pattern, name), ("%q against %q"):format(pattern, name))
    end
  end)

  it("are checked as strings (dual's sni and alpn)", function()
    assert.are.equal("*-*.example.org", addr.check_host_pattern("*-*.example.org"))
    for _, v in ipairs({ "", 42, true, {} }) do
      local ok, err = addr.check_host_pattern(v)
      assert.is_nil(ok)
      assert.truthy(err:find("want a host pattern", 1, true), err)
    end
  end)
end)
