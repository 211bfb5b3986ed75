-- netproxy.config_server: the server{} options of a config, with the command line's
-- (--set, -v, -m, -D, ...) over them.
local check = require "netproxy.check"
local options = require "netproxy.config_options"
local SERVER, typed, fields = options.SERVER, options.typed, options.fields

local _M = {}

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Options whose --set value is a comma-separated list.
local LISTS = { allow = true, deny = true, resolvers = true, connector_path = true }

-- A --set value as the option wants it: the text itself when its validator takes it, else
-- true/false, else a list split on commas (allow, deny, ...). Returns value or nil, err.
local function set_value(key, text)
  local validate = typed(SERVER[key])
  local value, err = validate(text)
  if value ~= nil then return value end
  if text == "true" or text == "false" then
    local b = validate(text == "true")
    if b ~= nil then return b end
  end
  if LISTS[key] then
    local list = {}
    for item in text:gmatch("[^,%s]+") do list[#list + 1] = item end
    return validate(list)
  end
  return nil, err
end

-- --set KEY=VALUE (repeatable): any server{} option from the command line, over server{}.
local function apply_sets(server, sets, say_at)
  for _, pair in ipairs(sets or {}) do
    local key, text = pair:match("^([%w_]+)=(.*)$")
    if not key then
      say_at("command line", "--set %s: want KEY=VALUE", pair)
    elseif not SERVER[key] then
      say_at("command line", "--set %s: unknown server{} option '%s'", pair, key)
    elseif SERVER[key] == check.func then
      say_at("command line", "--set %s: %s wants a Lua function: set it in the config", pair, key)
    else
      local value, err = set_value(key, text)
      if value == nil then say_at("command line", "--set %s: %s", key, err)
      else server[key], server.set_at[key] = value, "command line" end
    end
  end
end

-- syslog's ident, facility and options go to the C core inside log_file:
-- "syslog:IDENT:FACILITY[:OPTS]" (src/log.c). They do nothing for a log that is not syslog:
-- a warning then.
local function syslog_target(server, warn_at)
  if server.on_log and server.log_file and server.log_file:match("^syslog") then
    warn_at(server.set_at.on_log or server.set_at.log_file, "server: on_log is not called when the log goes to syslog")
  end
  if not server.syslog_ident and not server.syslog_facility and not server.syslog_logopt then return end
  if server.log_file ~= "syslog" then
    warn_at(server.set_at.syslog_ident or server.set_at.syslog_facility or server.set_at.syslog_logopt,
            "server: syslog_ident, syslog_facility and syslog_logopt do nothing unless the log goes to syslog (log_file = \"syslog\", or -D)")
    return
  end
  server.log_file = ("syslog:%s:%s%s"):format(server.syslog_ident or "netproxy", server.syslog_facility or "daemon",
                                             server.syslog_logopt and ":" .. server.syslog_logopt or "")
end

-- server{} options, then the command line over them.
local function server_options(path, servers, cli, say_at, warn_at)
  local server = { set_at = {} }     -- set_at[option]: where server{} set it
  for k, v in pairs(options.DEFAULTS) do server[k] = v end
  server.connector_path = {}
  local set_at = {}       -- option -> "file:line" of the server{} that set it
  for _, decl in ipairs(servers) do
    local given, problems = fields(decl.spec, SERVER)
    for _, p in ipairs(problems) do say_at(decl.where, "server: %s", p) end
    for k, v in pairs(given) do server[k] = v end
    for k in pairs(given) do server.set_at[k] = decl.where end
  end
  local base = dirname(path)
  for i, p in ipairs(server.connector_path) do
    if p:sub(1, 1) ~= "/" then server.connector_path[i] = base .. "/" .. p end
  end
  apply_sets(server, cli.set, say_at)        -- the options below win over it
  if cli.log_level then server.log_level = cli.log_level end
  server.log_level = math.max(0, math.min(4, server.log_level + (cli.verbose or 0)))
  if cli.max_connections then server.max_connections = cli.max_connections end
  server.workers = cli.workers or server.workers or math.min(cli.cpus or 1, check.MAX_WORKERS)
  for _, k in ipairs({ "daemon", "pid_file", "user", "group", "chroot", "log_file" }) do
    if cli[k] ~= nil then server[k] = cli[k] end
  end
  if server.daemon and not server.log_file then server.log_file = "syslog" end   -- stderr is gone
  if cli.relay then server.relay, server.set_at.relay = cli.relay, nil end
  syslog_target(server, warn_at)
  return server
end

_M.options = server_options

return _M
