-- netproxy.connectors: finds connector scripts by type name on the connector path (the
-- built-in folder first, then the user's folders) and loads each once.
local io_open, loadfile, pcall, type = io.open, loadfile, pcall, type

local _M = {}

local path = {}      -- folders, in search order
local loaded = {}    -- type name -> module

function _M.set_path(folders)
  path = folders
  loaded = {}
end

local function exists(file)
  local f = io_open(file, "r")
  if f then f:close() end
  return f ~= nil
end

local function load_module(file, name, builtin)
  local chunk, err = loadfile(file)
  if not chunk then return nil, err end
  -- a user's connector runs under the budget like the config: no compiled loops
  if jit and not builtin then jit.off(chunk, true) end
  local ok, mod = pcall(chunk, name)
  if not ok then return nil, file .. ": " .. tostring(mod) end
  if type(mod) ~= "table" then return nil, file .. ": a connector script must return a table" end
  mod.name = mod.name or name
  return mod
end

-- The module for a connector type, or nil and why.
function _M.get(name)
  if loaded[name] then return loaded[name] end
  if type(name) ~= "string" or not name:match("^[%w_]+$") then
    return nil, "bad connector type '" .. tostring(name) .. "'"
  end
  for _, folder in ipairs(path) do
    local file = folder .. "/" .. name .. ".lua"
    if exists(file) then
      local mod, err = load_module(file, name, folder == path[1])
      if not mod then return nil, err end
      loaded[name] = mod
      return mod
    end
  end
  return nil, "unknown connector type '" .. name .. "' (looked in " .. table.concat(path, ", ") .. ")"
end

return _M
