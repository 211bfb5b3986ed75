-- spec/fuzz/fuzz.lua: feeds random and mutated inputs to netproxy's pure parsers and checks,
-- for every input, that the target raises no Lua error (its own contract checks included),
-- that it returns within a CPU-time bound, and, per target, that memory does not grow.
-- Targets are listed in spec/fuzz/targets.lua; seeds come from spec/fixtures/corpus/ (bytes
-- real clients sent) and from the targets themselves.
--
--   local fuzz = require "spec.fuzz.fuzz"
--   local report = fuzz.run({ seconds = 10, seed = 1 })   -- report.targets[i]: see below
--
-- Environment: FUZZ_SECONDS (the budget in all, default 10), FUZZ_SEED (default: the clock),
-- FUZZ_ONLY (a Lua pattern: only targets whose name matches).
local random, char, byte, sub, rep, concat = math.random, string.char, string.byte, string.sub, string.rep, table.concat
local floor, max, min, os_clock = math.floor, math.max, math.min, os.clock

local _M = {}

_M.MAX_SECONDS_PER_INPUT = 0.1     -- CPU seconds one input may take
_M.MAX_GROWTH_KB = 2048            -- heap growth a target may leave behind after its run
_M.MAX_INPUT = 70000               -- bytes: past the 64 KiB every reader stops at

-- ---------------------------------------------------------------- inputs

local INTERESTING = { 0, 1, 0x7f, 0x80, 0xff, 13, 10, 32, 58, 47, 46, 0x16, 0x03, 0x05, 0x21, 0x11 }
local TOKENS = { "\r\n", "\n", "\r", "\r\n\r\n", ":", "::", " ", "\t", "/", ".", "[", "]", "%", "*",
                 "CONNECT ", "HTTP/1.1", "HTTP/1.0 200 ", "PROXY ", "TCP4 ", "TCP6 ", "UNKNOWN",
                 "\r\n\r\n\0\r\nQUIT\n", "\5\1\0", "\5\2\0\2", "\22\3\1", "SSH-2.0-", "0", "65535",
                 "255.255.255.255", "::ffff:", "Basic ", "Proxy-Authorization: " }

