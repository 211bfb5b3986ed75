-- examples/cluster-ban.lua: a TCP proxy whose per-client counter and ban list live in Redis,
-- so that every netproxy instance behind the same balancer counts and refuses alike. Redis is
-- spoken through OpenResty's lua-resty-redis as Debian ships it (lua-nginx-redis: require
-- "nginx.redis"), unchanged, over netproxy's cosockets (require "netproxy.ngx": docs/ngx.md).
-- Its connections to Redis are kept alive in each worker's pool: one or two per worker, not
-- one per client.
--   redis-server --port 6379 &
--   build/netproxy examples/cluster-ban.lua          (on each instance)
--   redis-cli sadd ban 127.0.0.1                      (refused on every instance from now on)
local ngx = require "netproxy.ngx"
local redis = require "nginx.redis"

local REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

server { workers = 2 }

-- One round trip: is ip banned, and the cluster-wide count of its connections (this one in).
local function ask_redis(ip)
  local red = redis:new()
  red:set_timeouts(1000, 1000, 1000)        -- milliseconds, as in OpenResty
  local ok, err = red:connect(REDIS_HOST, REDIS_PORT)
  if not ok then return nil, err end
  red:init_pipeline()
  red:sismember("ban", ip)
  red:incr("count:" .. ip)
  local res, perr = red:commit_pipeline()
  if not res then return nil, perr end
  local reused = red:get_reused_times()
  red:set_keepalive(10000, 16)              -- idle 10 s, at most 16 idle per worker
  return res[1] == 1, res[2], reused
end

proxy {
  name = "guarded",
  from = { type = "tcp", host = "127.0.0.1", port = 6791 },
  to = { type = "tcp", host = "127.0.0.1", port = 9876 },
  accept = function(conn)
    local ip = conn.client:match("^%[?(.-)%]?:%d+$")
    local banned, count, reused = ask_redis(ip)
    if banned == nil then                   -- Redis away: let clients in, and say so
      ngx.log(ngx.WARN, "cluster-ban: redis: ", count)
      return true
    end
    ngx.log(ngx.NOTICE, "cluster-ban: ", ip, " connection ", count, " (redis connection reused ", reused, " times)")
    if banned then return nil, "banned cluster-wide" end
    return true
  end,
}
