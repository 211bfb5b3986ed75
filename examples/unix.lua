-- examples/unix.lua: a TCP port in front of a service that listens on a unix socket (an app
-- server, a database's local socket), and a unix socket in front of a TCP service that only
-- local users of one group may reach. Try: build/netproxy examples/unix.lua
proxy {
  name = "app",
  from = { type = "tcp", host = "127.0.0.1", port = 8081 },
  to   = { type = "unix", path = "/tmp/netproxy-example-app.sock" },
}

proxy {
  name = "local-only",
  from = { type = "unix", path = "/tmp/netproxy-example-local.sock", mode = "0660" },
  to   = { type = "tcp", host = "127.0.0.1", port = 8080 },
  -- the client's uid, gid and pid come from the kernel (SO_PEERCRED)
  accept = function(conn)
    if conn.peer and conn.peer.uid == 0 then return true end
    return nil, "only root may use this socket"
  end,
}
