-- netproxy.ngx's ngx.socket.tcp over a stand-in cosocket: what send hands to sock:write, and
-- receive's patterns over any chunking of what the peer sends (issue 32: a pending buffer
-- read from an offset, a request's pieces written with one writev). The same calls against a
-- real redis-server: spec/02-integration/83-ngx-redis_spec.lua.
require "spec.helpers"          -- (package.path onto lua/)

local core = package.loaded["netproxy.core"]
if not core then
  local make = package.preload["netproxy.core"]
  core = make and make() or {}
  package.loaded["netproxy.core"] = core
end

-- The cosocket core.connect gives: each read hands over the next chunk (at most the bytes
-- asked), then `ends` ("closed" or "timeout"); each write is kept as it was given.
local chunks, ends, writes
core.connect = function() return {
  read = function(_, max)
    local chunk = table.remove(chunks, 1)
    if not chunk then return nil, ends end
    if #chunk > max then table.insert(chunks, 1, chunk:sub(max + 1)) end
    return chunk:sub(1, max)
  end,
  write = function(_, data)
    writes[#writes + 1] = data
    if type(data) == "table" then return #table.concat(data) end
    return #data
  end,
  close = function() end,
} end

local had_ngx = rawget(_G, "ngx")
local ngx = require "netproxy.ngx"
if had_ngx == nil then rawset(_G, "ngx", nil) end   -- (the module installs the global)

local function socket(data, how)
  chunks, ends, writes = { unpack(data) }, how or "closed", {}
  local sock = ngx.socket.tcp()
  assert(sock:connect("127.0.0.1", 6379))
  return sock
end

-- Every way of cutting s into chunks of at most `most` bytes, each cut the same for all:
-- sizes 1, 2, 3, ... most.
local function chunkings(s, most)
  local out = {}
  for size = 1, most do
    local parts = {}
    for i = 1, #s, size do parts[#parts + 1] = s:sub(i, i + size - 1) end
    out[#out + 1] = parts
  end
  out[#out + 1] = { s }
  return out
end

describe("ngx.socket.tcp (netproxy.ngx)", function()
  it("send: a table of strings and numbers goes to sock:write as it is (one writev), never joined", function()
    local sock = socket({})
    local req = { "*2\r\n", "$", 3, "\r\n", "get", "\r\n", "$", 1, "\r\n", "k", "\r\n" }
    assert.equal(20, sock:send(req))
    assert.equal(req, writes[1])
    -- nested tables are flattened into one array, still not joined
    assert.equal(8, sock:send({ "a\r\n", { "bcd", 42 } }))
    assert.same({ "a\r\n", "bcd", 42 }, writes[2])
    assert.equal(2, sock:send("ok"))
    assert.equal("ok", writes[3])
    assert.equal(2, sock:send(42))
    assert.equal("42", writes[4])
    assert.has_error(function() sock:send({ "a", true }) end, "send: bad data: boolean in the table")
  end)

  it("receive: a Redis reply, lines (CRs dropped), sizes and *L over every chunking", function()
    local stream = "$32\r\nnetproxy-redis-get-32-byte-value\r\n+OK\r\n\r\nx\ry\r\nplain\nlast"
    for _, parts in ipairs(chunkings(stream, 9)) do
      local sock = socket(parts)
      local got = {}
      for _, p in ipairs({ "*l", 32, 2, "*l", "*l", "*l", "*L" }) do got[#got + 1] = assert(sock:receive(p)) end
      assert.same({ "$32", "netproxy-redis-get-32-byte-value", "\r\n", "+OK", "", "xy", "plain\n" }, got)
      local none, err, partial = sock:receive("*l")
      assert.same({ nil, "closed", "last" }, { none, err, partial })
      assert.same({ nil, "closed" }, { sock:receive(1) })
    end
  end)

  it("receive: *a, a size past the end, a timeout that keeps the socket, receiveany and the prefix", function()
    for _, parts in ipairs(chunkings("head\r\nthe rest\r\nof it", 7)) do
      local sock = socket(parts)
      assert.equal("head", sock:receive())
      assert.equal("the rest\r\nof it", sock:receive("*a"))
      assert.same({ nil, "closed" }, { sock:receive() })

      sock = socket(parts)
      assert.equal("head", sock:receive("*l"))
      assert.same({ nil, "closed", "the rest\r\nof it" }, { sock:receive(100) })

      sock = socket(parts, "timeout")
      assert.equal(">head", sock:receive("*l", ">"))
      assert.same({ nil, "timeout", "the rest\r\nof it" }, { sock:receive(100) })
      chunks = { "more\n" }
      assert.equal("more", sock:receive())              -- still open after a timeout

      sock = socket(parts)
      assert.equal("head", sock:receive())
      local any = sock:receiveany(3)
      assert.is_true(#any >= 1 and #any <= 3)
      assert.equal(("the rest\r\nof it"):sub(1, #any), any)
    end
  end)

  it("receiveuntil over every chunking: the data before the pattern, in pieces of a size, inclusive", function()
    for _, parts in ipairs(chunkings("one--END--two--END--three--END--", 11)) do
      local sock = socket(parts)
      local upto = sock:receiveuntil("--END--")
      assert.equal("one", upto())
      local pieces = {}
      repeat
        local piece = upto(2)
        pieces[#pieces + 1] = piece
      until piece == nil
      assert.same({ "tw", "o" }, pieces)
      assert.equal("three--END--", sock:receiveuntil("--END--", { inclusive = true })())
      assert.same({ nil, "closed", "" }, { upto() })
    end
  end)

  it("setkeepalive refuses a socket with unread bytes", function()
    local sock = socket({ "+OK\r\nextra" })
    assert.equal("+OK", sock:receive())
    assert.same({ nil, "unread data in buffer" }, { sock:setkeepalive(1000, 10) })
    assert.equal("extra", sock:receive(5))
  end)
end)
