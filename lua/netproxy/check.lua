-- netproxy.check: validators for config values. Each takes a value and returns the
-- normalised value, or nil and a message saying what is wrong with it.
local type, tonumber, tostring, math_floor = type, tonumber, tostring, math.floor

local _M = {}

function _M.port(v)
  local n = tonumber(v)
  if not n or n ~= math_floor(n) or n < 0 or n > 65535 then
    return nil, "bad port '" .. tostring(v) .. "' (want 0..65535)"
  end
  return n
end

-- A host name or an IP literal; IPv6 may come with or without brackets.
function _M.host(v)
  if type(v) ~= "string" or v == "" then
    return nil, "bad host '" .. tostring(v) .. "' (want a name or an address)"
  end
  local bare = v:match("^%[(.*)%]$") or v
  if bare:find(":", 1, true) then
    if bare:match("^[%x:%.]+$") then return bare end
  elseif #v <= 253 and v:match("^[%w_%-%.]+$") and not v:find("..", 1, true) then
    return v
  end
  return nil, "bad host '" .. v .. "'"
end

function _M.seconds(v)
  local n = tonumber(v)
  if not n or n < 0 then return nil, "bad duration '" .. tostring(v) .. "' (want seconds >= 0)" end
  return n
end

function _M.count(v)
  local n = tonumber(v)
  if not n or n ~= math_floor(n) or n < 0 then
    return nil, "bad number '" .. tostring(v) .. "' (want an integer >= 0)"
  end
  return n
end

function _M.bytes(v)
  local n = tonumber(v)
  if not n or n ~= math_floor(n) or n < 4096 or n > 64 * 1024 * 1024 then
    return nil, "bad size '" .. tostring(v) .. "' (want bytes, 4096..67108864)"
  end
  return n
end

function _M.string(v)
  if type(v) ~= "string" then return nil, "want a string, not " .. type(v) end
  return v
end

function _M.func(v)
  if type(v) ~= "function" then return nil, "want a function, not " .. type(v) end
  return v
end

function _M.one_of(...)
  local allowed, list = {}, table.concat({ ... }, ", ")
  for _, name in ipairs({ ... }) do allowed[name] = true end
  return function(v)
    if allowed[v] then return v end
    return nil, "bad value '" .. tostring(v) .. "' (want one of " .. list .. ")"
  end
end

local LEVELS = { err = 0, warning = 1, notice = 2, info = 3, debug = 4 }

function _M.log_level(v)
  local n = LEVELS[v] or tonumber(v)
  if not n or n ~= math_floor(n) or n < 0 or n > 4 then
    return nil, "bad log level '" .. tostring(v) .. "' (want 0..4 or err, warning, notice, info, debug)"
  end
  return n
end

-- Nameservers: a list of "ip" or "ip:port" ("[v6]:port" for IPv6).
function _M.resolvers(v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or #v == 0 then return nil, "want a list of \"ip:port\" nameservers" end
  for _, s in ipairs(v) do
    local ok = type(s) == "string" and (s:match("^%d+%.%d+%.%d+%.%d+:?%d*$") or s:match("^%[[%x:%.]+%]:%d+$")
                                        or s:match("^[%x:%.]*:[%x:%.]*$"))
    if not ok then return nil, "bad nameserver '" .. tostring(s) .. "' (want ip or ip:port)" end
  end
  return v
end

-- "10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::1": an address with an optional prefix.
function _M.cidr(v)
  if type(v) ~= "string" then return nil, "want an address or CIDR string" end
  local ip, bits = v:match("^([^/]+)/(%d+)$")
  ip = ip or v
  local max
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    for _, n in ipairs({ a, b, c, d }) do
      if tonumber(n) > 255 then return nil, "bad address or CIDR '" .. v .. "'" end
    end
    max = 32
  elseif ip:find(":", 1, true) and ip:match("^[%x:%.]+$") and not ip:find(":::", 1, true) then
    max = 128
  else
    return nil, "bad address or CIDR '" .. v .. "'"
  end
  if bits and tonumber(bits) > max then return nil, "bad prefix in '" .. v .. "' (at most /" .. max .. ")" end
  return v
end

function _M.cidrs(v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then return nil, "want a list of addresses or CIDRs" end
  for _, c in ipairs(v) do
    local ok, err = _M.cidr(c)
    if not ok then return nil, err end
  end
  return v
end

-- "ADDR:PORT" where something listens: "127.0.0.1:9100", "[::1]:9100", "localhost:9100".
function _M.listen_address(v)
  if type(v) ~= "string" then return nil, "want \"ADDR:PORT\"" end
  local host, p = v:match("^%[([%x:%.]+)%]:(%d+)$")
  if not host then host, p = v:match("^([^:]+):(%d+)$") end
  if not host or not _M.host(host) or tonumber(p) > 65535 then
    return nil, "bad address '" .. v .. "' (want \"ADDR:PORT\")"
  end
  return v
end

-- A string or a list of strings, as a list.
function _M.paths(v)
  if type(v) == "string" then return { v } end
  if type(v) ~= "table" then return nil, "want a folder or a list of folders" end
  for _, p in ipairs(v) do
    if type(p) ~= "string" then return nil, "want a folder or a list of folders" end
  end
  return v
end

-- Checks t's fields against spec { name = validator }; returns the normalised copy and a
-- list of messages (unknown names included).
function _M.fields(t, spec, ignore)
  local out, problems = {}, {}
  for k, v in pairs(t) do
    local validate = spec[k]
    if validate then
      local value, err = validate(v)
      if value == nil then problems[#problems + 1] = k .. ": " .. err else out[k] = value end
    elseif not (ignore and ignore[k]) then
      problems[#problems + 1] = "unknown parameter '" .. tostring(k) .. "'"
    end
  end
  table.sort(problems)
  return out, problems
end

-- A host made of digits and dots is an IPv4 literal and must be a valid one: "256.1.1.1"
-- would otherwise be looked up as a name, and fail only at start. nil passes.
function _M.ipv4_literal(v)
  if type(v) ~= "string" or not v:match("^[%d%.]+$") then return true end
  local parts = { v:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  local ok = #parts == 4
  for _, n in ipairs(parts) do ok = ok and #n <= 3 and tonumber(n) <= 255 end
  if ok then return true end
  return nil, "bad IPv4 address '" .. v .. "' (want four numbers 0..255)"
end

-- The listen(2) queue of a listening socket (the kernel caps it at net.core.somaxconn).
function _M.backlog(v)
  local n = tonumber(v)
  if not n or n ~= math_floor(n) or n < 1 or n > 65535 then
    return nil, "bad backlog '" .. tostring(v) .. "' (want 1..65535)"
  end
  return n
end

-- syslog's ident: what each line is tagged with ("netproxy" by default).
function _M.syslog_ident(v)
  if type(v) ~= "string" or not v:match("^[%w_%-%.]+$") or #v > 32 then
    return nil, "bad syslog ident '" .. tostring(v) .. "' (want 1..32 letters, digits, _ - .)"
  end
  return v
end

_M.SYSLOG_FACILITIES = { "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
                         "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4",
                         "local5", "local6", "local7" }
_M.syslog_facility = _M.one_of(unpack(_M.SYSLOG_FACILITIES))

return _M
