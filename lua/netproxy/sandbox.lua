-- netproxy.sandbox: what user code may not do, and the bound on loading a config.
--
-- One Lua state serves every connection of a process, so a few standard functions would end
-- or wreck all of them from one hook: lock() replaces those, in the process's own library
-- tables (package.loaded.os is _G.os, and so on), with functions that raise a clear error.
-- netproxy keeps the originals for itself. bounded() runs the loading of a config under a
-- time budget that also sees loops the JIT would compile.
local ffi = require "ffi"

local error, type, tostring, pcall, pairs, ipairs = error, type, tostring, pcall, pairs, ipairs
local getmetatable, unpack, maxn = getmetatable, unpack, table.maxn

local _M = {}

-- Taken before lock() replaces them.
local original = {
  sethook = debug.sethook,
  gethook = debug.gethook,
  getinfo = debug.getinfo,
  collectgarbage = collectgarbage,
  jit_on = jit and jit.on,
  jit_off = jit and jit.off,
  jit_flush = jit and jit.flush,
  jit_status = jit and jit.status,
}

-- What user code may not call, and why (docs/hooks.md lists the same).
_M.FORBIDDEN = {
  { lib = "os", name = "exit",
    why = "it would end the process and every connection in it; to end one connection, raise an error or call conn:close()" },
  { lib = "debug", name = "sethook",
    why = "netproxy's time budgets run on the debug hook; replacing it would let a runaway loop freeze the process" },
  { lib = "debug", name = "debug",
    why = "it waits for commands on the terminal, and the whole process with it" },
  { lib = "jit", name = "on",
    why = "netproxy turns the JIT off where its time budgets must see every instruction (compiled loops never run the hook)" },
}

local function refusal(label, why)
  return function()
    error(label .. " is not allowed in netproxy scripts: " .. why, 2)
  end
end

-- collectgarbage, less "stop": a stopped collector lets every allocation of every connection
-- pile up until the process runs out of memory.
local function guarded_collectgarbage(opt, ...)
  if opt == "stop" then
    error("collectgarbage(\"stop\") is not allowed in netproxy scripts: one Lua state serves every " ..
          "connection, and its memory would grow without bound", 2)
  end
  return original.collectgarbage(opt, ...)
end

-- Replaces the forbidden functions in libs ({ os = ..., debug = ..., jit = ..., _G = ... };
-- the process's own tables by default). Idempotent.
function _M.lock(libs)
  libs = libs or { os = os, debug = debug, jit = jit, _G = _G }
  for _, f in ipairs(_M.FORBIDDEN) do
    local lib = libs[f.lib]
    if lib then lib[f.name] = refusal(f.lib .. "." .. f.name, f.why) end
  end
  libs._G.collectgarbage = guarded_collectgarbage
end

-- True inside netproxy (the C core's module is there), false in a test that checks configs
-- with a stand-in core: the specs' own process must keep its os.exit.
function _M.in_netproxy()
  local ok, core = pcall(require, "netproxy.core")
  return ok and type(core) == "table" and type(core.relay) == "function"
end

-- ---------------------------------------------------------------- the loading bound

_M.LOAD_BUDGET = 5               -- seconds a config may take to load (--check, start, reload)
local BUDGET_RANGE = { 0.1, 3600 }

-- The loading bound: NETPROXY_LOAD_BUDGET (seconds) when set, else LOAD_BUDGET. Returns it,
-- or nil and why.
function _M.load_budget()
  local text = os.getenv("NETPROXY_LOAD_BUDGET")
  if text == nil or text == "" then return _M.LOAD_BUDGET end
  local n = tonumber(text)
  if not n or n ~= n or n < BUDGET_RANGE[1] or n > BUDGET_RANGE[2] then
    return nil, ("NETPROXY_LOAD_BUDGET: bad value '%s' (want seconds, %g..%g)"):format(text, BUDGET_RANGE[1], BUDGET_RANGE[2])
  end
  return n
end
local INSTRUCTIONS_PER_CHECK = 10000

-- A wall clock (a loop that waits in C calls counts too); names of our own, so that other
-- code declaring clock_gettime its way does not clash.
ffi.cdef [[
  struct np_sandbox_timespec { long tv_sec; long tv_nsec; };
  int np_sandbox_clock_gettime(int clk, struct np_sandbox_timespec *ts) __asm__("clock_gettime");
]]
local ts = ffi.new("struct np_sandbox_timespec")
local CLOCK_MONOTONIC = 1

local function monotonic()
  ffi.C.np_sandbox_clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

-- "file:line" of the Lua code running at stack level `level`, or nil.
local function where(level)
  local info = original.getinfo(level + 1, "Sl")
  if not info or info.what == "C" then return nil end
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return src .. ":" .. (info.currentline or 0)
end

-- Runs fn(...) and returns what it returns; past budget seconds the code running then raises
-- "file:line: config took longer than N s to load". The JIT is off meanwhile (a compiled loop
-- never runs the count hook) and back to how it was afterwards. A script that catches that
-- error with pcall and carries on is stopped again at the next check, and so on.
function _M.bounded(budget, fn, ...)
  local deadline = monotonic() + budget
  local message = "config took longer than " .. budget .. " s to load"
  local jit_was_on = original.jit_status and original.jit_status()
  if original.jit_off then
    original.jit_off()
    original.jit_flush()
  end
  local outer, outer_mask, outer_count = original.gethook()    -- a caller's own Lua hook comes back
  original.sethook(function()
    if monotonic() > deadline then
      error((where(2) or "config") .. ": " .. message, 0)
    end
  end, "", INSTRUCTIONS_PER_CHECK)
  local results = { pcall(fn, ...) }
  if type(outer) == "function" then original.sethook(outer, outer_mask, outer_count) else original.sethook() end
  if jit_was_on then original.jit_on() end
  if not results[1] then error(results[2], 0) end
  return unpack(results, 2, maxn(results))
end

-- A readable description of a value raised as an error that is not a message.
local function describe(v)
  local mt = getmetatable(v)
  if type(v) == "table" and not (mt and mt.__tostring) then
    local fields, n = {}, 0
    for k, x in pairs(v) do
      n = n + 1
      if n > 4 then fields[#fields + 1] = "..." break end
      local kt, xt = type(k), type(x)
      local key = kt == "string" and k or "[" .. tostring(k) .. "]"
      local val = xt == "string" and ("%q"):format(x:sub(1, 40))
                  or (xt == "number" or xt == "boolean") and tostring(x) or xt
      fields[#fields + 1] = key .. " = " .. val
    end
    if n == 0 then return "a table {}" end
    return "a table { " .. table.concat(fields, ", ") .. " }"
  end
  if v == nil then return "nil" end
  local ok, text = pcall(tostring, v)
  return "a " .. type(v) .. " (" .. (ok and text or "?") .. ")"
end

-- The message handler for running user code (xpcall): a string error is kept as it is; any
-- other value (error({ code = 3 }), error(nil)) becomes "file:line: error raised with ..." with
-- the place it was raised from, instead of "table: 0x55...".
function _M.error_message(err)
  if type(err) == "string" then return err end
  local at
  for level = 2, 20 do
    local info = original.getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" and (info.currentline or 0) > 0 then
      at = (info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src) .. ":" .. info.currentline
      break
    end
  end
  return (at and at .. ": " or "") .. "error raised with " .. describe(err) .. " (want a message: error(\"...\"))"
end

_M.where = where

return _M
