-- examples/balance.lua: one port in front of three web backends, spread by smooth weighted
-- round robin (web2 gets twice web1's share, web3 as much as web1), a fourth server only
-- for when all three are down, and an HTTP health check run by one process for all workers.
-- A backend that refuses a connect is skipped at once (the client does not notice) and left
-- alone for fail_timeout seconds after max_fails failures.
proxy {
  name = "web",
  from = { type = "tcp", host = "127.0.0.1", port = 8080 },
  to = {
    type = "tcp",
    servers = {
      "127.0.0.1:8081",
      { host = "127.0.0.1", port = 8082, weight = 2 },
      "127.0.0.1:8083",
      { host = "127.0.0.1", port = 8090, backup = true },   -- "sorry, we are down" page
    },
    balance = "roundrobin",     -- or leastconn, source, random, first, function(servers, conn)
    retries = 2,                -- two more servers tried when a connect fails
    max_fails = 3, fail_timeout = 10,
    check = {
      interval = 2, timeout = 1, rise = 2, fall = 3,
      send = "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n",
      expect = "^HTTP/1%.[01] 200",
    },
  },
}

server { stats = "127.0.0.1:9100" }    -- netproxy_server_up{proxy="web",server="127.0.0.1:8081"} ...
