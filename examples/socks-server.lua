-- examples/socks-server.lua: a SOCKS5 server for one team. Each member logs in with a
-- password, every request is logged with who asked for what, and some names are rewritten
-- (a host that moved, a service served locally for now): the mangling use case, for SOCKS.
-- Edit TEAM or REWRITES and reload with SIGHUP; nothing is recompiled.
--   build/netproxy examples/socks-server.lua
--   curl --socks5-hostname alice:wonderland@127.0.0.1:1080 https://old-wiki.team.example/
--   ssh -o ProxyCommand='netproxy -P socks5://127.0.0.1:1080 --proxy-user bob %h %p' host
local TEAM = { alice = "wonderland", bob = "builder" }
local REWRITES = {
  ["old-wiki.team.example"] = "wiki.team.example",   -- a host that moved
  ["legacy.team.example"] = "127.0.0.1",             -- a service served locally for now
}
local PORTS = { [22] = true, [80] = true, [443] = true }

proxy {
  name = "team-socks",
  from = {
    type = "socks5", host = "127.0.0.1", port = 1080,
    users = TEAM,                                    -- only username/password is offered
    route = function(host, port, conn)
      if not PORTS[port] then return nil, "port " .. port .. " is not served here" end
      local new = REWRITES[host:lower()]
      conn:log("notice", "%s asks for %s:%d%s", conn.stash.user, host, port, new and (" -> " .. new) or "")
      return new or host, port
    end,
  },
  -- `to` may be left out: tcp to the target the client asked for (as routed).
}