local function random_bytes(n, alphabet)
  local t = {}
  if alphabet then
    for i = 1, n do
      local k = random(#alphabet)
      t[i] = sub(alphabet, k, k)
    end
  else
    for i = 1, n do t[i] = char(random(0, 255)) end
  end
  return concat(t)
end

local ALPHABETS = {
  false,                                                      -- any byte
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/ \r\n",
  "0123456789abcdefABCDEF:.[]/",                              -- addresses
  "\r\n :a",                                                  -- line structure
}

-- A length: mostly short, sometimes long enough to show anything worse than linear.
local function random_length()
  local r = random()
  if r < 0.6 then return random(0, 64) end
  if r < 0.9 then return random(0, 1024) end
  if r < 0.98 then return random(0, 16384) end
  return random(16384, _M.MAX_INPUT)
end

local function random_input()
  return random_bytes(random_length(), ALPHABETS[random(#ALPHABETS)] or nil)
end

local MUTATORS = {
  function(s) -- flip a bit
    if #s == 0 then return s end
    local i = random(#s)
    return sub(s, 1, i - 1) .. char(bit.bxor(byte(s, i), bit.lshift(1, random(0, 7)))) .. sub(s, i + 1)
  end,
  function(s) -- set a byte to an interesting value
    if #s == 0 then return s end
    local i = random(#s)
    return sub(s, 1, i - 1) .. char(INTERESTING[random(#INTERESTING)]) .. sub(s, i + 1)
  end,
  function(s) -- insert a token
    local i = random(0, #s)
    return sub(s, 1, i) .. TOKENS[random(#TOKENS)] .. sub(s, i + 1)
  end,
  function(s) -- insert random bytes
    local i = random(0, #s)
    return sub(s, 1, i) .. random_bytes(random(1, 16)) .. sub(s, i + 1)
  end,
  function(s) -- delete a range
    if #s == 0 then return s end
    local i = random(#s)
    return sub(s, 1, i - 1) .. sub(s, i + random(1, 32))
  end,
  function(s) -- truncate
    return sub(s, 1, random(0, #s))
  end,
  function(s) -- repeat a range, to grow one field (a long header line, a long name)
    if #s == 0 then return s end
    local i = random(#s)
    local j = min(#s, i + random(0, 8))
    local times = random() < 0.1 and random(100, 8000) or random(2, 20)
    return sub(s, 1, i - 1) .. rep(sub(s, i, j), times) .. sub(s, j + 1)
  end,
  function(s) -- a long run of one byte
    local i = random(0, #s)
    return sub(s, 1, i) .. rep(char(INTERESTING[random(#INTERESTING)]), random(1, 20000)) .. sub(s, i + 1)
  end,
  function(s) -- overwrite a big-endian 16-bit length somewhere with an extreme value
    if #s < 2 then return s end
    local i = random(#s - 1)
    local v = ({ 0, 1, 0xffff, 0xfffe, 0x8000, 0x4000, #s, #s - i })[random(8)] % 65536
    return sub(s, 1, i - 1) .. char(floor(v / 256), v % 256) .. sub(s, i + 2)
  end,
}

local function mutate(s, seeds)
  for _ = 1, random(1, 4) do
    if random() < 0.08 and #seeds > 1 then              -- splice with another seed
      local other = seeds[random(#seeds)]
      s = sub(s, 1, random(0, #s)) .. sub(other, random(1, max(1, #other)))
    else
      s = MUTATORS[random(#MUTATORS)](s)
    end
  end
  if #s > _M.MAX_INPUT then s = sub(s, 1, _M.MAX_INPUT) end
  return s
end

-- ---------------------------------------------------------------- seeds

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/fuzz/fuzz%.lua$") or "."
_M.corpus_dir = ROOT .. "/spec/fixtures/corpus"

-- The corpus files whose names match a Lua pattern.
function _M.corpus(pattern)
  local out = {}
  local ls = io.popen("ls '" .. _M.corpus_dir .. "' 2>/dev/null")
  for name in ls:lines() do
    if name:match(pattern) then
      local f = io.open(_M.corpus_dir .. "/" .. name, "rb")
      if f then
        out[#out + 1] = f:read("*a")
        f:close()
      end
    end
  end
  ls:close()
  return out
end

-- ---------------------------------------------------------------- the run

local function hex(s, n)
  return (sub(s, 1, n or 48):gsub(".", function(c) return ("%02x"):format(byte(c)) end))
end

-- Where a failing input is kept, so that it can be replayed: fuzz.replay(target, path).
local function save_failure(name, input)
  local path = os.tmpname()
  local f = io.open(path, "wb")
  if f then
    f:write(input)
    f:close()
  end
  return path
end

-- One target ({ name, run = fn(input), seeds = { ... }, gen = fn() optional }) for `seconds`:
-- returns its figures, and the first failure (or nil).
function _M.run_target(t, seconds)
  local seeds = {}
  for _, s in ipairs(t.seeds or {}) do seeds[#seeds + 1] = s end
  if #seeds == 0 then seeds[1] = "" end
  collectgarbage("collect")
  collectgarbage("collect")
  local kb_before = collectgarbage("count")
  local stats = { name = t.name, inputs = 0, slowest = 0, slowest_size = 0, bytes = 0 }
  local stop = os_clock() + seconds
  local i = 0
  while os_clock() < stop do
    i = i + 1
    local input
    if i <= #seeds then input = seeds[i]                       -- every seed once, as it is
    elseif random() < 0.7 then input = mutate(seeds[random(#seeds)], seeds)
    else input = (t.gen or random_input)() end
    local t0 = os_clock()
    local ok, err = pcall(t.run, input)
    local took = os_clock() - t0
    if ok and took > _M.MAX_SECONDS_PER_INPUT then
      -- once more after a full collection: a collector pause is not the parser's doing,
      -- anything worse than linear is slow again
      collectgarbage("collect")
      t0 = os_clock()
      ok, err = pcall(t.run, input)
      took = os_clock() - t0
    end
    stats.inputs = stats.inputs + 1
    stats.bytes = stats.bytes + #input
    if took > stats.slowest then stats.slowest, stats.slowest_size = took, #input end
    if not ok or took > _M.MAX_SECONDS_PER_INPUT then
      local path = save_failure(t.name, input)
      return stats, ("%s: %s on a %d-byte input (saved in %s; starts %s)"):format(t.name,
        ok and ("took %.3f s (bound %.3f s)"):format(took, _M.MAX_SECONDS_PER_INPUT) or ("error: " .. tostring(err)),
        #input, path, hex(input))
    end
  end
  collectgarbage("collect")
  collectgarbage("collect")
  stats.growth_kb = collectgarbage("count") - kb_before
  if stats.growth_kb > _M.MAX_GROWTH_KB then
    return stats, ("%s: the heap grew by %.0f KiB over %d inputs"):format(t.name, stats.growth_kb, stats.inputs)
  end
  return stats
end

-- Runs every target (or those matching opts.only) for opts.seconds in all. Returns
-- { seed =, seconds =, targets = { { name, inputs, bytes, slowest, slowest_size, growth_kb } },
--   skipped = { "name: why" }, failures = { "..." } }.
function _M.run(opts)
  opts = opts or {}
  local seconds = opts.seconds or tonumber(os.getenv("FUZZ_SECONDS")) or 10
  local seed = opts.seed or tonumber(os.getenv("FUZZ_SEED")) or os.time()
  local only = opts.only or os.getenv("FUZZ_ONLY")
  math.randomseed(seed)
  local list, skipped = require("spec.fuzz.targets").load()
  local chosen = {}
  for _, t in ipairs(list) do
    if not only or t.name:match(only) then chosen[#chosen + 1] = t end
  end
  local report = { seed = seed, seconds = seconds, targets = {}, skipped = skipped, failures = {} }
  for _, t in ipairs(chosen) do
    local stats, failure = _M.run_target(t, seconds / #chosen)
    report.targets[#report.targets + 1] = stats
    if failure then report.failures[#report.failures + 1] = failure end
  end
  return report
end

-- The report as a Markdown table (docs/fuzzing.md shows one).
function _M.format(report)
  local lines = {
    ("seed %d, %g s in all"):format(report.seed, report.seconds), "",
    "| target | inputs | MB fed | slowest input | its size | heap after |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  }
  for _, s in ipairs(report.targets) do
    lines[#lines + 1] = ("| %s | %d | %.1f | %.2f ms | %d B | %+.0f KiB |"):format(s.name, s.inputs,
      s.bytes / 1e6, s.slowest * 1000, s.slowest_size, s.growth_kb or 0)
  end
  for _, why in ipairs(report.skipped) do lines[#lines + 1] = "skipped: " .. why end
  return concat(lines, "\n")
end

-- Feeds one saved input to a target again (a failure's file).
function _M.replay(name, path)
  local f = assert(io.open(path, "rb"))
  local input = f:read("*a")
  f:close()
  for _, t in ipairs((require("spec.fuzz.targets").load())) do
    if t.name == name then return t.run(input) end
  end
  error("no target " .. name)
end

return _M
