-- spec/fuzz/glob_reference.lua: netproxy.addr's host patterns by their definition, by brute
-- force over the whole name (every split tried, memoized: quadratic and more, short inputs
-- only), to check the real matcher against. The definition (docs/guide.md, "Host patterns"):
--   - a pattern that is `*` alone matches every host;
--   - brackets around an IPv6 address are dropped, from the name and from the pattern;
--   - names and patterns are compared in lower case;
--   - `*` takes any run of characters but a dot; a label that is `*` alone takes at least one.
local lower, sub, match = string.lower, string.sub, string.match

-- Is the `*` at i of p a label by itself?
local function alone(p, i)
  return (i == 1 or sub(p, i - 1, i - 1) == ".") and (i == #p or sub(p, i + 1, i + 1) == ".")
end

-- Does p[i..] match s[j..] whole? (memo: the answers known, by i and j)
local function from(p, i, s, j, memo)
  local key = i * (#s + 2) + j
  if memo[key] ~= nil then return memo[key] end
  local c, yes = sub(p, i, i), false
  if i > #p then
    yes = j > #s
  elseif c ~= "*" then
    yes = j <= #s and c == sub(s, j, j) and from(p, i + 1, s, j + 1, memo)
  else
    -- the star takes s[j..k-1]: none or more characters, none of them a dot
    for k = j, #s + 1 do
      if k > j and sub(s, k - 1, k - 1) == "." then break end
      if not (k == j and alone(p, i)) and from(p, i + 1, s, k, memo) then yes = true break end
    end
  end
  memo[key] = yes
  return yes
end

return function(pattern, host)
  if type(host) ~= "string" then return false end
  if pattern == "*" then return true end
  host = lower(match(host, "^%[(.*)%]$") or host)
  pattern = lower(match(pattern, "^%[(.*)%]$") or pattern)
  return from(pattern, 1, host, 1, {})
end
