-- netproxy.dns: a small DNS client for the pools that name DNS records (netproxy.pool's
-- `servers = { resolve = "name:port" }` and `{ srv = "_app._tcp.name" }`). libevent's evdns
-- gives neither the TTLs nor SRV records, so the queries are made here, over UDP
-- (core.connect_udp), to the nameservers the server uses (server{ resolvers } or
-- /etc/resolv.conf: core.nameservers()). One question per query (A, AAAA or SRV); the answer
-- is checked (its id and question, every length within the packet, compression pointers
-- bounded) and a malformed one is an error, never a crash. A truncated answer (TC) is an
-- error too: there is no TCP fallback, so an answer must fit in 1232 bytes (EDNS0).
local byte, char, sub = string.byte, string.char, string.sub
local concat = table.concat
local math_random, math_min = math.random, math.min

local _M = {}

_M.A, _M.AAAA, _M.SRV, _M.CNAME = 1, 28, 33, 5
local TYPE_NAMES = { [1] = "A", [28] = "AAAA", [33] = "SRV" }
local RCODES = { [1] = "format error", [2] = "server failure", [3] = "no such name",
                 [4] = "not implemented", [5] = "refused" }
local MAX_TTL = 604800          -- RFC 2181: a TTL above 2^31 - 1 is 0; a week is enough here
local UDP_SIZE = 1232           -- the EDNS0 size we announce (the DNS flag day's)

local function u16(s, i) local a, b = byte(s, i, i + 1) return a * 256 + b end
local function u32(s, i) local a, b, c, d = byte(s, i, i + 3) return ((a * 256 + b) * 256 + c) * 256 + d end

-- A name in wire form, or nil and why: labels of 1..63 bytes, 253 bytes at most.
function _M.encode_name(name)
  name = name:gsub("%.$", "")
  if name == "" or #name > 253 then return nil, "bad name '" .. name .. "'" end
  local out = {}
  for label in (name .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 then return nil, "bad name '" .. name .. "': empty or long label" end
    if label:find("[^%w%-_]") then return nil, "bad name '" .. name .. "': '" .. label .. "'" end
    out[#out + 1] = char(#label) .. label
  end
  return concat(out) .. "\0"
end

-- The query packet for name and qtype, with id; an OPT record announces UDP_SIZE.
function _M.query(id, name, qtype)
  local wire, err = _M.encode_name(name)
  if not wire then return nil, err end
  return char(math.floor(id / 256), id % 256, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1) .. wire ..
         char(0, qtype, 0, 1) .. char(0, 0, 41, math.floor(UDP_SIZE / 256), UDP_SIZE % 256, 0, 0, 0, 0, 0, 0)
end

-- The name at offset i of packet s (compression pointers followed, at most 64 of them,
-- only backwards): the name (lower case, dotted) and the offset after it in the record.
local function read_name(s, i)
  local labels, after, jumps, n = {}, nil, 0, #s
  while true do
    if i > n then return nil, "name past the end" end
    local len = byte(s, i)
    if len == 0 then
      i = i + 1
      break
    elseif len >= 192 then
      if i + 1 > n then return nil, "pointer past the end" end
      local to = (len - 192) * 256 + byte(s, i + 1) + 1
      if to >= i then return nil, "pointer forwards" end
      jumps = jumps + 1
      if jumps > 64 then return nil, "pointer loop" end
      after = after or i + 2
      i = to
    elseif len >= 64 then
      return nil, "bad label length"
    else
      if i + len > n then return nil, "label past the end" end
      labels[#labels + 1] = sub(s, i + 1, i + len)
      i = i + 1 + len
      if #labels > 127 then return nil, "name too long" end
    end
  end
  return concat(labels, "."):lower(), after or i
end

-- One resource record's data, by type: a table, or nil and why.
local function rdata(s, qtype, i, len)
  if qtype == _M.A then
    if len ~= 4 then return nil, "A record of " .. len .. " bytes" end
    return { address = ("%d.%d.%d.%d"):format(byte(s, i, i + 3)) }
  elseif qtype == _M.AAAA then
    if len ~= 16 then return nil, "AAAA record of " .. len .. " bytes" end
    local core = package.loaded["netproxy.core"]
    if core and core.unpack_ip then return { address = core.unpack_ip(sub(s, i, i + 15)) } end   -- "::1"
    local w = {}
    for k = 0, 7 do w[k + 1] = ("%x"):format(u16(s, i + 2 * k)) end
    return { address = concat(w, ":") }
  elseif qtype == _M.SRV then
    if len < 7 then return nil, "SRV record of " .. len .. " bytes" end
    local target, after = read_name(s, i + 6)
    if not target then return nil, "SRV target: " .. after end
    if after ~= i + len then return nil, "SRV record's length is not its target's" end
    return { priority = u16(s, i), weight = u16(s, i + 2), port = u16(s, i + 4), target = target }
  end
  return {}
end

-- parse(packet, id, name, qtype) -> { answers = { { type, name, ttl, ... } }, additional =
-- { ... } } or nil and why. Records of other types are skipped (CNAMEs: a resolver puts the
-- chain's end in the same answer). The TTLs are bounded to MAX_TTL.
function _M.parse(s, id, name, qtype)
  if type(s) ~= "string" or #s < 12 then return nil, "short answer" end
  if id and u16(s, 1) ~= id then return nil, "not our id" end
  local flags = u16(s, 3)
  if flags < 32768 then return nil, "not an answer" end
  if math.floor(flags / 512) % 2 == 1 then return nil, "truncated answer (over " .. UDP_SIZE .. " bytes)" end
  local rcode = flags % 16
  if rcode ~= 0 then return nil, RCODES[rcode] or ("rcode " .. rcode) end
  local qd, an, ns, ar = u16(s, 5), u16(s, 7), u16(s, 9), u16(s, 11)
  if qd ~= 1 then return nil, qd .. " questions" end
  local qname, i = read_name(s, 13)
  if not qname then return nil, "question: " .. i end
  if i + 3 > #s then return nil, "question past the end" end
  if name and (qname ~= name:lower():gsub("%.$", "") or u16(s, i) ~= qtype) then return nil, "not our question" end
  i = i + 4
  local out = { answers = {}, additional = {} }
  for k = 1, an + ns + ar do
    local owner, j = read_name(s, i)
    if not owner then return nil, "record " .. k .. ": " .. j end
    if j + 9 > #s then return nil, "record " .. k .. " past the end" end
    local rtype, ttl, len = u16(s, j), u32(s, j + 4), u16(s, j + 8)
    if j + 10 + len - 1 > #s then return nil, "record " .. k .. "'s data past the end" end
    if TYPE_NAMES[rtype] and u16(s, j + 2) == 1 then
      local r, err = rdata(s, rtype, j + 10, len)
      if not r then return nil, "record " .. k .. ": " .. err end
      r.type, r.name = TYPE_NAMES[rtype], owner
      r.ttl = ttl >= 2147483648 and 0 or math_min(ttl, MAX_TTL)
      local list = k <= an and out.answers or k > an + ns and out.additional or nil
      if list then list[#list + 1] = r end
    end
    i = j + 10 + len
  end
  return out
end

-- The nameservers to ask: "ip:port" (core.nameservers(): the server's resolvers), else
-- those of /etc/resolv.conf on port 53.
local function nameservers()
  local core = require "netproxy.core"
  local list = core.nameservers and core.nameservers() or {}
  if #list > 0 then return list end
  for line in (io.open("/etc/resolv.conf") and io.lines("/etc/resolv.conf") or function() end) do
    local ns = line:match("^%s*nameserver%s+(%S+)")
    if ns then list[#list + 1] = ns:find(":") and "[" .. ns .. "]:53" or ns .. ":53" end
  end
  if #list == 0 then list[1] = "127.0.0.1:53" end
  return list
end

-- A query id nobody off the path can guess (the source port is the kernel's random one too).
local function new_id()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(2)
  if f then f:close() end
  if b and #b == 2 then return u16(b, 1) end
  return math_random(0, 65535)
end

-- ask(name, qtype, timeout) -> parsed answer, or nil and why: each nameserver in turn, once.
function _M.ask(name, qtype, timeout)
  local core = require "netproxy.core"
  local addr = require "netproxy.addr"
  local why = "no nameserver"
  for _, ns in ipairs(nameservers()) do
    local host, port = addr.split(ns)
    local id = new_id()
    local packet, err = _M.query(id, name, qtype)
    if not packet then return nil, err end
    local sock
    sock, err = core.connect_udp(host, port, { timeout = timeout })
    if sock then
      local deadline = core.now() + timeout
      local ok
      ok, err = sock:write(packet, timeout)
      while ok do
        local left = deadline - core.now()
        if left <= 0 then err = "timeout" break end
        local d, rerr = sock:read(65536, left)
        if not d then err = rerr break end
        local r, perr = _M.parse(d, id, name, qtype)
        if r then sock:close() return r end
        -- a stray datagram (another id, another question) is dropped; a bad answer is not
        if perr ~= "not our id" and perr ~= "not our question" then err = perr break end
      end
      sock:close()
    end
    why = ns .. ": " .. tostring(err)
  end
  return nil, why
end

-- Addresses of name: A and AAAA. Returns { { address =, ttl = } ... }, or nil and why (both
-- lookups failed, or neither gave an address).
function _M.addresses(name, timeout)
  local list, errs = {}, {}
  for _, qtype in ipairs({ _M.A, _M.AAAA }) do
    local r, err = _M.ask(name, qtype, timeout)
    if r then
      for _, a in ipairs(r.answers) do
        if a.type == TYPE_NAMES[qtype] then list[#list + 1] = { address = a.address, ttl = a.ttl } end
      end
    else
      errs[#errs + 1] = TYPE_NAMES[qtype] .. ": " .. err
    end
  end
  if #list == 0 then return nil, #errs > 0 and concat(errs, "; ") or "no address" end
  return list
end

-- The SRV records of name with their targets' addresses: { { priority, weight, port, target,
-- ttl, addresses = { ... } } }, or nil and why. A target's addresses come from the answer's
-- additional section when it has them, else from its own lookups; a target that does not
-- resolve is left out (and said in the second result).
function _M.srv(name, timeout)
  local r, err = _M.ask(name, _M.SRV, timeout)
  if not r then return nil, err end
  local extra, out, skipped = {}, {}, {}
  for _, a in ipairs(r.additional) do
    if a.address then
      extra[a.name] = extra[a.name] or {}
      local l = extra[a.name]
      l[#l + 1] = { address = a.address, ttl = a.ttl }
    end
  end
  for _, rec in ipairs(r.answers) do
    if rec.type == "SRV" and rec.target ~= "" then   -- "." : the service is not offered there
      local addrs, aerr = extra[rec.target], nil
      if not addrs then addrs, aerr = _M.addresses(rec.target, timeout) end
      if addrs then
        rec.addresses = addrs
        out[#out + 1] = rec
      else
        skipped[#skipped + 1] = rec.target .. ": " .. aerr
      end
    end
  end
  if #out == 0 then return nil, #skipped > 0 and concat(skipped, "; ") or "no SRV record" end
  return out, #skipped > 0 and concat(skipped, "; ") or nil
end

return _M
