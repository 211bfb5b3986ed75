-- examples/connect-tunnel.lua: Net::Proxy's connect-tunnel as a config. Standard input and
-- output are relayed to an SSH server through a corporate HTTP CONNECT proxy, so ssh can use
-- netproxy as its ProxyCommand:
--   ssh -o ProxyCommand='build/netproxy examples/connect-tunnel.lua' server.example
-- The one-line form does the same without a script and takes ssh's %h and %p:
--   ssh -o ProxyCommand='netproxy -P proxy.example:3128 %h %p' server.example
-- (add --proxy-user USER and set NETPROXY_PROXY_PASS for a proxy that wants a password).
proxy {
  name = "tunnel",
  from = { type = "stdio" },
  to   = { type = "connect", host = "server.example", port = 22,
           proxy_host = "proxy.example", proxy_port = 3128,
           proxy_agent = "netproxy" },
}
server { log_level = "warning" }   -- ssh shows our stderr on the terminal
