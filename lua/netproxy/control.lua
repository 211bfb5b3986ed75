-- netproxy.control: the commands of the control socket (`netproxy ctl`, src/control.c), one
-- line each, run in the master (or the single process) in the running config's Lua state.
-- control.c reads the line, checks the peer and logs; this module parses it and answers
-- text (or JSON with --json). What only C knows (the connections of every worker, killing
-- one, the process's info and proxies) comes in `ops`, a table of C functions; `reload` is
-- control.c's own (it replaces this very Lua state).
--
-- Servers: the shared pool table (src/pool.c) through netproxy.pool, so every worker sees a
-- change at its next choice. Dicts: core.shared, the same mappings in every process.
local core = require "netproxy.core"
local addr = require "netproxy.addr"
local pool = require "netproxy.pool"

local concat, format, ipairs, pairs, tostring, tonumber, type =
  table.concat, string.format, ipairs, pairs, tostring, tonumber, type

local _M = {}

_M.HELP = [[
commands (one per line; add --json for JSON):
  show info
  show proxies
  show conns [PROXY]
  kill conn [PID:]ID
  show servers [PROXY]
  set server PROXY HOST:PORT state ready|drain|maint
  set server PROXY HOST:PORT weight N        (0: the config's weight)
  add server PROXY HOST:PORT [weight N] [backup]
  del server PROXY HOST:PORT                 (no new connections; the open ones go on)
  dict keys NAME
  dict get NAME KEY
  dict set NAME KEY VALUE...
  dict del NAME KEY
  reload
  help]]

-- ---------------------------------------------------------------- JSON (answers only)

local function json(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    if #v > 0 or next(v) == nil and getmetatable(v) == "array" then
      for i = 1, #v do parts[i] = json(v[i]) end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = json(k) .. ":" .. json(v[k]) end
    return "{" .. concat(parts, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\\128-\255]', function(c)
      local b = c:byte()
      if c == '"' or c == "\\" then return "\\" .. c end
      if b < 32 or b == 127 then return format("\\u%04x", b) end
      return c            -- UTF-8 bytes go as they are
    end) .. '"'
  elseif t == "number" then
    return v == v and v ~= 1 / 0 and v ~= -1 / 0 and format("%.14g", v) or "null"
  elseif t == "boolean" then
    return tostring(v)
  end
  return "null"
end

local function array(t)
  return setmetatable(t, { __metatable = "array" })
end

_M.json = json

-- ---------------------------------------------------------------- text tables

-- rows of tables, columns named: aligned text, a header line first
local function columns(rows, names)
  local width, lines = {}, {}
  for i, n in ipairs(names) do width[i] = #n end
  local cells = {}
  for r, row in ipairs(rows) do
    cells[r] = {}
    for i, n in ipairs(names) do
      local c = row[n]
      c = c == nil and "-" or tostring(c)
      cells[r][i] = c
      if #c > width[i] then width[i] = #c end
    end
  end
  local function line(list)
    local out = {}
    for i, c in ipairs(list) do out[i] = i < #list and c .. (" "):rep(width[i] - #c) or c end
    return concat(out, "  ")
  end
  lines[1] = line(names)
  for r = 1, #cells do lines[#lines + 1] = line(cells[r]) end
  return concat(lines, "\n")
end

-- ---------------------------------------------------------------- answers

-- ok(text, data): text for a person, data for --json
local function ok(text, data)
  return { ok = true, text = text, data = data }
end

local function fail(fmt, ...)
  return { ok = false, text = "error: " .. format(fmt, ...) }
end

-- ---------------------------------------------------------------- servers

-- The pools of a proxy in this Lua state (a proxy may have several: one per `to`).
local function pools_of(proxy)
  local list = {}
  for _, p in ipairs(pool.all) do
    if proxy == nil or p.proxy == proxy then list[#list + 1] = p end
  end
  return list
end

-- "HOST:PORT" as the pool names it (an IPv6 address in brackets, the port a number).
local function server_name(p, text)
  local s, err = pool.parse_server(text, p.fields or { "host", "port" })
  if not s then return nil, err end
  return s.name
end

-- The server of PROXY named by text: pool, server | nil, err
local function find_server(proxy, text)
  local pools = pools_of(proxy)
  if #pools == 0 then
    return nil, ("proxy '%s' has no pool of servers (see show servers)"):format(tostring(proxy))
  end
  for _, p in ipairs(pools) do
    p:sync()
    local name = server_name(p, text)
    for _, s in ipairs(p.servers) do
      if s.name == name and s.state ~= "deleted" then return p, s end
    end
  end
  return nil, ("proxy %s has no server %s"):format(proxy, text)
end

local function server_row(p, s)
  local up, act, fails, conns, failures = true, 0, 0, 0, 0
  if s.row then up, act, fails, conns, failures = core.pool_state(s.row) end
  return { proxy = p.proxy, server = s.name, state = s.state or "ready", weight = s.weight,
           backup = s.backup, added = s.added or false, up = up, active = act, connections = conns,
           failures = failures, max_conns = s.max_conns or 0,
           -- the pool's queue (every server at its max_conns), the same on each of its rows
           waiting = p.queue and core.pool_waiting(p.queue) or 0 }
end

local function show_servers(proxy)
  local rows, seen = array({}), {}
  for _, p in ipairs(pools_of(proxy)) do
    p:sync()
    for _, s in ipairs(p.servers) do
      local key = p.proxy .. " " .. s.name
      if not seen[key] then
        seen[key] = true
        rows[#rows + 1] = server_row(p, s)
      end
    end
  end
  if proxy and #rows == 0 then return fail("proxy '%s' has no pool of servers", proxy) end
  local text = {}
  for i, r in ipairs(rows) do
    text[i] = {
      proxy = r.proxy, server = r.server, state = r.state, weight = r.weight,
      health = r.up and "up" or "down", active = r.active, conns = r.connections,
      failures = r.failures, max = r.max_conns > 0 and r.max_conns or "-", waiting = r.waiting, flags = (r.backup and "backup" or "") .. (r.added and (r.backup and ",added" or "added") or ""),
    }
  end
  return ok(columns(text, { "proxy", "server", "state", "weight", "health", "active", "max", "waiting", "conns", "failures",
                            "flags" }),
            rows)
end

local function weight_arg(w)
  local n = tonumber(w)
  if not n or n ~= math.floor(n) or n < 0 or n > pool.MAX_WEIGHT then
    return nil, ("weight '%s': want 0..%d (0: the config's)"):format(tostring(w), pool.MAX_WEIGHT)
  end
  return n
end

-- _M.set_server(proxy, server, { state =, weight = }) -> true | nil, err: core.set_server
function _M.set_server(proxy, server, change)
  if type(proxy) ~= "string" or type(server) ~= "string" then return nil, "want (proxy, \"HOST:PORT\", { state =, weight = })" end
  if type(change) ~= "table" then return nil, "want a table { state = ready|drain|maint, weight = N }" end
  local state, w = change.state, nil
  if state ~= nil and state ~= "ready" and state ~= "drain" and state ~= "maint" then
    return nil, ("state '%s': want ready, drain or maint"):format(tostring(state))
  end
  if change.weight ~= nil then
    local err
    w, err = weight_arg(change.weight)
    if not w then return nil, err end
  end
  for k in pairs(change) do
    if k ~= "state" and k ~= "weight" then return nil, ("unknown field '%s' (want state, weight)"):format(tostring(k)) end
  end
  local p, s = find_server(proxy, server)
  if not p then return nil, s end
  if not s.row then return nil, "the pool table is not mapped (--check?)" end
  core.pool_set(s.row, state, w)
  p:sync()
  return true
end

-- _M.servers(proxy) -> { { proxy, server, state, weight, backup, added, up, active, connections, failures,
-- max_conns (0: none), waiting (the pool's queue) }, ... }
function _M.servers(proxy)
  if proxy ~= nil and type(proxy) ~= "string" then return nil, "want a proxy name or nothing" end
  local a = show_servers(proxy)
  if not a.ok then return nil, a.text:gsub("^error: ", "") end
  return a.data
end

local function set_server(w)
  local proxy, server, what, value = w[3], w[4], w[5], w[6]
  if not value or w[7] then return fail("want: set server PROXY HOST:PORT state ready|drain|maint, or ... weight N") end
  if what ~= "state" and what ~= "weight" then return fail("'%s': want state or weight", what) end
  local done, err = _M.set_server(proxy, server, { [what] = what == "weight" and tonumber(value) or value })
  if not done then return fail("%s", err) end
  return ok(("%s %s: %s %s"):format(proxy, server, what, value), { proxy = proxy, server = server, [what] = value })
end

local function add_server(w)
  local proxy, text = w[3], w[4]
  if not text then return fail("want: add server PROXY HOST:PORT [weight N] [backup]") end
  local weight, backup, i = 1, false, 5
  while w[i] do
    if w[i] == "weight" and w[i + 1] then
      local n, err = weight_arg(w[i + 1])
      if not n or n == 0 then return fail("%s", err or "weight 0: want 1.." .. pool.MAX_WEIGHT) end
      weight, i = n, i + 2
    elseif w[i] == "backup" then
      backup, i = true, i + 1
    else
      return fail("'%s': want weight N or backup", w[i])
    end
  end
  local pools = pools_of(proxy)
  if #pools == 0 then return fail("proxy '%s' has no pool of servers: add server extends a `to` with servers", proxy) end
  local p = pools[1]
  local name, err = server_name(p, text)
  if not name then return fail("%s: %s", text, err) end
  p:sync()
  for _, s in ipairs(p.servers) do
    if s.name == name and s.state ~= "deleted" then return fail("proxy %s has server %s already", proxy, name) end
  end
  if not core.pool_add(proxy, name, weight, backup) then return fail("the pool table is full") end
  p:sync()
  return ok(("%s %s: added (weight %d%s)"):format(proxy, name, weight, backup and ", backup" or ""),
            { proxy = proxy, server = name, weight = weight, backup = backup })
end

local function del_server(w)
  local proxy, text = w[3], w[4]
  if not text or w[5] then return fail("want: del server PROXY HOST:PORT") end
  local p, s = find_server(proxy, text)
  if not p then return fail("%s", s) end
  core.pool_delete(s.row)
  p:sync()
  local act = core.pool_active(s.row)
  return ok(("%s %s: deleted: no new connections; %d open go on"):format(proxy, s.name, act),
            { proxy = proxy, server = s.name, active = act })
end

-- ---------------------------------------------------------------- dicts

local function dict(w, line)
  local verb, name, key = w[2], w[3], w[4]
  if verb ~= "keys" and verb ~= "get" and verb ~= "set" and verb ~= "del" then
    return fail("dict %s: want keys, get, set or del", tostring(verb))
  end
  if not name then return fail("want: dict keys|get|set|del NAME ...") end
  local d, err = core.shared(name)
  if not d then return fail("%s", err) end
  if verb == "keys" then
    if key then return fail("want: dict keys NAME") end
    local keys = d:keys(10000)       -- a bound on the answer (docs: at most 10,000)
    return ok(concat(keys, "\n"), array(keys))
  end
  if not key then return fail("want: dict %s NAME KEY%s", verb, verb == "set" and " VALUE" or "") end
  if verb == "get" then
    if w[5] then return fail("want: dict get NAME KEY") end
    local called, v = pcall(d.get, d, key)
    if not called then return fail("%s", (tostring(v):gsub("^.-: get:", "get:"))) end
    if v == nil then return fail("%s: no key '%s'", name, key) end
    return ok(tostring(v), { key = key, value = v })
  elseif verb == "set" then
    -- the value: the rest of the line after the key, as typed
    local value = line:match("^%s*dict%s+set%s+%S+%s+%S+%s+(.-)%s*$")
    if not value or value == "" then return fail("want: dict set NAME KEY VALUE") end
    local called, done, serr = pcall(d.set, d, key, value)
    if not called then return fail("%s", (tostring(done):gsub("^.-: set:", "set:"))) end
    if not done then return fail("%s: %s", name, tostring(serr)) end
    return ok(("%s %s = %s"):format(name, key, value), { key = key, value = value })
  end
  if w[5] then return fail("want: dict del NAME KEY") end
  local called, derr = pcall(d.delete, d, key)
  if not called then return fail("%s", (tostring(derr):gsub("^.-: delete:", "delete:"))) end
  return ok(("%s %s deleted"):format(name, key), { key = key })
end

-- ---------------------------------------------------------------- what C knows

local function show_info(ops)
  local i = ops.info()
  local lines = {}
  for _, k in ipairs({ "version", "pid", "uptime", "workers", "generation", "draining" }) do
    lines[#lines + 1] = ("%s: %s"):format(k, tostring(i[k]))
  end
  return ok(concat(lines, "\n"), i)
end

local function show_proxies(ops)
  local list = array(ops.proxies())
  return ok(columns(list, { "name", "active", "opened", "refused", "errors", "bytes_in", "bytes_out" }), list)
end

local function show_conns(ops, proxy)
  local list, err = ops.conns(proxy)
  if not list then return fail("%s", err) end
  array(list)
  local rows = {}
  for i, c in ipairs(list) do
    rows[i] = { id = c.pid .. ":" .. c.id, proxy = c.proxy, client = c.client, target = c.target,
                age = ("%.1fs"):format(c.age), ["in"] = c.bytes_in, out = c.bytes_out, state = c.state }
  end
  return ok(columns(rows, { "id", "proxy", "client", "target", "age", "in", "out", "state" }), list)
end

local function kill_conn(ops, w)
  local text = w[3]
  if not text or w[4] then return fail("want: kill conn [PID:]ID (see show conns)") end
  local pid, id = text:match("^(%d+):(%d+)$")
  id = id or text:match("^%d+$")
  if not id then return fail("'%s': want ID or PID:ID (see show conns)", text) end
  id, pid = tonumber(id), tonumber(pid)
  if not pid then
    local list = ops.conns(nil) or {}
    local found = {}
    for _, c in ipairs(list) do if c.id == id then found[#found + 1] = c.pid end end
    if #found > 1 then
      return fail("conn %d is open in several workers (%s): say PID:ID", id, concat(found, ", "))
    end
    pid = found[1]
    if not pid then return fail("no conn %d", id) end
  end
  if not ops.kill(pid, id) then return fail("no conn %d:%d", pid, id) end
  return ok(("conn %d:%d closed"):format(pid, id), { pid = pid, id = id })
end

-- ---------------------------------------------------------------- the one entry

local function words(line)
  local w = {}
  for x in line:gmatch("%S+") do w[#w + 1] = x end
  return w
end

-- Commands that change something: logged as changes by control.c.
local CHANGES = { set = true, add = true, del = true, kill = true }

local function dispatch(line, ops)
  local w = words(line)
  local verb, what = w[1], w[2]
  if verb == "help" then return ok(_M.HELP) end
  if verb == "show" then
    if w[3] and (what ~= "conns" and what ~= "servers" or w[4]) or not what then
      return fail("want: show info|proxies|conns [PROXY]|servers [PROXY]")
    end
    if what == "info" then return show_info(ops) end
    if what == "proxies" then return show_proxies(ops) end
    if what == "conns" then return show_conns(ops, w[3]) end
    if what == "servers" then return show_servers(w[3]) end
    return fail("show %s: want info, proxies, conns or servers", what)
  end
  if verb == "kill" and what == "conn" then return kill_conn(ops, w) end
  if (verb == "set" or verb == "add" or verb == "del") and what == "server" then
    if not w[3] then return fail("want: %s server PROXY HOST:PORT ...", verb) end
    if verb == "set" then return set_server(w) end
    if verb == "add" then return add_server(w) end
    return del_server(w)
  end
  if verb == "dict" then return dict(w, line) end
  return fail("unknown command '%s' (try help)", line:sub(1, 80))
end

-- reloaded(ok, problems, generation, json): the answer to `reload`, from the config that runs
-- afterwards (the new one, or the one kept). problems: the warnings and errors it logged.
function _M.reloaded(done, problems, generation, as_json)
  local list = array({})
  for l in (problems or ""):gmatch("[^\n]+") do list[#list + 1] = l end
  if as_json then
    if done then return json({ ok = true, result = { generation = generation, warnings = list } }), true, true end
    return json({ ok = false, error = "reload failed: still running the previous config", problems = list }), false, false
  end
  if done then
    local text = ("reloaded: config generation %d"):format(generation)
    if #list > 0 then text = text .. "\n" .. concat(list, "\n") end
    return text, true, true
  end
  return "error: reload failed: still running the previous config" ..
         (#list > 0 and "\n" .. concat(list, "\n") or ""), false, false
end

-- run(line, json, ops) -> answer text, ok, changed: the text ends with no newline.
function _M.run(line, as_json, ops)
  local a = dispatch(line, ops)
  local verb, what = line:match("^%s*(%S+)%s*(%S*)")
  local changed = a.ok and (CHANGES[verb or ""] or verb == "dict" and (what == "set" or what == "del")) or false
  if as_json then
    local out = a.ok and { ok = true, result = a.data or a.text } or { ok = false, error = a.text:gsub("^error: ", "") }
    return json(out), a.ok, changed
  end
  return a.text, a.ok, changed
end

return _M
