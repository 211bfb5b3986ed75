-- netproxy.lines: cutting lines out of a TCP stream, whose chunks end anywhere. One buffer
-- does it for every line reader: hooks in line mode (hook_mode = "line", wrap below) and the
-- service connector (input_mode = "line", client:read("*l"), read(n), read("*a")).
local concat, find, sub, byte = table.concat, string.find, string.sub, string.byte
local setmetatable = setmetatable

local _M = {}

_M.MAX_LINE = 64 * 1024

---------------------------------------------------------------- the buffer

-- Bytes pushed at the back, lines and byte counts taken from the front. Linear in the bytes:
-- the front is one string read from an offset (a line is one sub, the rest is not copied
-- again per line), and what is pushed behind it is kept as a list of pieces, joined to the
-- front only when a line or a count needs them, so an unfinished line that grows by small
-- chunks is not copied again with each of them. Each byte is searched for a newline once.
local Buffer = {}
Buffer.__index = Buffer

function _M.buffer()
  return setmetatable({
    s = "", pos = 1,          -- the front, and its first byte not taken
    seen = 1,                 -- s holds no newline from pos to before seen
    held = nil, nheld = 0,    -- pieces behind s (a table made at the first), and how many
    held_bytes = 0,
    held_seen = 0,            -- held[1..held_seen] hold no newline
  }, Buffer)
end

-- Bytes in the buffer.
function Buffer:size()
  return #self.s - self.pos + 1 + self.held_bytes
end

function Buffer:push(data)
  if data == "" then return end
  if self.pos > #self.s and self.nheld == 0 then
    self.s, self.pos, self.seen = data, 1, 1
    return
  end
  -- most buffers (a request that arrives in one read) never hold a piece: no table for them
  local held = self.held
  if not held then
    held = {}
    self.held = held
  end
  local n = self.nheld + 1
  held[n], self.nheld, self.held_bytes = data, n, self.held_bytes + #data
end

-- Joins the first k held pieces to what is left of the front, keeping what is known to
-- hold no newline (the front's searched part, and the held pieces searched after it).
function Buffer:_join(k)
  local held, parts = self.held, { sub(self.s, self.pos) }
  local seen = self.seen - self.pos + 1
  local searched = seen > #parts[1]
  local bytes = 0
  for i = 1, k do
    parts[i + 1] = held[i]
    bytes = bytes + #held[i]
    if searched and i <= self.held_seen then seen = seen + #held[i] end
  end
  self.s, self.pos, self.seen = concat(parts), 1, seen > 1 and seen or 1
  local n = self.nheld
  for i = 1, n - k do held[i] = held[i + k] end
  for i = n - k + 1, n do held[i] = nil end
  local held_seen = self.held_seen - k
  self.nheld, self.held_bytes, self.held_seen = n - k, self.held_bytes - bytes, held_seen > 0 and held_seen or 0
end

-- The next whole line, or nil when there is none yet. With strip, without its "\n" or
-- "\r\n"; else with it.
function Buffer:line(strip)
  local nl = find(self.s, "\n", self.seen, true)
  if not nl then
    self.seen = #self.s + 1
    local held = self.held
    for i = self.held_seen + 1, self.nheld do
      if find(held[i], "\n", 1, true) then
        self:_join(i)
        nl = find(self.s, "\n", self.seen, true)
        break
      end
      self.held_seen = i
    end
    if not nl then return nil end
  end
  local s, pos = self.s, self.pos
  self.pos, self.seen = nl + 1, nl + 1
  if not strip then return sub(s, pos, nl) end
  if nl > pos and byte(s, nl - 1) == 13 then return sub(s, pos, nl - 2) end
  return sub(s, pos, nl - 1)
end

-- The first n bytes (at most what there is).
function Buffer:take(n)
  local have = #self.s - self.pos + 1
  if n > have and self.nheld > 0 then
    local k, bytes = 0, have
    while bytes < n and k < self.nheld do
      k = k + 1
      bytes = bytes + #self.held[k]
    end
    self:_join(k)
  end
  local pos = self.pos
  local stop = pos + n - 1
  if stop > #self.s then stop = #self.s end
  self.pos = stop + 1
  if self.seen < self.pos then self.seen = self.pos end
  return sub(self.s, pos, stop)
end

-- Everything in the buffer.
function Buffer:take_all()
  return self:take(self:size())
end

---------------------------------------------------------------- hooks in line mode

-- Wraps fn(line, conn) into a chunk hook: the unfinished last line of each chunk is held
-- back, fn is called once per complete line (newline included), and what it returns (nil:
-- the line as it was) is handed on. The rest of a stream that does not end with a newline
-- is handed over at EOF, and so is an unfinished line of max_line bytes or more, so memory
-- stays bounded. State lives per connection and direction.
function _M.wrap(fn, max_line)
  max_line = max_line or _M.MAX_LINE
  local buffers = setmetatable({}, { __mode = "k" })   -- conn -> its buffer

  local function hand(out, line, conn)
    local result = fn(line, conn)
    out[#out + 1] = result == nil and line or result
  end

  return function(data, conn, eof)
    local buf = buffers[conn]
    if not buf then
      buf = _M.buffer()
      buffers[conn] = buf
    end
    buf:push(data)
    local out = {}
    while true do
      local line = buf:line()
      if not line then break end
      hand(out, line, conn)
    end
    if eof or buf:size() >= max_line then
      if buf:size() > 0 then hand(out, buf:take_all(), conn) end
      if eof then buffers[conn] = nil end
    end
    if #out == 1 then return out[1] end
    return concat(out)
  end
end

return _M
