-- What the TLS specs (86, 87, 88) share: openssl s_client as a client, ClientHellos made by
-- hand (any size, split over records and segments), and JA4 worked out by the spec itself
-- from a hello's bytes, independently of src/ja4.c.
local h = require "spec.helpers"
local bit = require "bit"

local _M = {}

-- openssl s_client to port, sending input once connected; its stdin stays open until its
-- output shows the end of the handshake (and the input echoed back, when there is some), or
-- until until() is true (when given), or it exits. Returns stdout .. stderr.
function _M.s_client(port, input, ...)
  local args = { ... }
  local until_fn = type(args[#args]) == "function" and table.remove(args) or nil
  local argv = { "timeout", "5", "openssl", "s_client", "-connect", "127.0.0.1:" .. port, unpack(args) }
  local want = input ~= "" and input:gsub("%p", "%%%0") or "Verify return code[^\n]*\n"
  local out, err = h.interact(argv, input, { want = function(so_far)
    return so_far:find(want) or (until_fn and until_fn())
  end })
  return out .. err
end

-- ---------------------------------------------------------------- bytes

local function u8(n) return string.char(n % 256) end
local function u16(n) return string.char(math.floor(n / 256) % 256, n % 256) end
local function u24(n) return string.char(math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) end
_M.u16 = u16

local function get16(s, i) return s:byte(i) * 256 + s:byte(i + 1) end

-- ---------------------------------------------------------------- hellos

-- A ClientHello handshake message (header included). opts: version (legacy, default
-- 0x0303), ciphers { n, ... }, extensions { { type, data }, ... } in order.
function _M.client_hello(opts)
  local ciphers = {}
  for i, c in ipairs(opts.ciphers) do ciphers[i] = u16(c) end
  local exts = {}
  for i, e in ipairs(opts.extensions) do exts[i] = u16(e[1]) .. u16(#e[2]) .. e[2] end
  local cs, ex = table.concat(ciphers), table.concat(exts)
  local body = u16(opts.version or 0x0303) .. string.rep("\x11", 32) .. u8(32) .. string.rep("\x22", 32)
               .. u16(#cs) .. cs .. "\1\0" .. u16(#ex) .. ex
  return "\1" .. u24(#body) .. body
end

-- Extension bodies.
function _M.sni(name) return u16(#name + 3) .. "\0" .. u16(#name) .. name end
function _M.alpn(list)
  local parts = {}
  for i, p in ipairs(list) do parts[i] = u8(#p) .. p end
  local l = table.concat(parts)
  return u16(#l) .. l
end
function _M.u16_list(list, len_bytes)      -- a list of 16-bit values with its length
  local parts = {}
  for i, v in ipairs(list) do parts[i] = u16(v) end
  local l = table.concat(parts)
  return (len_bytes == 1 and u8(#l) or u16(#l)) .. l
end

-- The handshake message hs in TLS handshake records, cut at the given sizes (the last
-- record takes the rest).
function _M.records(hs, cuts)
  local out, pos = {}, 1
  for i = 1, #cuts + 1 do
    local len = cuts[i] or (#hs - pos + 1)
    out[#out + 1] = "\22\3\1" .. u16(len) .. hs:sub(pos, pos + len - 1)
    pos = pos + len
  end
  assert(pos == #hs + 1, "cuts longer than the hello")
  return table.concat(out)
end

-- Sends bytes over a new connection to port in n TCP segments (TCP_NODELAY, each written
-- alone after the previous one left: a pause between them lets each go out by itself), then
-- reads until want. Returns what came back and how the read ended.
function _M.send_in_segments(port, bytes, n, want)
  local c = assert(h.connect(port, { nodelay = true }))
  local size = math.ceil(#bytes / n)
  for i = 1, n do
    assert(c:send(bytes:sub((i - 1) * size + 1, i * size)))
    h.sleep(0.02)              -- pacing, not a wait for something: the segments go apart
  end
  local out, how = c:read(want, 5)
  c:close()
  return out, how
end

-- ---------------------------------------------------------------- JA4, by the spec

local function grease(v) return bit.band(v, 0x0f0f) == 0x0a0a and bit.rshift(v, 8) == bit.band(v, 0xff) end

local function sha12(s)
  if s == "" then return "000000000000" end
  local path = h.write(h.tmpfile("ja4-input"), s)
  local p = io.popen("sha256sum " .. path)
  local out = p:read("*a")
  p:close()
  return out:sub(1, 12)
end

local VERSIONS = { [0x0304] = "13", [0x0303] = "12", [0x0302] = "11", [0x0301] = "10", [0x0300] = "s3" }

-- JA4 of a ClientHello message, following FoxIO's technical_details/JA4.md step by step;
-- also returns the two raw strings hashed (JA4_r's), for a failing spec to show.
function _M.ja4(hs)
  local p = 5
  local version = get16(hs, p)
  p = p + 2 + 32
  p = p + 1 + hs:byte(p)
  local ciphers = {}
  local n = get16(hs, p)
  for i = p + 2, p + n, 2 do
    local c = get16(hs, i)
    if not grease(c) then ciphers[#ciphers + 1] = ("%04x"):format(c) end
  end
  p = p + 2 + n
  p = p + 1 + hs:byte(p)
  local exts, count, sni, alpn, sigalgs, highest = {}, 0, "i", "00", {}, nil
  local ext_end = p + 2 + get16(hs, p)
  p = p + 2
  while p < ext_end do
    local t, len = get16(hs, p), get16(hs, p + 2)
    local d = hs:sub(p + 4, p + 3 + len)
    if not grease(t) then
      count = count + 1
      if t == 0 then sni = "d"
      elseif t == 16 then
        local v = d:sub(4, 3 + d:byte(3))
        if v:match("^%w") and v:match("%w$") then alpn = v:sub(1, 1) .. v:sub(-1)
        else alpn = ("%02x"):format(v:byte(1)):sub(1, 1) .. ("%02x"):format(v:byte(-1)):sub(2, 2) end
      end
      if t ~= 0 and t ~= 16 then exts[#exts + 1] = ("%04x"):format(t) end
      if t == 13 then
        for i = 3, 2 + get16(d, 1), 2 do
          local s = get16(d, i)
          if not grease(s) then sigalgs[#sigalgs + 1] = ("%04x"):format(s) end
        end
      elseif t == 43 then
        for i = 2, 1 + d:byte(1), 2 do
          local v = get16(d, i)
          if not grease(v) and (not highest or v > highest) then highest = v end
        end
      end
    end
    p = p + 4 + len
  end
  table.sort(ciphers)
  table.sort(exts)
  local raw_b = table.concat(ciphers, ",")
  local raw_c = table.concat(exts, ",") .. (#sigalgs > 0 and "_" .. table.concat(sigalgs, ",") or "")
  local a = ("t%s%s%02d%02d%s"):format(VERSIONS[highest or version] or "00", sni, math.min(#ciphers, 99),
                                       math.min(count, 99), alpn)
  return a .. "_" .. sha12(raw_b) .. "_" .. (#exts > 0 and sha12(raw_c) or "000000000000"), raw_b, raw_c
end

-- The ClientHello openssl s_client sent, from its -msg output (">>> ... ClientHello" and
-- the hex dump under it), as bytes.
function _M.hello_of_msg(out)
  local dump = out:match(">>> [^\n]*ClientHello\n(.-)\n[<>]")
  assert(dump, "no ClientHello in s_client -msg output:\n" .. out)
  local bytes = {}
  for hex in dump:gmatch("%x%x") do bytes[#bytes + 1] = string.char(tonumber(hex, 16)) end
  return table.concat(bytes)
end

return _M
