-- examples/mangle.lua: an HTTP proxy that logs every requested host and rewrites some of
-- them: the "legacy fallback during a network change" use case. route runs for a CONNECT
-- and for each plain http:// request alike. Two ways to change a rewrite:
--   - the table in the script (REWRITES): edit it and reload (SIGHUP, or `netproxy ctl reload`);
--   - the shared dict "rewrites", changed live from the control socket, for the next
--     connection in every worker, with no reload (it wins over the table):
--   build/netproxy --set control=$XDG_RUNTIME_DIR/mangle.sock examples/mangle.lua
--   build/netproxy ctl -S $XDG_RUNTIME_DIR/mangle.sock dict set rewrites old.example new.example
--   build/netproxy ctl -S $XDG_RUNTIME_DIR/mangle.sock dict del rewrites old.example
--   curl -p -x http://127.0.0.1:3128 https://old-intranet.example/
--   curl -x http://127.0.0.1:3128 http://legacy.example/
local REWRITES = {
  ["old-intranet.example"] = "intranet.example",     -- a host that moved
  ["legacy.example"] = "127.0.0.1",                  -- a host served locally for now
}
local ALLOWED_PORTS = { [443] = true, [22] = true, [80] = true }

server { shared = { rewrites = "1m" } }
local core = require "netproxy.core"

proxy {
  name = "mangle",
  from = {
    type = "connect", host = "127.0.0.1", port = 3128,
    route = function(host, port, conn)
      if not ALLOWED_PORTS[port] then return nil, "port " .. port .. " is not served here" end
      local live = core.shared("rewrites")         -- the same dict in every worker
      local new = live:get(host:lower()) or REWRITES[host:lower()]
      conn:log("notice", "%s:%d asked by %s%s", host, port, conn.client,
               new and (" -> " .. new) or "")
      return new or host, port
    end,
  },
  -- `to` may be left out: tcp to the host and port the client asked for (as routed).
}
