-- examples/redis-kv.lua: a Redis-like key-value server over a shared dict, written as a
-- straight-line service. It speaks RESP, Redis's protocol (and its inline form, a command
-- per line), so redis-cli and redis-benchmark talk to it: PING, GET, SET key value [EX s],
-- DEL, EXISTS, QUIT. Every worker serves the same dict (server{ shared }).
--   build/netproxy examples/redis-kv.lua
--   redis-cli -p 6380 set greeting hello && redis-cli -p 6380 get greeting
local core = require "netproxy.core"

local MAX_ARGS = 64
local MAX_ARG = 448             -- a dict entry holds at most 448 bytes, key and value together

server { shared = { kv = "16m" } }

-- One command as a list of strings; nil, err at the end or on bad input.
local function read_command(client)
  local line, err = client:read("*l")
  if not line then return nil, err end
  if line:sub(1, 1) ~= "*" then                 -- inline: words split by blanks
    local args = {}
    for word in line:gmatch("%S+") do args[#args + 1] = word end
    return args
  end
  local n = tonumber(line:sub(2))
  if not n or n < 1 or n > MAX_ARGS then return nil, "invalid multibulk length" end
  local args = {}
  for i = 1, n do
    local len = tonumber((client:read("*l") or ""):match("^%$(%d+)$"))
    if not len or len > MAX_ARG then return nil, "invalid bulk length" end
    local arg = client:read(len + 2)
    if not arg then return nil, "closed" end
    args[i] = arg:sub(1, len)
  end
  return args
end

local function bulk(v)
  if v == nil then return "$-1\r\n" end
  v = tostring(v)
  return ("$%d\r\n%s\r\n"):format(#v, v)
end

local function err(msg) return "-ERR " .. msg .. "\r\n" end

local COMMANDS = {}

function COMMANDS.PING(kv, args) return args[2] and bulk(args[2]) or "+PONG\r\n" end

function COMMANDS.GET(kv, args)
  if #args ~= 2 then return err("wrong number of arguments for 'get' command") end
  return bulk(kv:get(args[2]))
end

function COMMANDS.SET(kv, args)
  local ttl = 0                                -- never expires
  if #args == 5 and args[4]:upper() == "EX" then
    ttl = tonumber(args[5])
    if not ttl or ttl <= 0 then return err("invalid expire time in 'set' command") end
  elseif #args ~= 3 then
    return err("syntax error")
  end
  local ok, why = kv:set(args[2], args[3], ttl)
  if not ok then return err(why) end
  return "+OK\r\n"
end

function COMMANDS.DEL(kv, args)
  local n = 0
  for i = 2, #args do
    if kv:get(args[i]) ~= nil then n = n + 1; kv:delete(args[i]) end
  end
  return ":" .. n .. "\r\n"
end

function COMMANDS.EXISTS(kv, args)
  local n = 0
  for i = 2, #args do if kv:get(args[i]) ~= nil then n = n + 1 end end
  return ":" .. n .. "\r\n"
end

proxy {
  name = "kv",
  from = { type = "tcp", host = "127.0.0.1", port = 6380 },
  idle_timeout = 300,
  to = { type = "service", serve = function(client)
    local kv = core.shared("kv")
    while true do
      local args, why = read_command(client)
      if not args then
        if why ~= "closed" then client:write(err("Protocol error: " .. why)) end
        return
      end
      local name = (args[1] or ""):upper()
      if name == "QUIT" then return client:write("+OK\r\n") end
      local command = COMMANDS[name]
      if #args == 0 then
        -- an empty inline line: nothing to answer
      elseif command then
        client:write(command(kv, args))
      else
        client:write(err(("unknown command '%s'"):format(args[1])))
      end
    end
  end },
}
