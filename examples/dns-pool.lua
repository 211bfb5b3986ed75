-- examples/dns-pool.lua: a DNS forwarder in front of three resolvers (docs/pools.md, "UDP
-- flows"). Each client address:port is a flow and the pool picks its resolver once: round
-- robin with weights, the backup only when both others are down. A resolver that refuses
-- (ICMP port unreachable) before answering is skipped, the query sent again to the next one,
-- so the client is answered on its first try. A check query every 2 seconds marks a resolver
-- that stops answering down for everybody: a resolver that drops queries without a word is
-- found only so. Try: dig @127.0.0.1 -p 5353 example.org
local QUERY = "\18\52\1\0\0\1\0\0\0\0\0\0\7example\3org\0\0\1\0\1"   -- id 0x1234: example.org A?

proxy {
  name = "dns",
  from = { type = "udp", host = "127.0.0.1", port = 5353 },
  to = { type = "udp",
         servers = { "127.0.0.1:5301",
                     { host = "127.0.0.1", port = 5302, weight = 2 },
                     { host = "127.0.0.1", port = 5303, backup = true } },
         retries = 2,                     -- further resolvers tried before the first answer
         max_fails = 1, fail_timeout = 10,
         check = { interval = 2, timeout = 1, rise = 2, fall = 2,
                   send = QUERY, expect = "^\18\52[\128-\255]" } },   -- its id, and QR set: an answer
  udp_idle_timeout = 10,      -- a resolver's client asks once per source port: short flows
}
