-- examples/sslh.lua: SSH and HTTPS on one port, Net::Proxy's sslh script. Port 443 faces
-- the world; an SSH client is recognised by its "SSH-2.0-" banner (or by keeping quiet for
-- a second, as some clients wait for the server to speak first) and goes to sshd; a TLS
-- ClientHello goes to the web server. netproxy terminates nothing and holds no key.
proxy {
  name = "sslh",
  from = {
    type = "dual", host = "0.0.0.0", port = 443,
    timeout = 1,                                                  -- Net::Proxy's default
    server_first = { type = "tcp", host = "127.0.0.1", port = 22 },   -- a silent client
    probes = {
      { match = "ssh", to = { type = "tcp", host = "127.0.0.1", port = 22 } },
      { match = "tls", to = { type = "tcp", host = "127.0.0.1", port = 8443 } },
      { match = "http", to = { type = "tcp", host = "127.0.0.1", port = 8080 } },
    },
    -- anything else that talks: closed (add client_first = { ... } to send it somewhere)
  },
}
