-- examples/dns.lua: a DNS forwarder. Queries to 127.0.0.1:5353 go to the resolver at
-- 127.0.0.1:53, each client address:port a flow of its own; a hook logs each query's name
-- and type (run with -v to see them, e.g. dig @127.0.0.1 -p 5353 example.org). The
-- datagrams are passed on unchanged (the hook returns nil).
local TYPES = { [1] = "A", [2] = "NS", [5] = "CNAME", [6] = "SOA", [12] = "PTR", [15] = "MX",
                [16] = "TXT", [28] = "AAAA", [33] = "SRV", [65] = "HTTPS", [255] = "ANY" }

-- The question of a DNS message (RFC 1035 4.1): QNAME as labels after the 12-byte header,
-- then QTYPE. Returns name, type; nil when the message is too short or malformed.
local function question(msg)
  if #msg < 12 or msg:byte(5) * 256 + msg:byte(6) == 0 then return nil end   -- QDCOUNT
  local labels, pos = {}, 13
  while true do
    local len = msg:byte(pos)
    if not len or len >= 64 then return nil end   -- past the end, or a pointer: not in a query
    if len == 0 then break end
    labels[#labels + 1] = msg:sub(pos + 1, pos + len)
    pos = pos + 1 + len
  end
  local hi, lo = msg:byte(pos + 1, pos + 2)
  if not lo then return nil end
  local qtype = hi * 256 + lo
  return (#labels > 0 and table.concat(labels, ".") or "."), TYPES[qtype] or tostring(qtype)
end

proxy {
  name = "dns",
  from = { type = "udp", host = "127.0.0.1", port = 5353,
           hook = function(datagram, conn)
             local name, qtype = question(datagram)
             if name then conn:log("info", "query %s %s from %s", name, qtype, conn.client)
             else conn:log("info", "not a DNS query (%d bytes) from %s", #datagram, conn.client) end
           end },
  to   = { type = "udp", host = "127.0.0.1", port = 53 },
  udp_idle_timeout = 10,      -- a resolver's client asks once per source port: short flows
}
