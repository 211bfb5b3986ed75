-- The fuzz harness (spec/fuzz/fuzz.lua) over every pure parser, with a small budget:
-- FUZZ_SECONDS (default 10) in all. A longer run: FUZZ_SECONDS=600 busted --lua=luajit
-- spec/01-unit/32-fuzz_spec.lua (docs/fuzzing.md). The figures are printed.
require "spec.helpers"
local fuzz = require "spec.fuzz.fuzz"

describe("the fuzz harness", function()
  it("catches a target that errors, one that is slow, and one that leaks", function()
    local _, failure = fuzz.run_target({ name = "errs", seeds = { "x" }, run = function(s)
      if #s > 3 then error("too big") end
    end }, 0.2)
    assert.truthy(failure and failure:find("errs: error: [^\n]*too big on a %d+%-byte input"), failure)
    _, failure = fuzz.run_target({ name = "slow", seeds = { "x" }, run = function(s)
      local t0 = os.clock()
      while os.clock() - t0 < 0.2 do end
    end }, 0.2)
    assert.truthy(failure and failure:find("slow: took 0%.2%d+ s"), failure)
    local kept = {}
    _, failure = fuzz.run_target({ name = "leaks", seeds = { "x" }, run = function(s)
      if #kept < 1000 then kept[#kept + 1] = ("x"):rep(4096) .. #kept end
    end }, 0.2)
    kept = nil                                  -- garbage now, not during the real run
    assert.truthy(failure and failure:find("leaks: the heap grew by"), failure)
  end)

  it("feeds every parser random and mutated inputs: no error, bounded time and memory", function()
    local report = fuzz.run()
    print("\n" .. fuzz.format(report))
    assert.are.same({}, report.failures)
    if not os.getenv("FUZZ_ONLY") then assert.is_true(#report.targets >= 19, #report.targets) end
    for _, t in ipairs(report.targets) do
      assert.is_true(t.inputs >= 20, t.name .. ": only " .. t.inputs .. " inputs")
    end
  end)
end)
