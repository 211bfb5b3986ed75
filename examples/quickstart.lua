-- examples/quickstart.lua: the smallest useful netproxy config. Clients connect to
-- 127.0.0.1:8123 and are relayed to the service on 127.0.0.1:9123 (./run-example starts a
-- small one there). Run it with: build/netproxy examples/quickstart.lua
proxy {
  name = "quickstart",
  from = { type = "tcp", host = "127.0.0.1", port = 8123 },
  to   = { type = "tcp", host = "127.0.0.1", port = 9123 },
}

server { log_level = "info" }   -- show each accepted connection, not only the finished ones
