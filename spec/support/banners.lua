-- Banner backends for pool specs: np-peer servers that say their name (a letter) first, then
-- echo, so each client knows which one it reached (60-pools, 80-control).
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

local _M = {}

-- The banner of the backend a client reached through port (nil and why when none), the
-- client bound to source (an address of 127/8) when given.
function _M.reach(port, source)
  if source then
    local out, err = h.run({ "sh", "-c", ("socat -t 2 - TCP:127.0.0.1:%d,bind=%s </dev/null"):format(port, source) })
    local name = out:match("^(%w+)\n")
    return name, name == nil and ("no banner: " .. out .. err) or nil
  end
  local c, err = tcp.connect(port)
  if not c then return nil, err end
  local got, why = c:receive(2, 5)
  c:close()
  if #got < 2 then return nil, why end
  return got:sub(1, 1)
end

-- Backends a, b, c...: banner servers named by a letter.
function _M.backends(n)
  local list = {}
  for i = 1, n do
    local name = string.char(96 + i)
    list[name] = h.peer_server("banner", { "--text", name })
    list[i] = list[name]
  end
  return list
end

-- How many connections netproxy has logged as ended.
function _M.ends(np)
  local n = 0
  for _ in np.log():gmatch("end=") do n = n + 1 end
  return n
end

-- n clients one after the other, each one's end logged before the next: the reached names.
function _M.clients(np, port, n)
  local seen = {}
  for i = 1, n do
    local before = _M.ends(np)
    seen[i] = assert(_M.reach(port))
    h.wait_until(function() return _M.ends(np) > before end, 5, "the connection's end")
  end
  return table.concat(seen)
end

return _M
