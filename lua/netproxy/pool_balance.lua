-- netproxy.pool_balance: how a pool chooses a server: the balancers (roundrobin, leastconn,
-- first, random, source, hash and a balance function), over the health and load each server
-- has in the shared table (src/pool.c). netproxy.pool calls them; they call nothing of it.
local core = require "netproxy.core"
local addr = require "netproxy.addr"
local bit = require "bit"

local tostring, ipairs, math_floor, math_random = tostring, ipairs, math.floor, math.random
local bxor, band, rshift, tobit, byte = bit.bxor, bit.band, bit.rshift, bit.tobit, string.byte
local table_sort = table.sort

local _M = {}

-- ---------------------------------------------------------------- shared state

local pool_up, pool_active, pool_state = core.pool_up, core.pool_active, core.pool_state

local function is_up(s)
  return not s.row or pool_up(s.row)
end

local function active(s)
  return s.row and pool_active(s.row) or 0
end

-- ---------------------------------------------------------------- balancers
-- Each gets the pool, a list (the normal servers, or the backups), the conn and the servers
-- this connection already tried (nil before a failure), and returns a server or nil.

-- A server at its max_conns (all workers) takes no one until a connection to it ends.
local function full(s)
  return s.max_conns and active(s) >= s.max_conns
end

local function usable(s, tried)
  return not (tried and tried[s]) and not s.out and is_up(s) and not full(s)
end

-- Whether a server would do but for its max_conns: the client then waits in the queue.
local function only_full(p, tried)
  for _, s in ipairs(p.servers) do
    if not (tried and tried[s]) and not s.out and is_up(s) and full(s) then return true end
  end
  return false
end

-- nginx's smooth weighted round robin: every candidate gains its weight, the richest is
-- chosen and pays the total. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
local function smooth(list, tried, only)
  local best, total = nil, 0
  for i = 1, #list do
    local s = list[i]
    if (not only or only[s]) and usable(s, tried) then
      s.cw = s.cw + s.weight
      total = total + s.weight
      if not best or s.cw > best.cw then best = s end
    end
  end
  if best then best.cw = best.cw - total end
  return best
end

local balancers = {}

function balancers.roundrobin(_, list, _, tried)
  return smooth(list, tried)
end

-- Fewest active connections for its weight; among equals, round robin.
function balancers.leastconn(_, list, _, tried)
  local low, ties = nil, nil
  for i = 1, #list do
    local s = list[i]
    if usable(s, tried) then
      local load = active(s) / s.weight
      if not low or load < low then low, ties = load, { [s] = true }
      elseif load == low then ties[s] = true end
    end
  end
  return ties and smooth(list, tried, ties)
end

-- HAProxy's "first": the first server in the order given that is up.
function balancers.first(_, list, _, tried)
  for i = 1, #list do
    if usable(list[i], tried) then return list[i] end
  end
end

-- Two random choices, the less loaded of the two (for its weight).
function balancers.random(_, list, _, tried)
  local n = 0
  for i = 1, #list do if usable(list[i], tried) then n = n + 1 end end
  if n == 0 then return end
  local function nth(k)
    for i = 1, #list do
      if usable(list[i], tried) then
        k = k - 1
        if k == 0 then return list[i] end
      end
    end
  end
  local a, b = nth(math_random(n)), nth(math_random(n))
  return active(b) * a.weight < active(a) * b.weight and b or a
end

-- 32-bit multiplication without a double losing bits: the high half of a done apart.
local function mul32(a, b)
  return tobit(band(a, 0xffff) * b + tobit(rshift(a, 16) * b) * 65536)
end

-- FNV-1a (32 bits), then murmur3's finaliser: addresses that differ in their last digit
-- land far apart on the ring.
local function hash(s)
  local h = tobit(2166136261)
  for i = 1, #s do h = mul32(bxor(h, byte(s, i)), 16777619) end
  h = mul32(bxor(h, rshift(h, 16)), 0x85ebca6b)
  h = mul32(bxor(h, rshift(h, 13)), 0xc2b2ae35)
  return bxor(h, rshift(h, 16))
end

local POINTS = 160   -- ring points per unit of weight

-- Consistent hashing: each server owns weight x POINTS points of a ring; a client address
-- goes to the first point at or after its hash whose server is usable. A server that leaves
-- gives its points' clients to their next points, and nobody else moves.
local function ring(list)
  local points = {}
  for _, s in ipairs(list) do
    for i = 1, s.weight * POINTS do points[#points + 1] = { h = hash(s.name .. "#" .. i), s = s } end
  end
  table_sort(points, function(a, b) return a.h < b.h end)
  return points
end

local function client_key(conn)
  local c = conn.client or ""
  local host = addr.split(c)
  return host or c
end

-- The first usable server at or after key's point on the ring of list.
local function on_ring(p, list, key, tried)
  local points = list == p.normal and p.ring or p.backup_ring
  local n = #points
  if n == 0 then return end
  local h = hash(key)
  local lo, hi = 1, n + 1
  while lo < hi do                 -- first point with points[i].h >= h
    local mid = math_floor((lo + hi) / 2)
    if points[mid].h < h then lo = mid + 1 else hi = mid end
  end
  for k = 0, n - 1 do
    local s = points[(lo - 1 + k) % n + 1].s
    if usable(s, tried) then return s end
  end
end

function balancers.source(p, list, conn, tried)
  return on_ring(p, list, client_key(conn), tried)
end

-- hash_key: what a connection is hashed by. A key the connection has not (no SNI, a function
-- that returned nil) falls back to its client address.
local HASH_KEYS = {
  source = client_key,
  sni = function(conn) return conn.sni end,
}

-- balance = "hash": the same ring as source (every instance with the same servers picks the
-- same one for a key; removing 1 of N servers moves about 1/N of the keys), by hash_key.
function balancers.hash(p, list, conn, tried)
  local key = p.key_of(conn)
  if key == nil or key == "" then key = client_key(conn) end
  return on_ring(p, list, tostring(key), tried)
end

-- balance = function(servers, conn): the servers as the function sees them, state filled in.
local function by_function(p, conn, tried)
  for i, s in ipairs(p.servers) do
    local v = p.views[i]
    local up, act, fails = true, 0, 0
    if s.row then up, act, fails = pool_state(s.row) end
    v.up = up and not s.out and not (tried and tried[s]) and not full(s) or false
    v.active, v.failures, v.tried, v.full = act, fails, tried and tried[s] or false, full(s) or false
  end
  local chosen = p.balance(p.views, conn)
  if chosen == nil then return nil, "the balance function chose no server" end
  local s = p.by_view[chosen]
  if not s then return nil, "the balance function returned " .. tostring(chosen) .. ", not one of its servers" end
  return s
end

_M.balancers = balancers
_M.HASH_KEYS = HASH_KEYS
_M.full = full
_M.only_full = only_full
_M.hash = hash
_M.ring = ring
_M.client_key = client_key
_M.by_function = by_function

return _M
