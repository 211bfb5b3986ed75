-- netproxy.luapattern: is a Lua pattern from a config (a pool check's `expect`) safe to run on
-- any subject? LuaJIT's matcher raises some of its errors only when a subject leads it there:
-- "malformed pattern" past a literal the subject never has ("a%" on ""), "pattern too
-- complex" once match() nests 200 deep (one level per quantified item and per capture's
-- start and end), "too many captures", "invalid capture index", "unfinished capture". Trying
-- the pattern on "" at --check time misses them; a raise later ends the check loop that ran
-- it. check() reads the pattern as the matcher does (lib_string.c: classend, match) and
-- refuses each of them at once.
local sub, find, tonumber, type = string.sub, string.find, tonumber, type

local _M = {}

local MAX_DEPTH = 200       -- LJ_MAX_XLEVEL: a match() nested deeper raises
local MAX_CAPTURES = 32     -- LUA_MAXCAPTURES

-- Past the single-character class at i (a character, %x, or a set [...]), or nil and why.
local function class_end(p, i)
  local c = sub(p, i, i)
  if c == "%" then
    if i == #p then return nil, "malformed pattern (ends with '%')" end
    return i + 2
  end
  if c ~= "[" then return i + 1 end
  local j = i + 1
  if sub(p, j, j) == "^" then j = j + 1 end
  repeat                                  -- the first character of a set may be a ']'
    if j > #p then return nil, "malformed pattern (missing ']')" end
    if sub(p, j, j) == "%" then j = j + 1 end
    j = j + 1
  until sub(p, j, j) == "]"
  return j + 1
end

-- check(p) -> p, or nil and why.
function _M.check(p)
  if type(p) ~= "string" then return nil, "want a Lua pattern (a string), not " .. type(p) end
  local q = p
  local nul = find(q, "\0", 1, true)
  if nul then q = sub(q, 1, nul - 1) end  -- the matcher stops at a NUL byte
  local i, n, depth, captures = 1, #q, 1, 0
  local open, closed = {}, {}             -- captures not closed yet (a stack); closed ones
  if sub(q, 1, 1) == "^" then i = 2 end
  while i <= n do
    local c, d = sub(q, i, i), sub(q, i + 1, i + 1)
    local why
    if c == "(" then
      captures, depth = captures + 1, depth + 1
      if captures > MAX_CAPTURES then return nil, "too many captures (at most " .. MAX_CAPTURES .. ")" end
      if d == ")" then closed[captures], i = true, i + 2        -- a position capture
      else open[#open + 1], i = captures, i + 1 end
    elseif c == ")" then
      if #open == 0 then return nil, "invalid pattern capture (a ')' without its '(')" end
      closed[open[#open]], open[#open] = true, nil
      depth, i = depth + 1, i + 1
    elseif c == "$" and i == n then
      i = i + 1
    elseif c == "%" and d == "b" then
      if i + 3 > n then return nil, "missing arguments to '%b'" end
      i = i + 4
    elseif c == "%" and d == "f" then
      if sub(q, i + 2, i + 2) ~= "[" then return nil, "missing '[' after '%f'" end
      i, why = class_end(q, i + 2)
    elseif c == "%" and find(d, "^%d$") then
      local k = tonumber(d)
      if not closed[k] then return nil, "invalid capture index %" .. d .. " (no capture " .. d .. " closed before it)" end
      i = i + 2
    else
      i, why = class_end(q, i)
      local quantifier = i and sub(q, i, i)
      if quantifier == "*" or quantifier == "+" or quantifier == "-" or quantifier == "?" then
        depth, i = depth + 1, i + 1
      end
    end
    if not i then return nil, why end
    if depth > MAX_DEPTH then
      return nil, "pattern too complex (200 or more of quantifiers and capture parentheses: the matcher nests that deep)"
    end
  end
  if #open > 0 then return nil, "unfinished capture (a '(' without its ')')" end
  return p
end

return _M
