-- examples/sni.lua: route TLS by the name the client asks for (SNI), without terminating
-- it: each backend holds its own certificate and key, netproxy only reads the ClientHello.
proxy {
  name = "sni",
  from = {
    type = "dual", host = "0.0.0.0", port = 443,
    probes = {
      { match = "tls", sni = "*.intranet.example", to = { type = "tcp", host = "10.0.0.10", port = 443 } },
      { match = "tls", sni = "mail.example", to = { type = "tcp", host = "10.0.0.20", port = 443 } },
      { match = "tls", alpn = "h2", to = { type = "tcp", host = "127.0.0.1", port = 8443 } },
    },
    client_first = { type = "tcp", host = "127.0.0.1", port = 8443 },   -- any other client
  },
}
