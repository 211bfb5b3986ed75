-- examples/tcp.lua: Net::Proxy's first example. localhost:6789 -> remotehost:9876
-- (here 127.0.0.1:9876: put your server's name instead).
proxy {
  name = "web",
  from = { type = "tcp", host = "127.0.0.1", port = 6789 },
  to   = { type = "tcp", host = "127.0.0.1", port = 9876 },
}
