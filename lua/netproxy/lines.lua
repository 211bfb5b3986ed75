-- netproxy.lines: line mode for hooks (hook_mode = "line"). TCP delivers chunks whose
-- boundaries fall anywhere, so a pattern can be cut in two; this wrapper holds back the
-- unfinished last line of each chunk and calls the user's function once per complete line
-- (newline included). The rest of a stream that does not end with a newline is handed over
-- at EOF, and so is a line longer than max_line, so memory stays bounded.
local concat, find, sub = table.concat, string.find, string.sub
local setmetatable = setmetatable

local _M = {}

_M.MAX_LINE = 64 * 1024

-- Wraps fn(line, conn) into a chunk hook. State lives per connection and direction.
-- Linear in the bytes: an unfinished line is held as a list of its pieces and joined once,
-- when its newline comes (not copied again with every chunk that extends it).
function _M.wrap(fn, max_line)
  max_line = max_line or _M.MAX_LINE
  local carry = setmetatable({}, { __mode = "k" })   -- conn -> { pieces..., n = bytes }

  local function each_line(text, conn, out)
    local pos = 1
    while true do
      local nl = find(text, "\n", pos, true)
      if not nl then return sub(text, pos) end
      local line = sub(text, pos, nl)
      local result = fn(line, conn)
      out[#out + 1] = result == nil and line or result
      pos = nl + 1
    end
  end

  return function(data, conn, eof)
    local held, text = carry[conn], data
    if held then
      held[#held + 1] = data
      held.n = held.n + #data
      if not eof and held.n < max_line and not find(data, "\n", 1, true) then
        return ""                                    -- still no line: nothing to hand on
      end
      text = concat(held)
      carry[conn] = nil
    end
    local out = {}
    local rest = each_line(text, conn, out)
    if eof or #rest >= max_line then
      if rest ~= "" then
        local result = fn(rest, conn)
        out[#out + 1] = result == nil and rest or result
      end
    elseif rest ~= "" then
      carry[conn] = { rest, n = #rest }
    end
    if #out == 1 then return out[1] end
    return concat(out)
  end
end

return _M
