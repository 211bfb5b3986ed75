-- examples/log-traffic.lua: log a hex dump of the first bytes of each connection, both
-- ways, at debug level (run with -vv to see them). Bytes are passed on unchanged (the
-- hooks return nil); the direction with nothing left to dump still goes through the hook,
-- which costs a copy: for a permanent tap prefer a connector that peeks.
local FIRST = 64   -- bytes to dump per direction

local function hexdump(bytes)
  local hex = bytes:gsub(".", function(c) return ("%02x "):format(c:byte()) end)
  local text = bytes:gsub("[^%g ]", ".")
  return hex .. " |" .. text .. "|"
end

local function tap(direction)
  return function(data, conn)
    local seen = conn.stash[direction] or 0
    if seen < FIRST and #data > 0 then
      local chunk = data:sub(1, FIRST - seen)
      conn:log("debug", "%s %d+%d: %s", direction, seen, #chunk, hexdump(chunk))
      conn.stash[direction] = seen + #chunk
    end
    return nil
  end
end

proxy {
  name = "tap",
  from = { type = "tcp", host = "127.0.0.1", port = 6789, hook = tap("client->server") },
  to   = { type = "tcp", host = "127.0.0.1", port = 9876, hook = tap("server->client") },
}
