-- netproxy.pool_dns: the servers of a pool from DNS (resolve, srv): the lookup loop that
-- writes each answer into the shared table (src/pool.c) as servers added and deleted.
local core = require "netproxy.core"
local addr = require "netproxy.addr"
local dns = require "netproxy.dns"
local pool_config = require "netproxy.pool_config"
local pool_checks = require "netproxy.pool_checks"

local tostring, ipairs, pairs = tostring, ipairs, pairs
local concat, table_sort = table.concat, table.sort
local check_new = pool_checks.check_new

local _M = {}

_M.RESOLVE_TIMEOUT = 2     -- one query's wait for its answer, per nameserver

-- ---------------------------------------------------------------- servers from DNS
-- One process (the one that checks) asks DNS and writes the answer into the shared table as
-- servers added and deleted at runtime, as netproxy ctl does; every worker's pool takes the
-- change at its next choice (sync). A deleted server drains: its open connections go on.

local function srv_weight(w)
  return math.max(1, math.min(pool_config.MAX_WEIGHT, w))   -- SRV's 0..65535 within ours (0: rarely, so 1)
end

-- The answer as servers: { ["ip:port"] = { weight =, backup = } } and its lowest TTL, or nil
-- and why. SRV: the lowest priority's targets are the normal servers, the others backups.
local function dns_servers(d)
  local set, ttl = {}, math.huge
  if d.kind == "resolve" then
    local list, err = dns.addresses(d.name, _M.RESOLVE_TIMEOUT)
    if not list then return nil, err end
    for _, a in ipairs(list) do
      set[addr.join(a.address, d.port)] = { weight = 1, backup = false }
      ttl = math.min(ttl, a.ttl)
    end
    return set, ttl
  end
  local recs, err = dns.srv(d.name, _M.RESOLVE_TIMEOUT)
  if not recs then return nil, err end
  local lowest = math.huge
  for _, r in ipairs(recs) do lowest = math.min(lowest, r.priority) end
  table_sort(recs, function(a, b) return a.priority < b.priority end)
  for _, r in ipairs(recs) do
    ttl = math.min(ttl, r.ttl)
    for _, a in ipairs(r.addresses) do
      ttl = math.min(ttl, a.ttl)
      local name = addr.join(a.address, r.port)
      set[name] = set[name] or { weight = srv_weight(r.weight), backup = r.priority > lowest }
    end
  end
  return set, ttl, err
end

-- Writes set into the shared rows of p's proxy: added, deleted, weights and tiers changed.
-- Returns the names added and the names deleted.
local function apply_servers(p, set)
  local have, plus, minus = {}, {}, {}
  for _, r in ipairs(core.pool_rows(p.proxy)) do
    local _, w, added, deleted = core.pool_control(r.row)
    -- the servers of the last answer (an operator's, added 1 or 2, are left alone)
    if added >= 3 and not deleted then have[r.server] = { row = r.row, weight = w, backup = added == 4 } end
  end
  for name, want in pairs(set) do
    local h = have[name]
    if not h or h.backup ~= want.backup then
      if core.pool_add(p.proxy, name, want.weight, want.backup, true) then plus[#plus + 1] = name
      else core.log("error", ("%s: dns: cannot add server %s: the pool table is full"):format(p.proxy, name)) end
    elseif h.weight ~= want.weight then
      core.pool_set(h.row, nil, want.weight)
    end
  end
  for name, h in pairs(have) do
    if not set[name] then
      core.pool_delete(h.row)
      minus[#minus + 1] = name
    end
  end
  table_sort(plus)
  table_sort(minus)
  return plus, minus
end

-- "3 servers (1 backup)"
local function count_of(set)
  local n, b = 0, 0
  for _, want in pairs(set) do
    n = n + 1
    if want.backup then b = b + 1 end
  end
  return ("%d server%s%s"):format(n, n == 1 and "" or "s", b > 0 and (" (%d backup%s)"):format(b, b == 1 and "" or "s") or "")
end

-- A pool's DNS loop, in a task of its own, until a newer checker starts: asks, applies, and
-- sleeps the answer's TTL (within resolve_min..resolve_max). A failed lookup keeps the
-- servers there are and is logged; it is tried again after resolve_min, then twice as long
-- each time, up to resolve_max.
local function resolve_loop(p, epoch)
  local d, what = p.dns, p.dns.kind == "srv" and "srv " .. p.dns.name or "resolve " .. p.dns.name
  local retry = p.resolve_min
  while core.pool_epoch() == epoch do
    local ok, set, ttl, partial = pcall(dns_servers, d)   -- a bug here is a failed lookup, not the loop's end
    if not ok then set, ttl = nil, set end
    local delay
    if set then
      local plus, minus = apply_servers(p, set)
      delay = math.max(p.resolve_min, math.min(p.resolve_max, ttl))
      if #plus > 0 or #minus > 0 then
        core.log("notice", ("%s: dns %s: %s%s%s, next lookup in %gs"):format(p.proxy, what, count_of(set),
          #plus > 0 and ", added " .. concat(plus, ",") or "",
          #minus > 0 and ", removed (draining) " .. concat(minus, ",") or "", delay))
      end
      if partial then core.log("warning", ("%s: dns %s: targets left out: %s"):format(p.proxy, what, partial)) end
      retry = p.resolve_min
      if p.check then check_new(p, epoch) end
    else
      core.log("warning", ("%s: dns %s: lookup failed: %s; the last servers stay (next try in %gs)"):format(
        p.proxy, what, tostring(ttl), retry))
      delay, retry = retry, math.min(p.resolve_max, retry * 2)
    end
    if core.pool_epoch() ~= epoch then break end
    core.sleep(delay)
  end
end

_M.resolve_loop = resolve_loop

return _M
