-- examples/ratelimit.lua: a TCP proxy that refuses a client address past LIMIT new
-- connections per second, counted across every worker in a shared dict (each second's
-- count is a key that expires by itself).
--   build/netproxy examples/ratelimit.lua
--   for i in $(seq 20); do socat -u - TCP:127.0.0.1:6790 </dev/null; done
local core = require "netproxy.core"

local LIMIT = 10

server { workers = 2, shared = { ratelimit = "1m" } }

proxy {
  name = "limited",
  from = { type = "tcp", host = "127.0.0.1", port = 6790 },
  to = { type = "tcp", host = "127.0.0.1", port = 9876 },
  accept = function(conn)
    local ip = conn.client:match("^%[?(.-)%]?:%d+$")
    local key = ip .. "@" .. math.floor(core.now())
    local n = core.shared("ratelimit"):incr(key, 1, 0, 2)
    if n > LIMIT then return nil, ("rate limit: %d connections from %s this second"):format(n, ip) end
    return true
  end,
}
