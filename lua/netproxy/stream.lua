-- netproxy.stream: reading helpers for connectors, built on cosocket peek/read: a
-- delimited read (a line, an HTTP header block) with a size limit and one deadline.
local core = require "netproxy.core"
local math_min = math.min

local _M = {}

-- Reads up to and including delim. Returns the data, or nil, err ("timeout", "closed",
-- "too long", ...) and what had arrived. Bytes after delim stay in the socket for the
-- next read or for the relay.
function _M.read_until(sock, delim, max, timeout)
  local deadline = timeout and core.now() + timeout
  local want = 1
  while true do
    local left = deadline and deadline - core.now()
    if left and left <= 0 then return nil, "timeout", "" end
    local buf, err, partial = sock:peek(want, left)
    if not buf then return nil, err, partial end
    local _, last = buf:find(delim, 1, true)
    if last then return sock:read(last) end
    if #buf >= max then return nil, "too long", buf end
    want = math_min(#buf + 1, max)
  end
end

function _M.read_line(sock, max, timeout)
  return _M.read_until(sock, "\n", max, timeout)
end

return _M
