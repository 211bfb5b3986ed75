-- The line cutter (netproxy.lines' buffer) and its users: the service connector's serve()
-- client (read("*l"), read(n), read("*a"), receive_some) and line mode, and hooks in line mode
-- (lines.wrap). Issue 25, item 12: cutting was quadratic (the rest of the buffer copied per line).
local h = require "spec.helpers"

-- The service connector needs of the core only the loop's time and a turn of the loop.
local core = package.loaded["netproxy.core"]
if not core then
  local make = package.preload["netproxy.core"]
  core = make and make() or {}
  package.loaded["netproxy.core"] = core
end
core.now = core.now or function() return 0 end
core.sleep = core.sleep or function() return true end
core.turn = core.turn or function() end

local lines = require "netproxy.lines"
local service = dofile(h.root .. "/connectors/service.lua")

-- A cosocket stand-in that hands over the given chunks one read at a time, then "closed".
local function fake_sock(chunks)
  local i = 0
  return {
    read = function()
      i = i + 1
      if chunks[i] then return chunks[i] end
      return nil, "closed"
    end,
    settimeout = function() end,
  }
end

-- The three cutters, each fed chunks and giving back the lines (without their end of line)
-- and what was left after the last newline.
local CUTTERS = {
  ["the buffer (line mode)"] = function(chunks)
    local buf, out = lines.buffer(), {}
    for _, chunk in ipairs(chunks) do
      buf:push(chunk)
      for line in function() return buf:line(true) end do out[#out + 1] = line end
    end
    return out, buf:take_all()
  end,
  ["serve()'s client:read(\"*l\")"] = function(chunks)
    local client, out = service.client(fake_sock(chunks)), {}
    for line in client:lines() do out[#out + 1] = line end
    return out, nil            -- (a last line without newline is a line to it)
  end,
  ["lines.wrap (hooks)"] = function(chunks)
    local out, conn = {}, {}
    local hook = lines.wrap(function(line) out[#out + 1] = (line:gsub("\r?\n$", "")) end)
    for _, chunk in ipairs(chunks) do hook(chunk, conn) end
    hook("", conn, true)
    return out, nil
  end,
}

-- CPU seconds for fn(), the best of a few runs (the least disturbed by the machine's load).
local function cost(fn)
  local best = math.huge
  for _ = 1, 5 do
    local t0 = os.clock()
    fn()
    best = math.min(best, os.clock() - t0)
  end
  return best
end

describe("the line cutter", function()
  for name, cut in pairs(CUTTERS) do
    it(name .. ": cuts 64 KiB and 1 MiB reads of 2-byte lines into whole lines", function()
      for _, size in ipairs({ 64 * 1024, 1024 * 1024 }) do
        local out, rest = cut({ ("a\n"):rep(size / 2) })
        assert.equal(size / 2, #out)
        for i = 1, #out do
          if out[i] ~= "a" then error(("line %d: %q"):format(i, out[i])) end
        end
        assert.is_true(rest == nil or rest == "")
      end
    end)

    it(name .. ": costs in proportion to the bytes, not to the bytes times the lines", function()
      local small, big = ("a\n"):rep(32 * 1024), ("a\n"):rep(512 * 1024)   -- 64 KiB, 1 MiB
      local t_small = cost(function() cut({ small }) end)
      local t_big = cost(function() cut({ big }) end)
      -- 16 times the bytes: linear is 16 times the cost; quadratic would be 256 times
      assert.is_true(t_big < 48 * math.max(t_small, 1e-4),
                     ("64 KiB: %.2f ms, 1 MiB: %.2f ms"):format(t_small * 1e3, t_big * 1e3))
    end)
  end

  it("the buffer: lines split across reads, \\r\\n split between two, an empty line, a last line without \\n", function()
    local out, rest = CUTTERS["the buffer (line mode)"]({ "one\ntw", "o\r", "\n\nthr", "ee", "\r\nlast" })
    assert.same({ "one", "two", "", "three" }, out)
    assert.equal("last", rest)
  end)

  it("the buffer makes its list of held pieces only when a piece is held (issue 32: no table per request read whole)", function()
    local buf = lines.buffer()
    buf:push("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.is_nil(rawget(buf, "held"))
    assert.equal("GET / HTTP/1.1", buf:line(true))
    assert.equal("Host: x", buf:line(true))
    assert.equal("", buf:line(true))
    assert.is_nil(buf:line(true))
    assert.is_nil(rawget(buf, "held"))
    buf:push("par")                       -- the front is empty: taken as the front, not held
    buf:push("tial\nrest")                -- held behind it
    assert.is_table(rawget(buf, "held"))
    assert.equal("partial\n", buf:line())
    assert.equal("rest", buf:take_all())
  end)

  it("serve()'s client: read(n), read(\"*l\"), receive_some and read(\"*a\") over the same bytes", function()
    local client = service.client(fake_sock({ "abc", "def\r\nline two\nxy", "z", ("q"):rep(70000) }))
    assert.equal("abcd", client:read(4))
    assert.equal("ef", client:read("*l"))
    assert.equal("line two", client:read("*l"))
    assert.equal("xy", client:receive_some(2))
    assert.equal("z" .. ("q"):rep(70000), client:read("*a"))
    local line, err, partial = client:read("*l")
    assert.same({ nil, "closed", "" }, { line, err, partial })
  end)

  it("the service connector loads again in the same Lua state (a config loaded twice)", function()
    -- in a luajit of its own: there a second ffi.cdef of a struct is an error
    local file = h.root .. "/connectors/service.lua"
    local script = ([[package.path = %q .. package.path
package.preload["netproxy.core"] = function() return {} end
dofile(%q) dofile(%q) print("twice")]]):format(h.root .. "/lua/?.lua;", file, file)
    local out, err = h.run({ "luajit", "-e", script })
    assert.equal("twice\n", out, err)
  end)

  it("serve()'s client: a line over 64 KiB is refused with what had come", function()
    local client = service.client(fake_sock({ "ok\n" .. ("x"):rep(40000), ("x"):rep(40000), "\n" }))
    assert.equal("ok", client:read("*l"))
    local line, err, partial = client:read("*l")
    assert.is_nil(line)
    assert.equal("line too long", err)
    assert.equal(("x"):rep(80000), partial)
  end)

  it("the buffer: an unfinished line growing by 1-byte chunks is not copied again with each", function()
    local function grow(n)
      local buf = lines.buffer()
      for _ = 1, n do
        buf:push("x")
        assert(buf:line() == nil)
      end
      buf:push("\n")
      return buf:line()
    end
    assert.equal(("x"):rep(1000) .. "\n", grow(1000))
    local t_small = cost(function() grow(4096) end)
    local t_big = cost(function() grow(65536) end)
    assert.is_true(t_big < 48 * math.max(t_small, 1e-4),
                   ("4 KiB: %.2f ms, 64 KiB: %.2f ms"):format(t_small * 1e3, t_big * 1e3))
  end)
end)
