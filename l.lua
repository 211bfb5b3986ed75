proxy { name = "a", from = { type = "udp", host = "127.0.0.1", port = 47200 }, to = { type = "udp", host = "127.0.0.1", port = 9 } }
