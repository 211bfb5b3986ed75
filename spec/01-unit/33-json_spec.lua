-- The access log's JSON strings (src/json.c), through spec/c/json_test.c: every string of
-- bytes, printable or not, valid UTF-8 or not, comes out as a JSON string that Debian's
-- lua-cjson decodes; valid UTF-8 comes back as it went in, each stray byte as U+00XX; the
-- template escaping never leaves a control character or a tab in the line.
local h = require "spec.helpers"
local cjson = require "cjson"

local binary = h.build .. "/json-test"

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

-- The UTF-8 of code point c (up to U+10FFFF).
local function utf8(c)
  if c < 0x80 then return string.char(c) end
  if c < 0x800 then return string.char(0xC0 + math.floor(c / 64), 0x80 + c % 64) end
  if c < 0x10000 then
    return string.char(0xE0 + math.floor(c / 4096), 0x80 + math.floor(c / 64) % 64, 0x80 + c % 64)
  end
  return string.char(0xF0 + math.floor(c / 262144), 0x80 + math.floor(c / 4096) % 64,
                     0x80 + math.floor(c / 64) % 64, 0x80 + c % 64)
end

-- Runs json-test over the inputs; returns its lines, each { json, escaped }.
local function encode(inputs)
  local path = h.tmpfile("json-in")
  local lines = {}
  for i, s in ipairs(inputs) do lines[i] = hex(s) end
  h.write(path, table.concat(lines, "\n") .. "\n")
  local out, err, rc = h.run({ "sh", "-c", h.quote(binary) .. " < " .. h.quote(path) })
  assert.are.equal(0, rc, err)
  local got = {}
  for line in out:gmatch("([^\n]*)\n") do
    local json, escaped = line:match("^(.-)\t(.*)$")
    got[#got + 1] = { json = json, escaped = escaped }
  end
  return got
end

describe("json.c", function()
  it("keeps valid UTF-8 and escapes what JSON needs", function()
    local inputs = { "", "plain", 'q"uote', "back\\slash", "\n\r\t\1\31\127", "é€😀" .. utf8(0x10FFFF),
                     utf8(0xD7FF) .. utf8(0xE000) }
    local got = encode(inputs)
    assert.are.equal(#inputs, #got)
    for i, s in ipairs(inputs) do
      assert.are.equal(s, cjson.decode(got[i].json), got[i].json)
    end
    assert.are.equal('"q\\"uote"', got[3].json)
    assert.are.equal('"\\n\\r\\t\\u0001\\u001f\\u007f"', got[5].json)
  end)

  it("writes each byte of invalid UTF-8 as U+00XX: overlongs, surrogates, past U+10FFFF, cut sequences", function()
    local cases = {
      { "\192\128", utf8(0xC0) .. utf8(0x80) },                     -- overlong NUL
      { "\224\128\175", utf8(0xE0) .. utf8(0x80) .. utf8(0xAF) },   -- overlong '/'
      { "\237\160\128", utf8(0xED) .. utf8(0xA0) .. utf8(0x80) },   -- a surrogate
      { "\244\144\128\128", utf8(0xF4) .. utf8(0x90) .. utf8(0x80) .. utf8(0x80) },  -- past U+10FFFF
      { "a\226\130", "a" .. utf8(0xE2) .. utf8(0x82) },             -- cut short
      { "\255\254", utf8(0xFF) .. utf8(0xFE) },
      { "\195\169\255", "é" .. utf8(0xFF) },
    }
    local inputs = {}
    for i, c in ipairs(cases) do inputs[i] = c[1] end
    local got = encode(inputs)
    for i, c in ipairs(cases) do
      assert.are.equal(c[2], cjson.decode(got[i].json), got[i].json)
    end
  end)

  it("gives valid JSON and a one-line template value for 3000 random strings", function()
    math.randomseed(30)
    local inputs = {}
    for i = 1, 3000 do
      local t = {}
      for j = 1, math.random(0, 40) do
        local r = math.random()
        -- bytes of every kind, and whole UTF-8 sequences now and then
        t[j] = r < 0.7 and string.char(math.random(0, 255)) or utf8(math.random(0x80, 0x10FFFF))
      end
      inputs[i] = table.concat(t)
    end
    local got = encode(inputs)
    assert.are.equal(#inputs, #got)
    for i, g in ipairs(got) do
      local ok, v = pcall(cjson.decode, g.json)
      assert(ok, "not JSON: " .. g.json .. " from " .. hex(inputs[i]))
      assert.are.equal("string", type(v))
      assert.falsy(g.escaped:find("[%z\1-\31\127]"), g.escaped)
    end
  end)
end)
