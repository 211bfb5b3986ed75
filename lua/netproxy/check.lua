-- netproxy.check: validators for config values. Each takes a value and returns the
-- normalised value, or nil and a message saying what is wrong with it.
local type, tonumber, tostring, ipairs, pairs, unpack = type, tonumber, tostring, ipairs, pairs, unpack
local math_floor = math.floor

local _M = {}

function _M.port(v)
  local n = tonumber(v)
  if not n or n ~= math_floor(n) or n < 0 or n > 65535 then
    return nil, "bad port '" .. tostring(v) .. "' (want 0..65535)"
  end
  return n
end

-- An IPv4 address as inet_pton reads it: four decimal numbers 0..255, no leading zeros.
-- Returns the four numbers, or nil.
function _M.ipv4(s)
  if type(s) ~= "string" then return nil end
  local a, b, c, d = s:match("^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  if not a then return nil end
  local out = {}
  for i, n in ipairs({ a, b, c, d }) do
    if #n > 1 and n:sub(1, 1) == "0" then return nil end
    out[i] = tonumber(n)
    if out[i] > 255 then return nil end
  end
  return out
end

-- The groups of one side of "::": "1:2:ab" (the last may be a dotted quad when tail is true);
-- adds them to out; false when malformed.
local function ipv6_part(part, out, tail)
  if part == "" then return true end
  local pos = 1
  while true do
    local colon = part:find(":", pos, true)
    local field = part:sub(pos, (colon or 0) - 1)
    if not colon and tail and field:find(".", 1, true) then
      local q = _M.ipv4(field)
      if not q then return false end
      out[#out + 1] = q[1] * 256 + q[2]
      out[#out + 1] = q[3] * 256 + q[4]
      return true
    end
    if not field:match("^%x%x?%x?%x?$") then return false end
    out[#out + 1] = tonumber(field, 16)
    if not colon then return true end
    pos = colon + 1
  end
end

-- An IPv6 address (RFC 4291 2.2, as inet_pton reads it): eight groups of 1..4 hex digits, at
-- most one "::" standing for one or more groups of zeros, a dotted quad for the last two.
-- Returns the eight groups as numbers, or nil.
function _M.ipv6(s)
  if type(s) ~= "string" or #s < 2 or #s > 45 or not s:match("^[%x:%.]+$") then return nil end
  local gap = s:find("::", 1, true)
  local left, right = {}, {}
  if gap then
    if s:find("::", gap + 1, true) then return nil end           -- two of them, or ":::"
    if not ipv6_part(s:sub(1, gap - 1), left, false) or not ipv6_part(s:sub(gap + 2), right, true) then
      return nil
    end
    if #left + #right > 7 then return nil end
  else
    if not ipv6_part(s, left, true) or #left ~= 8 then return nil end
  end
  local groups = left
  for _ = 1, 8 - #left - #right do groups[#groups + 1] = 0 end
  for _, g in ipairs(right) do groups[#groups + 1] = g end
  return groups
end

-- A host name or an IP literal; IPv6 may come with or without brackets.
function _M.host(v)
  if type(v) ~= "string" or v == "" then
    return nil, "bad host '" .. tostring(v) .. "' (want a name or an address)"
  end
  local bare = v:match("^%[(.*)%]$") or v
  if bare:find(":", 1, true) then
    if _M.ipv6(bare) then return bare end
    return nil, "bad host '" .. v .. "' (not an IPv6 address)"
  end
  if v:match("^[%d%.]+$") then
    if _M.ipv4(v) then return v end
    return nil, "bad host '" .. v .. "' (not an IPv4 address)"
  end
  if #v <= 253 and v:match("^[%w_%-%.]+$") and not v:find("..", 1, true) then
    return v
  end
  return nil, "bad host '" .. v .. "'"
end

-- An IPv4 or IPv6 address, no name (IPv6 with or without brackets): what a `to` connects
-- from (source). Returns it bare.
function _M.address(v)
  local bare = type(v) == "string" and (v:match("^%[(.*)%]$") or v)
  if bare and (_M.ipv4(bare) or _M.ipv6(bare)) then return bare end
  return nil, "bad address '" .. tostring(v) .. "' (want an IPv4 or IPv6 address, not a name)"
end

-- Durations: 0 (which each option documents: none, never, unbounded) or 1 ms .. 30 days. A
-- timeout under a millisecond is a slip of units, one over a month is meant as "never" and has
-- 0 for that; the bound keeps every deadline exact in a double and far from the overflow of a
-- time_t when the C core turns it into a timeval. NaN and infinities are refused.
_M.MIN_SECONDS, _M.MAX_SECONDS = 0.001, 30 * 24 * 3600

function _M.seconds(v)
  local n = tonumber(v)
  if not n or n ~= n or n < 0 or n > _M.MAX_SECONDS or (n > 0 and n < _M.MIN_SECONDS) then
    return nil, ("bad duration '%s' (want 0 or %g..%d seconds)"):format(tostring(v), _M.MIN_SECONDS, _M.MAX_SECONDS)
  end
  return n
end

-- A validator for whole numbers lo..hi; unit ("bytes", ...) is for the message.
function _M.int_range(lo, hi, unit)
  local want = ("want an integer, %d..%d%s"):format(lo, hi, unit and " " .. unit or "")
  return function(v)
    local n = tonumber(v)
    if not n or n ~= n or n ~= math_floor(n) or n < lo or n > hi then
      return nil, "bad value '" .. tostring(v) .. "' (" .. want .. ")"
    end
    return n
  end
end

-- Counts (max_clients, max_connections, ...): 0 (none, no limit) up to a billion, far past any
-- real limit and still exact as a C integer.
_M.MAX_COUNT = 1000000000
_M.count = _M.int_range(0, _M.MAX_COUNT)

-- Worker processes: the shared counters have NP_MAX_SLOTS (64) slots, slot 0 the master's
-- (src/shm.h); -w takes the same range.
_M.MAX_WORKERS = 63
_M.workers = _M.int_range(1, _M.MAX_WORKERS)

-- Buffer sizes.
function _M.bytes(v)
  local n = tonumber(v)
  if not n or n ~= n or n ~= math_floor(n) or n < 4096 or n > 64 * 1024 * 1024 then
    return nil, "bad size '" .. tostring(v) .. "' (want bytes, 4096..67108864)"
  end
  return n
end

function _M.boolean(v)
  if type(v) ~= "boolean" then return nil, "want true or false, not " .. tostring(v) end
  return v
end

-- "64k", "1m", "1g" or a number of bytes -> bytes, or nil
function _M.size(v)
  if type(v) == "number" then return v end
  if type(v) ~= "string" then return nil end
  local n, unit = v:lower():match("^(%d+)([kmg]?)b?$")
  if not n then return nil end
  return tonumber(n) * ({ [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 })[unit]
end

-- server{ shared = { name = "1m", ... } }: dicts of 8 KiB .. 1 GiB, names of [%w_]+
function _M.shared_dicts(v)
  if type(v) ~= "table" then return nil, "want a table like { limits = \"1m\" }" end
  local out = {}
  for name, size in pairs(v) do
    if type(name) ~= "string" or not name:match("^[%w_]+$") then
      return nil, "bad dict name '" .. tostring(name) .. "' (want letters, digits, _)"
    end
    local n = _M.size(size)
    if not n or n % 1 ~= 0 or n < 8192 or n > 1024 ^ 3 then
      return nil, name .. ": bad size '" .. tostring(size) .. "' (want 8k..1g)"
    end
    out[name] = n
  end
  return out
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
local function nameserver(s)
  if type(s) ~= "string" then return false end
  local ip, port = s:match("^%[(.*)%]:(%d+)$")
  if not ip then ip, port = s:match("^([%d%.]+):(%d+)$") end
  if ip then return (_M.ipv4(ip) or _M.ipv6(ip)) and tonumber(port) <= 65535 end
  return (_M.ipv4(s) or _M.ipv6(s)) ~= nil
end

function _M.resolvers(v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or #v == 0 then return nil, "want a list of \"ip:port\" nameservers" end
  for _, s in ipairs(v) do
    if not nameserver(s) then return nil, "bad nameserver '" .. tostring(s) .. "' (want ip or ip:port)" end
  end
  return v
end

-- "10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::1": an address with an optional prefix.
function _M.cidr(v)
  if type(v) ~= "string" then return nil, "want an address or CIDR string" end
  local ip, bits = v:match("^([^/]+)/(%d%d?%d?)$")
  ip = ip or v
  local max = _M.ipv4(ip) and 32 or _M.ipv6(ip) and 128
  if not max then return nil, "bad address or CIDR '" .. v .. "'" end
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

-- The listening side of a `from` connector: port is required, host defaults to localhost.
-- Fills conf.host; returns a problem, or nil.
function _M.listen(conf)
  if conf.port == nil then return "missing port" end
  conf.host = conf.host or "localhost"
end

-- What a listen address stands for, to tell when two would clash: a list of keys
-- { family = 4 | 6 | "name", addr = canonical text, or "*" for every address of the family }.
-- localhost is 127.0.0.1 and ::1; port 0 (any free port) never clashes: no keys.
function _M.listen_keys(host, port)
  if tonumber(port) == 0 then return {} end
  host = tostring(host):lower():match("^%[(.*)%]$") or tostring(host):lower()
  if host == "localhost" then
    return { { family = 4, addr = "127.0.0.1" }, { family = 6, addr = "0:0:0:0:0:0:0:1" } }
  end
  local q, g = _M.ipv4(host), _M.ipv6(host)
  if q then
    local text = table.concat(q, ".")
    return { { family = 4, addr = text == "0.0.0.0" and "*" or text } }
  elseif g then
    local text = ("%x:%x:%x:%x:%x:%x:%x:%x"):format(unpack(g))
    return { { family = 6, addr = text == "0:0:0:0:0:0:0:0" and "*" or text } }
  end
  return { { family = "name", addr = host } }
end

-- Do two keys share an address? A name is not resolved here: it clashes with itself and, as
-- it may stand for addresses of either family, with a wildcard.
local function overlap(a, b)
  if a.family == "name" or b.family == "name" then
    if a.family == b.family then return a.addr == b.addr end
    return (a.family == "name" and b or a).addr == "*"
  end
  return a.family == b.family and (a.addr == b.addr or a.addr == "*" or b.addr == "*")
end

local function authority(host, port)
  host = tostring(host)
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(port)
end

-- listeners: a list of { host =, port =, label = "proxy 'web'", where = "file:line" } (or
-- { path = } for a unix socket; udp = true for a UDP one, whose ports are apart from TCP's),
-- in declaration order. Returns a list of { where =, message = } for each listener that shares
-- an address and port with an earlier one (SO_REUSEPORT would let both bind and split the
-- clients between them unseen; without it the second fails at start).
function _M.listen_clashes(listeners)
  local problems = {}
  for i, b in ipairs(listeners) do
    local kb = b.path and {} or _M.listen_keys(b.host, b.port)
    for j = 1, i - 1 do
      local a = listeners[j]
      local clash = false
      if a.path or b.path then
        clash = a.path == b.path
      elseif (a.udp or false) ~= (b.udp or false) then
        clash = false
      elseif tonumber(a.port) == tonumber(b.port) then
        for _, x in ipairs(_M.listen_keys(a.host, a.port)) do
          for _, y in ipairs(kb) do clash = clash or overlap(x, y) end
        end
      end
      if clash then
        problems[#problems + 1] = {
          where = b.where,
          message = ("%s: listen %s %s clashes with %s of %s at %s"):format(b.label,
            b.path and "path" or b.udp and "address udp" or "address", b.path or authority(b.host, b.port),
            a.path or authority(a.host, a.port), a.label, a.where),
        }
        break
      end
    end
  end
  return problems
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

-- Net::Server's syslog_logopt: openlog(3)'s options, "pid|ndelay" (or with commas or
-- spaces), normalised to "pid|ndelay".
local LOGOPTS = { pid = true, cons = true, ndelay = true, nowait = true, perror = true }
function _M.syslog_logopt(v)
  local words = {}
  for w in tostring(v):gmatch("[^|,%s]+") do
    if type(v) ~= "string" or not LOGOPTS[w] then
      return nil, "bad syslog_logopt '" .. tostring(v) .. "' (want pid, cons, ndelay, nowait or perror, joined by |)"
    end
    words[#words + 1] = w
  end
  if #words == 0 then return nil, "bad syslog_logopt '" .. tostring(v) .. "' (want pid, cons, ndelay, nowait or perror, joined by |)" end
  return table.concat(words, "|")
end

-- The access log's fields (src/accesslog.c has the same list): what a template may name.
_M.ACCESS_FIELDS = {
  "time", "proxy", "id", "client", "client_addr", "client_port", "target", "server", "sni", "alpn",
  "tls_version", "client_cert", "user", "bytes_in", "bytes_out", "duration", "connect_time",
  "negotiation_time", "end", "detail", "method", "url", "status",
}

-- access_log = { path = FILE | "syslog", format = "json" | "text" | "TEMPLATE %{field}" }
-- (format: "text" when left out); a path alone is a string.
function _M.access_log(v)
  if type(v) == "string" then v = { path = v } end
  if type(v) ~= "table" then return nil, "want { path = FILE | \"syslog\", format = \"json\" | \"text\" | TEMPLATE }, not " .. type(v) end
  for k in pairs(v) do
    if k ~= "path" and k ~= "format" then return nil, "unknown field '" .. tostring(k) .. "' (want path, format)" end
  end
  if type(v.path) ~= "string" or v.path == "" then return nil, "path: want a file or \"syslog\"" end
  local format = v.format or "text"
  if type(format) ~= "string" or format == "" then return nil, "format: want \"json\", \"text\" or a template with %{field}" end
  if format ~= "json" and format ~= "text" then
    local known = {}
    for _, f in ipairs(_M.ACCESS_FIELDS) do known[f] = true end
    for name in format:gsub("%%%%", ""):gmatch("%%{([^}]*)}") do
      if not known[name] then
        return nil, "format: unknown field %{" .. name .. "} (fields: " .. table.concat(_M.ACCESS_FIELDS, ", ") .. ")"
      end
    end
    if format:gsub("%%%%", ""):gsub("%%{[^}]*}", ""):find("%%{") then return nil, "format: a %{ without its }" end
  end
  return { path = v.path, format = format }
end

return _M
