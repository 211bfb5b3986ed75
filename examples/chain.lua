-- examples/chain.lua: reaching servers through two proxies in a row: the office's HTTP
-- CONNECT proxy, then a SOCKS5 proxy on the other side of the fence. Each hop is reached
-- through the ones before it; the last one reaches the target.
--   build/netproxy examples/chain.lua
--   ssh -p 2222 git@127.0.0.1                 # -> git.example.org:22 through both proxies
--   curl --socks5-hostname 127.0.0.1:1080 https://intranet.example.org/
-- The same from the command line, for a single ssh:
--   ssh -o ProxyCommand='netproxy -P http://proxy.office.example:3128 -P socks5://bastion.example.org:1080 %h %p' git.example.org
local HOPS = {
  { type = "connect", proxy_host = "proxy.office.example", proxy_port = 3128 },
  { type = "socks5", proxy_host = "bastion.example.org", proxy_port = 1080,
    proxy_user = "me", proxy_pass = os.getenv("BASTION_PASS") or "" },
}

-- A fixed target: localhost:2222 is git.example.org's ssh.
proxy {
  name = "git",
  from = { type = "tcp", host = "127.0.0.1", port = 2222 },
  to = { type = "chain", host = "git.example.org", port = 22, hops = HOPS },
}

-- A local SOCKS5 server for the browser: whatever it asks for under example.org goes
-- through the chain (the bastion resolves the names).
proxy {
  name = "socks",
  from = { type = "socks5", host = "127.0.0.1", port = 1080,
           allow = { "*.example.org:443", "*.example.org:80" } },
  to = { type = "chain", hops = HOPS },
}

-- The chain with TLS to the target on top: a clear-text client gets a verified TLS connection.
proxy {
  name = "api",
  from = { type = "tcp", host = "127.0.0.1", port = 8443 },
  to = { type = "chain", host = "api.example.org", port = 443, hops = HOPS, tls = true },
}
