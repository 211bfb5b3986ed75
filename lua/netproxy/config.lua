-- netproxy.config: the config language. A script calls proxy{} and server{}; load() runs
-- it, checks every value and returns the normalised config for the C core, or the list of
-- problems, each as "file:line: message".
local check = require "netproxy.check"
local connectors = require "netproxy.connectors"
local sandbox = require "netproxy.sandbox"
local options = require "netproxy.config_options"
local check_proxy = require("netproxy.config_proxy").check
local server_options = require("netproxy.config_server").options
local oneline_decl = require("netproxy.config_oneline").decl

local _M = {}

_M.DEFAULTS = options.DEFAULTS
_M.check_keepalive = options.check_keepalive
-- What server{} and proxy{} accept, for the man page's spec and for tools.
_M.SERVER_OPTIONS, _M.PROXY_OPTIONS = options.SERVER_OPTIONS, options.PROXY_OPTIONS

-- "file:line" of the script line that called the function calling this.
local function caller()
  local info = debug.getinfo(3, "Sl")
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return src .. ":" .. (info.currentline or 0)
end

-- Runs the script with proxy{} and server{} in its environment.
local function run_script(path)
  local decls, servers = {}, {}
  local env = setmetatable({}, { __index = _G })
  function env.proxy(spec)
    if type(spec) ~= "table" then error("proxy wants a table: proxy { name = ..., from = ..., to = ... }", 2) end
    decls[#decls + 1] = { spec = spec, where = caller() }
  end
  function env.server(spec)
    if type(spec) ~= "table" then error("server wants a table: server { ... }", 2) end
    servers[#servers + 1] = { spec = spec, where = caller() }
  end
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  -- Every function the script defines (hooks, route, accept, their helpers) stays in the
  -- interpreter, where the budget's count hook sees it: compiled loops would escape it.
  if jit then jit.off(chunk, true) end
  setfenv(chunk, env)
  local ok, runerr = xpcall(chunk, sandbox.error_message)
  if not ok then return nil, runerr end
  return decls, servers
end

-- A master keeps one slot of its 64 for the workers of a reload.
local MAX_WORKERS = 63

-- Warnings go to stderr under --check, else to the log (stderr at start, the log file on a
-- reload), and are also returned with the config.
local function report(warnings, cli)
  local ok, core = pcall(require, "netproxy.core")
  for _, w in ipairs(warnings) do
    if cli.on_warning then       -- a tool (or a spec) that reads them itself
      cli.on_warning(w)
    elseif cli.check or not (ok and type(core) == "table" and core.log) then
      io.stderr:write((w:gsub(": ", ": warning: ", 1)), "\n")
    else
      core.log("warning", w)
    end
  end
end


-- Two listeners on one address are an error, with or without reuseport (which would let
-- both bind and split the clients between them).
local function check_clashes(proxies, server, say_at)
  local listeners = {}
  for _, proxy in ipairs(proxies) do
    local l = proxy.listen
    -- a list of { host, port } entries (netproxy.listen), or one table (unix, udp)
    for _, e in ipairs(l and (l[1] and l or { l }) or {}) do
      if e.path or e.host and e.port then
        listeners[#listeners + 1] = { host = e.host, port = e.port, path = e.path, udp = e.udp or l.udp,
                                      label = "proxy '" .. proxy.name .. "'", where = proxy.where }
      end
    end
  end
  if server.stats then
    local host, port = server.stats:match("^%[(.*)%]:(%d+)$")
    if not host then host, port = server.stats:match("^(.*):(%d+)$") end
    listeners[#listeners + 1] = { host = host, port = port, label = "server: stats", where = server.set_at.stats }
  end
  for _, clash in ipairs(check.listen_clashes(listeners)) do say_at(clash.where, "%s", clash.message) end
end

local function load(path, cli)
  local errors, warnings = {}, {}
  local function say_at(where, fmt, ...) errors[#errors + 1] = where .. ": " .. fmt:format(...) end
  local function warn_at(where, fmt, ...) warnings[#warnings + 1] = where .. ": " .. fmt:format(...) end

  local decls, servers
  if cli.oneline then
    local decl, err = oneline_decl(cli.oneline)
    if not decl then return nil, { "command line: " .. err } end
    decls, servers = { decl }, {}
    -- ssh shows ProxyCommand's stderr on the terminal: warnings and errors only, unless -v
    if not cli.oneline.listen and not cli.log_level then cli.log_level = 1 end
  else
    decls, servers = run_script(path)
    if not decls then return nil, { servers } end
  end
  local server = server_options(path, servers, cli, say_at, warn_at)

  local folders = { cli.builtin_connectors }
  for _, p in ipairs(cli.connector_path or {}) do folders[#folders + 1] = p end
  for _, p in ipairs(server.connector_path) do folders[#folders + 1] = p end
  connectors.set_path(folders)

  if #decls == 0 then say_at(path .. ":1", "no proxy declared (want at least one proxy { ... })") end
  local proxies, names = {}, {}
  for i, decl in ipairs(decls) do
    local proxy = check_proxy(decl, i, server, say_at, warn_at)
    if names[proxy.name] then
      say_at(decl.where, "proxy '%s': name already used at %s", proxy.name, names[proxy.name])
    end
    names[proxy.name] = decl.where
    proxies[i] = proxy
  end
  for _, proxy in ipairs(proxies) do
    if proxy.listen and proxy.listen.stdio and #proxies > 1 then
      say_at(proxy.where, "proxy '%s': a stdio proxy must be the only proxy of its config", proxy.name)
    end
  end
  -- -m counts this process's connections, and stdio is one connection: a single process
  if server.max_connections > 0 or (proxies[1] and proxies[1].listen and proxies[1].listen.stdio) then
    server.workers = 1
  end
  if server.workers < 1 then say_at(path .. ":1", "server: workers: want at least 1") end
  if server.workers > MAX_WORKERS then
    say_at(server.set_at.workers or (path .. ":1"), "server: workers: at most %d, not %d", MAX_WORKERS, server.workers)
  end
  if server.reuseport and server.workers == 1 then
    warn_at(server.set_at.reuseport or "command line",
            "server: reuseport with one worker does nothing but let other processes bind the same ports")
  end
  check_clashes(proxies, server, say_at)
  report(warnings, cli)
  if #errors > 0 then return nil, errors, warnings end
  return { server = server, proxies = proxies, warnings = warnings }
end

-- load(path, cli) -> config | nil, { "file:line: message", ... }
-- Loading has a time bound of its own (netproxy.sandbox.bounded), for --check, start and
-- reload alike: a config that loops gives up with "file:line: config took longer than N s".
function _M.load(path, cli)
  cli = cli or {}
  -- from here on, user code cannot end the process (os.exit, ...): docs/hooks.md
  if sandbox.in_netproxy() then sandbox.lock() end
  local budget, berr = sandbox.load_budget()
  if not budget then return nil, { berr } end
  local ok, cfg, errors = pcall(sandbox.bounded, budget, load, path, cli)
  if not ok then return nil, { tostring(cfg) } end
  return cfg, errors
end

return _M
