-- netproxy.stream: reading helpers for connectors, built on cosocket peek/read: a
-- delimited read (a line, an HTTP header block) with a size limit and one deadline.
local core = require "netproxy.core"
local find, sub, concat, math_max, math_min = string.find, string.sub, table.concat, math.max, math.min

local _M = {}

-- The most a peek can hold (the C core's PEEK_MAX, src/sock.c): the longest PROXY v2 header.
_M.PEEK_MAX = 16 + 65535

-- n bytes known to be buffered (peeked): a read hands over at most 64 KiB at a time.
local function take(sock, n)
  local data, err = sock:read(n)
  if not data or #data == n then return data, err end
  local parts, have = { data }, #data
  while have < n do
    data, err = sock:read(n - have)
    if not data then return nil, err, concat(parts) end
    parts[#parts + 1] = data
    have = have + #data
  end
  return concat(parts)
end

-- Reads up to and including delim. Returns the data, or nil, err ("timeout", "closed",
-- "too long", ...) and what had arrived. Bytes after delim stay in the socket for the
-- next read or for the relay.
--
-- Linear in what arrives: each peek hands back everything the socket has, and the search
-- goes on from where the last one stopped (less the length of delim, which may straddle two
-- arrivals), so no byte is looked at twice.
--
-- window (optional): each peek reads ahead, and hands back, at most this many bytes past
-- those already looked at: for a short delimited read in front of bytes that another call
-- moves in C (a chunk size line before the chunk's data, which sock:splice_to splices).
function _M.read_until(sock, delim, max, timeout, window)
  max = math_min(max, _M.PEEK_MAX)
  local deadline = timeout and core.now() + timeout
  local want, from = 1, 1
  while true do
    local left = deadline and deadline - core.now()
    if left and left <= 0 then return nil, "timeout", "" end
    local buf, err, partial = sock:peek(want, left, window and math_min(want - 1 + window, _M.PEEK_MAX))
    if not buf then return nil, err, partial end
    local _, last = find(buf, delim, from, true)
    if last and last <= max then return take(sock, last) end
    if #buf >= max then return nil, "too long", sub(buf, 1, max) end
    from = math_max(1, #buf - #delim + 2)
    want = #buf + 1
  end
end

function _M.read_line(sock, max, timeout)
  return _M.read_until(sock, "\n", max, timeout)
end

-- Reads and drops what the peer still sends, up to max bytes or timeout seconds or its EOF;
-- returns how many bytes went. For the end of a refused request: closing a socket with bytes
-- unread makes the kernel send a reset, and a client still sending its (too long) request
-- then loses the answer that says why (nginx's lingering close).
function _M.discard(sock, max, timeout)
  local deadline, dropped = core.now() + timeout, 0
  while dropped < max do
    local left = deadline - core.now()
    if left <= 0 then break end
    local data = sock:read(math_min(65536, max - dropped), left)
    if not data then break end
    dropped = dropped + #data
  end
  return dropped
end

return _M
