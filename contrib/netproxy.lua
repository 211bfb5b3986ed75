-- /etc/netproxy/netproxy.lua: the config the netproxy service runs (netproxy.lua(5)).
-- As shipped it is a plain TCP relay on the loopback only: 127.0.0.1:6789 to a service on
-- 127.0.0.1:9876, reachable from this machine alone. Edit it, check it with
--   netproxy --check /etc/netproxy/netproxy.lua
-- and apply it with `systemctl reload netproxy` (SIGHUP). More configs to start from:
-- /usr/share/netproxy/examples/ (HTTP CONNECT proxy, SSH and HTTPS on one port, TLS, hooks).
proxy {
  name = "local",
  from = { type = "tcp", host = "127.0.0.1", port = 6789 },
  to   = { type = "tcp", host = "127.0.0.1", port = 9876 },
  idle_timeout = 600,
}

server {
  log_level = "notice",
  -- stats = "127.0.0.1:9100",      -- Prometheus metrics at /metrics
  -- runtime control: `netproxy ctl show servers`, `set server ... state drain`, `dict set ...`
  -- (root and the user netproxy only; netproxy(1), "CTL")
  control = "/run/netproxy/control.sock",
}
