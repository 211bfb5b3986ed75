-- netproxy.pool: several servers behind one `to`. A pool picks a server for each connection
-- (balance), connects through the `to` connector and, when that fails, tries the next one
-- (retries) within the client's connect_timeout, so the bytes a `from` connector read ahead
-- are still unsent and go to the server finally reached. Health (passive failures, active
-- checks) and load (active connections) live in a table in shared memory (src/pool.c) that
-- every worker reads, keyed by proxy name and server address.
--
-- config.lua builds a pool for every `to` that has `servers`; custom connectors get it for
-- free (the servers fill their host and port, or the fields their module names in
-- `pool_fields`). A connector may also drive a pool itself: pool.new(spec, proxy_name) and
-- p:connect(conn, function(server, conn) return sock | nil, err end).
local core = require "netproxy.core"
local addr = require "netproxy.addr"
local check = require "netproxy.check"
local luapattern = require "netproxy.luapattern"
local dns = require "netproxy.dns"
local bit = require "bit"

local type, tostring, tonumber, ipairs, pairs, math_floor, math_random =
  type, tostring, tonumber, ipairs, pairs, math.floor, math.random
local bxor, band, rshift, tobit, byte = bit.bxor, bit.band, bit.rshift, bit.tobit, string.byte
local concat, table_sort = table.concat, table.sort

local _M = {}
local Pool = {}
Pool.__index = Pool

_M.MAX_WEIGHT = 256
_M.DEFAULTS = { balance = "roundrobin", retries = 2, max_fails = 1, fail_timeout = 10, max_queue = 100 }
_M.CHECK_DEFAULTS = { interval = 2, timeout = 1, rise = 2, fall = 3 }

-- The `to` parameters that belong to the pool, not to the connector.
_M.PARAMS = { servers = true, balance = true, hash_key = true, retries = true, max_fails = true,
              fail_timeout = true, check = true, resolve_min = true, resolve_max = true,
              max_conns = true, max_queue = true }
