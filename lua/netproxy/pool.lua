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
--
-- This file: a pool object (pick, connect, the queue of a full pool, runtime control). Its
-- parts: pool_balance (the balancers), pool_config (check), pool_checks and pool_dns.
local core = require "netproxy.core"
local pool_balance = require "netproxy.pool_balance"
local pool_config = require "netproxy.pool_config"
local pool_checks = require "netproxy.pool_checks"
local pool_dns = require "netproxy.pool_dns"

local type, tostring, ipairs, pairs = type, tostring, ipairs, pairs
local concat = table.concat
local balancers, only_full, ring, by_function, hash = pool_balance.balancers,
  pool_balance.only_full, pool_balance.ring, pool_balance.by_function, pool_balance.hash
local entry = pool_config.entry
local check_loop, resolve_loop = pool_checks.check_loop, pool_dns.resolve_loop

local _M = {}
local Pool = {}
Pool.__index = Pool

_M.MAX_WEIGHT = pool_config.MAX_WEIGHT
_M.DEFAULTS = pool_config.DEFAULTS
_M.CHECK_DEFAULTS = pool_config.CHECK_DEFAULTS

-- The `to` parameters that belong to the pool, not to the connector.
_M.PARAMS = { servers = true, balance = true, hash_key = true, retries = true, max_fails = true,
              fail_timeout = true, check = true, resolve_min = true, resolve_max = true,
              max_conns = true, max_queue = true }
-- servers from DNS: re-resolved at the answer's TTL, within these bounds (seconds)
_M.RESOLVE_DEFAULTS = pool_config.RESOLVE_DEFAULTS
_M.RESOLVE_TIMEOUT = pool_dns.RESOLVE_TIMEOUT
-- max_conns: a client finding every server full waits in the pool's queue, looking again
-- this often (other workers' closes are seen only by looking), up to the proxy's queue_timeout
_M.QUEUE_STEP = 0.02
_M.FULL = "every server is full (max_conns)"   -- the from connectors answer it with 503 / 0x01

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

_M.check = pool_config.check

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
