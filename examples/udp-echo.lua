-- examples/udp-echo.lua: a UDP echo service answered by netproxy itself: each datagram to
-- 127.0.0.1:7007 comes back as it was (try: socat - UDP:127.0.0.1:7007). "stats" answers
-- how many datagrams this client's flow has sent.
proxy {
  name = "udp-echo",
  from = { type = "udp", host = "127.0.0.1", port = 7007 },
  to   = { type = "service",
           datagram = function(data, conn)
             conn.stash.n = (conn.stash.n or 0) + 1
             if data == "stats\n" or data == "stats" then
               return ("%d datagrams from %s\n"):format(conn.stash.n, conn.client)
             end
             return data
           end },
}