-- servers from DNS: re-resolved at the answer's TTL, within these bounds (seconds)
_M.RESOLVE_DEFAULTS = { resolve_min = 1, resolve_max = 300 }
_M.RESOLVE_TIMEOUT = 2     -- one query's wait for its answer, per nameserver
-- max_conns: a client finding every server full waits in the pool's queue, looking again
-- this often (other workers' closes are seen only by looking), up to the proxy's queue_timeout
_M.QUEUE_STEP = 0.02
_M.FULL = "every server is full (max_conns)"   -- the from connectors answer it with 503 / 0x01

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

-- ---------------------------------------------------------------- runtime control
-- netproxy ctl and core.set_server write a server's state (ready, drain, maint), its weight
-- and servers added or deleted into the shared table (src/pool.c) and count the change; each
-- pool compares the count at its next choice and reads its rows again, so every worker takes
-- a change at once, and a pool made by a reload or an upgraded binary starts from it.

local function add_view(p, s)
  local v = { name = s.name, weight = s.weight, backup = s.backup, up = true, active = 0, failures = 0 }
  for k, x in pairs(s.fields) do v[k] = x end
  v.host, v.port = v.host or v.proxy_host or v.path, v.port or v.proxy_port
  p.views[#p.views + 1], p.by_view[v], s.view = v, s, v
end

local function place(p, s)
  p.servers[#p.servers + 1] = s
  local list = s.backup and p.backups or p.normal
  list[#list + 1] = s
  add_view(p, s)
end

-- A server added at runtime: its connector table is the first server's with its own fields
-- (in a pool from DNS, the one checked with the DNS name as its host).
local entry, dns_form
local function added_server(p, name, row, backup)
  local s = entry(name, p.fields or { "host", "port" })
  if not s then return end
  s.cw, s.row, s.backup, s.added, s.max_conns = 0, row, backup, true, p.max_conns
  local first = p.servers[1] and p.servers[1].conf or p.template and p.template.conf
  if first then
    s.conf = {}
    for k, v in pairs(first) do s.conf[k] = v end
    for k, v in pairs(s.fields) do s.conf[k] = v end
    -- TLS to a server of `resolve`: the DNS name is the SNI and the name verified, not the
    -- address (with srv, the config says them: a target's name is not the service's)
    local tls = first._tls_names
    if tls and p.dns and p.dns.kind == "resolve" then
      s.conf.sni, s.conf.verify_name = first.sni or tls.sni, first.verify_name or tls.verify_name
    end
  end
  place(p, s)
  return s
end

-- A server added again as a backup or as a normal one (an SRV record's priority changed).
local function move(p, s, backup)
  local from, to = s.backup and p.backups or p.normal, backup and p.backups or p.normal
  for i = #from, 1, -1 do if from[i] == s then table.remove(from, i) end end
  to[#to + 1] = s
  s.backup, s.view.backup = backup, backup
end

function Pool:sync()
  local pool_changes = core.pool_changes
  if not pool_changes then return end
  local n = pool_changes()
  if n == self.changes then return end
  self.changes = n
  local known = {}
  for _, s in ipairs(self.servers) do known[s.name] = s end
  for _, r in ipairs(core.pool_rows(self.proxy)) do
    local state, w, added, deleted = core.pool_control(r.row)
    local s = known[r.server]
    -- added 1, 2 (a backup): by an operator; 3, 4: from a DNS answer, only for a pool from DNS
    -- (a reload that lists the servers instead leaves the old answer out)
    local backup = added == 2 or added == 4
    if added >= 3 and not self.dns then added = 0 end
    if not s and added > 0 and not deleted then s = added_server(self, r.server, r.row, backup) end
    if s and s.added and added > 0 and backup ~= s.backup then move(self, s, backup) end
    if s then
      s.state = deleted and "deleted" or state
      s.out = deleted or state ~= "ready"
      s.weight = w > 0 and w or s.conf_weight or s.weight
      s.view.weight, s.view.state = s.weight, s.state
    end
  end
  if self.balance == "source" or self.balance == "hash" then self.ring, self.backup_ring = ring(self.normal), ring(self.backups) end
end

-- The server for this attempt: a normal one, else a backup; nil and why when none will do.
function Pool:pick(conn, tried)
  self:sync()
  if type(self.balance) == "function" then return by_function(self, conn, tried) end
  local choose = balancers[self.balance]
  local s = choose(self, self.normal, conn, tried)
  if not s and #self.backups > 0 then s = choose(self, self.backups, conn, tried) end
  if s then return s end
  if only_full(self, tried) then return nil, _M.FULL end
  if tried then return nil, "no server left to try" end
  return nil, "every server is down or out (drain, maint)"
end

-- ---------------------------------------------------------------- connecting

local function target_text(name, failed, via)
  if via then name = via .. " via " .. name end
  if not failed then return name end
  return name .. " failed=" .. concat(failed, ",")
end

-- A server with max_conns is taken (a slot of its shared count, atomically) before its
-- connect: nil, FULL when another worker took the last slot since the pick.
local function take(s)
  if s.max_conns and s.row and not core.pool_take(s.row, s.max_conns) then return nil, _M.FULL end
  return s
end

-- The server for an attempt; when every one is full, the client waits in the pool's queue
-- (at most max_queue clients, all workers; past it: refused at once) up to queue_timeout,
-- looking again every QUEUE_STEP. The connection's end (negotiation_timeout, a kill) leaves
-- the queue too (the C core holds its place). Returns server | nil, why.
function Pool:wait_pick(conn, tried, queue_timeout)
  local s, why = self:pick(conn, tried)
  if s then s, why = take(s) end
  if s or why ~= _M.FULL then return s, why end
  if not self.queue or self.max_queue == 0 or (queue_timeout or 0) <= 0 then return nil, _M.FULL end
  if not core.pool_wait(self.queue, self.max_queue) then
    return nil, ("%s and %d clients wait already (max_queue)"):format(_M.FULL, self.max_queue)
  end
  local deadline = core.now() + queue_timeout
  repeat
    if not core.sleep(math.min(_M.QUEUE_STEP, math.max(0, deadline - core.now()))) then break end
    s, why = self:pick(conn, tried)
    if s then s, why = take(s) end
  until s or why ~= _M.FULL or core.now() >= deadline
  core.pool_wait()
  if not s and why == _M.FULL then why = ("%s; waited %gs (queue_timeout)"):format(_M.FULL, queue_timeout) end
  return s, why
end

-- p:connect(conn, connect_one) -> sock, server | nil, err. connect_one(server, conn) reaches
-- one server; conn.connect_timeout is then this attempt's share of the client's
-- connect_timeout: the time left divided by the attempts left (1 + retries at most, one per
-- server).
-- via: what the servers are asked to reach, when they are proxies (the log line says
-- "TARGET via PROXY"). queue_timeout: how long a client may wait when every server is at its
-- max_conns (the proxy's; none when not given).
function Pool:connect(conn, connect_one, via, queue_timeout)
  local timeout = conn.connect_timeout
  local deadline
  local tried, failed, last
  local attempts = math.max(1, math.min(self.retries + 1, #self.servers))
  for done = 0, attempts - 1 do
    local s, why = self:wait_pick(conn, tried, queue_timeout)
    if not s then last = last or why break end
    deadline = deadline or core.now() + timeout     -- (the time in the queue is not connect time)
    local left = deadline - core.now()
    if left <= 0 then
      if s.max_conns and s.row then core.pool_give() end
      last = "connect_timeout spent"
      break
    end
    -- each attempt gets its share of the time left, so that a server that swallows SYNs
    -- cannot eat the whole of it
    conn.connect_timeout = left / (attempts - done)
    core.set_target(target_text(s.name, failed, via))
    local sock, err = connect_one(s, conn)
    conn.connect_timeout = timeout
    if sock then
      if s.row then core.pool_connected(s.row) end
      return sock, s
    end
    if s.max_conns and s.row then core.pool_give() end
    tried, failed = tried or {}, failed or {}
    tried[s] = true
    failed[#failed + 1] = s.name
    last = s.name .. ": " .. tostring(err)
    if s.row and core.pool_failed(s.row, self.max_fails, self.fail_timeout) then
      conn:log("warning", "server %s down for %gs after %d failed connect%s", s.name, self.fail_timeout,
               self.max_fails, self.max_fails > 1 and "s" or "")
    end
  end
  core.set_target(target_text("none", failed, via))
  if not failed then conn:log("warning", "no server: %s", last) end
  return nil, "no server: " .. tostring(last)
end

-- ---------------------------------------------------------------- checking a config

local function weight(v)
  local n = tonumber(v)
  if not n or n ~= math_floor(n) or n < 1 or n > _M.MAX_WEIGHT then
    return nil, ("weight %s out of range (want 1..%d)"):format(tostring(v), _M.MAX_WEIGHT)
  end
  return n
end

-- One entry of servers: "host:port" or { host =, port =, weight =, backup = } (fields are
-- the connector's: { "host", "port" }, { "proxy_host", "proxy_port" } or { "path" }).
function entry(e, fields)
  local s = { weight = 1, backup = false, fields = {} }
  local f1, f2 = fields[1], fields[2]
  if type(e) == "string" then
    if f2 then
      local host, port = addr.split(e)
      if not host then return nil, "'" .. e .. "': " .. port end
      e = { [f1] = host, [f2] = port }
    else
      e = { [f1] = e }
    end
  elseif type(e) ~= "table" then
    return nil, "want \"HOST:PORT\" or a table, not " .. type(e)
  else
    -- a table says host and port by those names, whatever the connector calls them
    local t = {}
    for k, v in pairs(e) do t[k] = v end
    if f2 and f1 ~= "host" then
      t[f1], t[f2], t.host, t.port = t[f1] or t.host, t[f2] or t.port, nil, nil
    end
    e = t
  end
  for k, v in pairs(e) do
    if k == "weight" then
      local w, err = weight(v)
      if not w then return nil, err end
      s.weight = w
    elseif k == "backup" then
      if type(v) ~= "boolean" then return nil, "backup: want true or false" end
      s.backup = v
    elseif k == "max_conns" then
      local n, err = check.count(v)
      if n == nil then return nil, "max_conns: " .. err end
      s.max_conns = n        -- 0: no cap (over the `to`'s max_conns)
    elseif k == f1 or k == f2 then
      local ok, err
      if k == "port" or k == "proxy_port" then ok, err = check.port(v)
      elseif k == "path" then ok, err = check.string(v)
      else ok, err = check.host(v) end
      if ok == nil then return nil, k .. ": " .. err end
      if ok == 0 and (k == "port" or k == "proxy_port") then return nil, "port 0 is not a port to connect to" end
      s.fields[k] = ok
    else
      return nil, "unknown parameter '" .. tostring(k) .. "'"
    end
  end
  for _, f in ipairs(fields) do
    if s.fields[f] == nil then return nil, "missing " .. (f:gsub("^proxy_", "")) end
  end
  s.name = f2 and addr.join(s.fields[f1], s.fields[f2]) or s.fields[f1]
  return s
end

-- servers = { resolve = "NAME:PORT" } or { srv = "_service._proto.NAME" }: the DNS name and
-- a template server (the name as its host: the connector checks it, a server found later
-- copies its table).
function dns_form(t, fields)
  local f1, f2 = fields[1], fields[2]
  if not f2 then return nil, "resolve and srv want a connector with a host and a port (not a path)" end
  for k in pairs(t) do
    if k ~= "resolve" and k ~= "srv" then
      return nil, "unknown parameter '" .. tostring(k) .. "' next to resolve/srv"
    end
  end
  if t.resolve ~= nil and t.srv ~= nil then return nil, "resolve or srv, not both" end
  local d = { template = { weight = 1, backup = false, fields = {} } }
  if t.resolve ~= nil then
    local host, port = addr.split(t.resolve)
    if not host then return nil, "resolve: '" .. tostring(t.resolve) .. "': " .. tostring(port) end
    if port == 0 then return nil, "resolve: port 0 is not a port to connect to" end
    local ok = check.host(host)
    local wire, err = dns.encode_name(host)
    if not ok or host:find(":", 1, true) or host:match("^[%d%.]+$") or not wire then
      return nil, "resolve: '" .. host .. "' is not a DNS name" .. (err and " (" .. err .. ")" or "")
    end
    d.kind, d.name, d.port = "resolve", host, port
  else
    if type(t.srv) ~= "string" then return nil, "srv: want \"_service._proto.NAME\"" end
    local wire, err = dns.encode_name(t.srv)
    local domain = t.srv:match("^_[%w%-]+%._[%a]+%.(.+)$")
    if not wire or not domain then
      return nil, "srv: '" .. t.srv .. "' is not \"_service._proto.NAME\"" .. (err and " (" .. err .. ")" or "")
    end
    d.kind, d.name, d.port, d.host = "srv", t.srv, 1, domain
  end
  d.template.fields[f1], d.template.fields[f2] = d.host or d.name, d.port
  d.template.name = d.kind == "resolve" and t.resolve or t.srv
  return d
end

-- A udp pool's check sends a datagram (send) and waits for the reply (matching expect, when
-- given): without send there is nothing to wait for, as a connect is for TCP.
local function check_check(v, datagram)
  if type(v) == "function" then
    if jit then jit.off(v, true) end
    return { fn = v, interval = _M.CHECK_DEFAULTS.interval, timeout = _M.CHECK_DEFAULTS.timeout,
             rise = _M.CHECK_DEFAULTS.rise, fall = _M.CHECK_DEFAULTS.fall }
  end
  if type(v) ~= "table" then return nil, "want a table { interval =, timeout =, rise =, fall =, send =, expect = } or a function(sock, server)" end
  local c = {}
  for k, d in pairs(_M.CHECK_DEFAULTS) do c[k] = d end
  for k, x in pairs(v) do
    if k == "interval" or k == "timeout" then
      local n = tonumber(x)
      if not n or n <= 0 then return nil, k .. ": want seconds > 0" end
      c[k] = n
    elseif k == "rise" or k == "fall" then
      local n = tonumber(x)
      if not n or n ~= math_floor(n) or n < 1 then return nil, k .. ": want an integer >= 1" end
      c[k] = n
    elseif k == "send" then
      if type(x) ~= "string" then return nil, "send: want a string" end
      c.send = x
    elseif k == "expect" then
      local ok, err = luapattern.check(x)
      if not ok then return nil, "expect: bad pattern: " .. err end
      c.expect = x
    elseif k == "fn" then
      if type(x) ~= "function" then return nil, "fn: want a function(sock, server)" end
      if jit then jit.off(x, true) end
      c.fn = x
    else
      return nil, "unknown parameter '" .. tostring(k) .. "'"
    end
  end
  if datagram and not c.fn and not c.send then
    return nil, "send: required for udp (a check sends one datagram and waits for a reply" ..
                (c.expect and " matching expect" or "") .. "), or give a function(sock, server)"
  end
  return c
end

-- servers = { resolve = } or { srv = }, and resolve_min, resolve_max: into spec.
local function check_dns(conf, fields, spec, say)
  local list = conf.servers
  if type(list) ~= "table" or (list.resolve == nil and list.srv == nil) then
    return say("resolve_min, resolve_max: only with servers = { resolve = \"NAME:PORT\" } or { srv = \"_service._proto.NAME\" }")
  end
  local d, err = dns_form(list, fields)
  if not d then say("servers: %s", err)
  else spec.dns, spec.servers, spec.template = d, {}, d.template end
  for _, k in ipairs({ "resolve_min", "resolve_max" }) do
    local v = conf[k] == nil and _M.RESOLVE_DEFAULTS[k] or tonumber(conf[k])
    if not v or v <= 0 then say("%s: want seconds > 0", k) else spec[k] = v end
  end
  if spec.resolve_min and spec.resolve_max and spec.resolve_min > spec.resolve_max then
    say("resolve_min (%g) is above resolve_max (%g)", spec.resolve_min, spec.resolve_max)
  end
end

-- check(conf, fields [, datagram]) -> spec, or nil and a list of problems. spec: the servers
-- (each with the connector fields it fills) and the pool's settings, defaults applied.
-- datagram: the servers are UDP servers (a udp to: its checks send datagrams).
function _M.check(conf, fields, datagram)
  fields = fields or { "host", "port" }
  local problems = {}
  local function say(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  local spec = {}
  for k, d in pairs(_M.DEFAULTS) do spec[k] = d end
  local list = conf.servers
  local from_dns = type(list) == "table" and (list.resolve ~= nil or list.srv ~= nil)
  if conf.resolve_min ~= nil or conf.resolve_max ~= nil or from_dns then check_dns(conf, fields, spec, say) end
  if from_dns then
    -- checked by check_dns
  elseif type(list) ~= "table" then
    say("servers: want a list of \"HOST:PORT\" or { host =, port =, weight =, backup = }")
  elseif #list == 0 then
    say("servers: empty list (want at least one server)")
  else
    spec.servers = {}
    local seen = {}
    for i, e in ipairs(list) do
      local s, err = entry(e, fields)
      if not s then say("servers[%d]: %s", i, err)
      elseif seen[s.name] then say("servers[%d]: %s is already servers[%d]", i, s.name, seen[s.name])
      else
        seen[s.name] = i
        spec.servers[#spec.servers + 1] = s
      end
    end
  end
  local b = conf.balance
  if b ~= nil then
    if type(b) == "function" then
      if jit then jit.off(b, true) end
    elseif not balancers[b] then
      say("balance: unknown '%s' (want roundrobin, leastconn, source, hash, random, first or a function(servers, conn))", tostring(b))
    end
    spec.balance = b
  end
  local k = conf.hash_key
  if k ~= nil then
    if spec.balance ~= "hash" then
      say("hash_key: only with balance = \"hash\"")
    elseif type(k) == "function" then
      if jit then jit.off(k, true) end
      spec.key_of = k
    elseif HASH_KEYS[k] then
      spec.key_of = HASH_KEYS[k]
    else
      say("hash_key: unknown '%s' (want source, sni or a function(conn) returning the key)", tostring(k))
    end
  end
  if spec.balance == "hash" and not spec.key_of then spec.key_of = client_key end
  for _, k in ipairs({ "retries", "max_fails" }) do
    if conf[k] ~= nil then
      local n, err = check.count(conf[k])
      if n == nil then say("%s: %s", k, err) else spec[k] = n end
    end
  end
  if conf.fail_timeout ~= nil then
    local n = tonumber(conf.fail_timeout)
    if not n or n <= 0 then say("fail_timeout: want seconds > 0") else spec.fail_timeout = n end
  end
  for _, k in ipairs({ "max_conns", "max_queue" }) do
    if conf[k] ~= nil then
      local n, err = check.count(conf[k])
      if n == nil then say("%s: %s", k, err) else spec[k] = n end
    end
  end
  if spec.max_conns == 0 then spec.max_conns = nil end
  local capped = spec.max_conns ~= nil
  for _, s in ipairs(spec.servers or {}) do
    if s.max_conns == nil then s.max_conns = spec.max_conns end
    if s.max_conns == 0 then s.max_conns = nil end
    capped = capped or s.max_conns ~= nil
  end
  if capped and datagram then say("max_conns: not for udp (a flow is not refused for its server's load)") end
  spec.capped = capped or nil
  if conf.check ~= nil then
    local c, err = check_check(conf.check, datagram)
    if not c then say("check: %s", err) else spec.check = c end
  end
  if #problems > 0 then return nil, problems end
  spec.proxies = fields[1] == "proxy_host"   -- a pool of proxies, not of servers
  spec.fields = fields
  spec.datagram = datagram or nil
  if spec.check then spec.check.datagram = spec.datagram end
  return spec
end

-- ---------------------------------------------------------------- a pool

-- new(spec, proxy_name) -> pool. spec: what check() returned (or the same shape: servers with
-- name, weight, backup). Each server gets its row of the shared table.
function _M.new(spec, proxy_name)
  local p = setmetatable({ proxy = proxy_name, servers = {}, normal = {}, backups = {}, views = {},
                           by_view = {} }, Pool)
  for k, v in pairs(spec) do if k ~= "servers" then p[k] = v end end
  for _, s in ipairs(spec.servers) do
    s.cw, s.conf_weight = 0, s.weight
    s.row = core.pool_row and core.pool_row(proxy_name, s.name) or nil
    place(p, s)
  end
  -- the queue of the clients waiting when every server is at its max_conns (all workers)
  if p.capped and core.pool_queue then p.queue = core.pool_queue(proxy_name) end
  _M.all[#_M.all + 1] = p
  if p.balance == "source" or p.balance == "hash" then p.ring, p.backup_ring = ring(p.normal), ring(p.backups) end
  p:sync()       -- what runtime control said of its servers (kept across reloads)
  return p
end

-- ---------------------------------------------------------------- active checks

_M.all = {}   -- the pools of this Lua state (one config), for start_checks

-- A udp check: send one datagram; the first reply within timeout decides (it must match
-- expect, when given). ICMP port unreachable reads as "refused".
local function exchange_datagram(c, sock)
  local ok, why = sock:write(c.send, c.timeout)
  if not ok then return nil, why end
  local d, err = sock:read(65536, c.timeout)
  if not d then return nil, err end
  if c.expect and not d:find(c.expect) then return nil, ("expected %q, got %q"):format(c.expect, d:sub(1, 60)) end
  return true
end

-- (a server is checked from the address its clients reach it from: the `to`'s source)
local function check_connect(c, s)
  local f = s.fields
  if c.datagram then return core.connect_udp(f.host, f.port, { timeout = c.timeout }) end
  if f.path then return core.connect_unix(f.path, { timeout = c.timeout }) end
  local source = s.conf and s.conf.source
  return core.connect(f.host or f.proxy_host, f.port or f.proxy_port, { timeout = c.timeout, source = source })
end

-- One check of a server: true, or nil and why. A TCP connect (a connected UDP socket for a
-- udp pool); then send/expect, or the check function with the connected socket.
local function check_once(c, s)
  local sock, err = check_connect(c, s)
  if not sock then return nil, err end
  local ok, why = true, nil
  if c.fn then
    local pok, res, fwhy = pcall(c.fn, sock, s.view)
    if not pok then ok, why = nil, "check function: " .. tostring(res)
    elseif not res then ok, why = nil, tostring(fwhy or "check function said no") end
  elseif c.datagram then
    ok, why = exchange_datagram(c, sock)
  elseif c.send or c.expect then
    local deadline = core.now() + c.timeout
    if c.send then ok, why = sock:write(c.send, c.timeout) end
    if ok and c.expect then
      local got = ""
      ok = nil
      while #got < 65536 do
        local left = deadline - core.now()
        if left <= 0 then why = "timeout" break end
        local more, rerr = sock:read(65536, left)
        if not more then why = rerr break end
        got = got .. more
        if got:find(c.expect) then ok = true break end
      end
      if not ok then why = ("expected %q, got %q (%s)"):format(c.expect, got:sub(1, 60), tostring(why or "too long")) end
    end
  end
  sock:close()
  return ok, why
end

-- A server's check loop, in a task of its own, until a newer checker starts (or, for a
-- server from DNS, until DNS no longer names it).
local function check_loop(p, s, epoch)
  local c = p.check
  s.checking = true
  while core.pool_epoch() == epoch do
    if p.dns then
      p:sync()
      if s.state == "deleted" then break end
    end
    while core.pool_epoch() == epoch and core.pool_control(s.row) == "maint" do core.sleep(c.interval) end
    if core.pool_epoch() ~= epoch then break end
    local ok, why = check_once(c, s)
    local verdict = core.pool_checked(s.row, ok, c.rise, c.fall)
    if verdict == "down" then
      core.log("warning", ("%s: server %s down: check failed %d times: %s"):format(p.proxy, s.name, c.fall, tostring(why)))
    elseif verdict == "up" then
      core.log("notice", ("%s: server %s up: check passed %d times"):format(p.proxy, s.name, c.rise))
    end
    core.sleep(c.interval)
  end
  s.checking = nil
end

-- The checks of a DNS pool's servers that have none running (new in the answer).
local function check_new(p, epoch)
  p:sync()
  for _, s in ipairs(p.servers) do
    if s.row and not s.checking and s.state ~= "deleted" then
      s.checking = true
      core.pool_spawn(p.proxy, check_loop, p, s, epoch)
    end
  end
end

-- ---------------------------------------------------------------- servers from DNS
-- One process (the one that checks) asks DNS and writes the answer into the shared table as
-- servers added and deleted at runtime, as netproxy ctl does; every worker's pool takes the
-- change at its next choice (sync). A deleted server drains: its open connections go on.

local function srv_weight(w)
  return math.max(1, math.min(_M.MAX_WEIGHT, w))   -- SRV's 0..65535 within ours (0: rarely, so 1)
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

-- Called by the C core in the one process that checks (checker.c): the active checks and
-- the DNS lookups of the pools whose servers come from DNS.
function _M.start_checks(epoch)
  for _, p in ipairs(_M.all) do
    if p.dns then core.pool_spawn(p.proxy, resolve_loop, p, epoch) end
    if p.check then
      p:sync()
      for _, s in ipairs(p.servers) do
        if s.row then core.pool_spawn(p.proxy, check_loop, p, s, epoch) end
      end
    end
  end
end

_M.hash = hash   -- for the specs
_M.parse_server = function(text, fields) return entry(text, fields) end

return _M
