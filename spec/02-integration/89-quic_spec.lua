-- QUIC routed by its SNI (issue 33): a udp `from` with quic probes reads each flow's Initial
-- packets to its ClientHello and sends the flow, datagrams unchanged, to the server its SNI
-- picks. Real peers: Debian's ngtcp2 gtlsclient fetching a file over HTTP/3 from three
-- gtlsserver backends; Initials crafted in Python (spec/support/quic_initial.py: a hello over
-- two packets, in reverse order, version 2) toward echo peers; a flood of bogus Initials.
local h = require "spec.helpers"

local CRAFT = h.root .. "/spec/support/quic_initial.py"

local function python(...)
  local out, err, rc = h.run({ "python3", CRAFT, ... })
  assert.are.equal(0, rc, err)
  return out
end

-- gtlsserver on a free UDP port serving htdocs (a file "who" naming it).
local function h3_server(name)
  local pki = h.pki()
  local htdocs = h.tmp() .. "/htdocs-" .. name
  os.execute("mkdir -p " .. h.quote(htdocs))
  h.write(htdocs .. "/who", "server " .. name .. "\n")
  return h.on_free_port("gtlsserver " .. name, function(port)
    return h.spawn({ "gtlsserver", "-q", "-d", htdocs, "127.0.0.1", tostring(port),
                     pki .. "/localhost.key", pki .. "/localhost.pem" })
  end, { udp = true })
end

-- gtlsclient fetches https://HOST/who through port. Debian's gtlsclient (ngtcp2 0.12) sends
-- its <HOST> argument as the SNI, and ignores --sni: the name resolves to 127.0.0.1 through an
-- /etc/hosts of our own, bound over the real one in a mount namespace of its own (unshare).
local function fetch(port, host)
  local dir = h.tmp() .. "/dl-" .. host .. "-" .. port
  local hosts = h.write(h.tmpfile("hosts"), "127.0.0.1 localhost " .. host .. "\n")
  os.execute("rm -rf " .. h.quote(dir) .. " && mkdir -p " .. h.quote(dir))
  local cmd = ("mount --bind %s /etc/hosts && exec timeout 15 gtlsclient -q --exit-on-all-streams-close --download=%s %s %d https://%s/who")
              :format(h.quote(hosts), h.quote(dir), host, port, host)
  local out, err, rc = h.run({ "unshare", "-rm", "sh", "-c", cmd })
  return h.read(dir .. "/who"), ("rc=%s %s %s"):format(tostring(rc), out, err)
end

local function from_probes(probes, extra, settings)
  return ([[
proxy { name = "h3", udp_idle_timeout = 5, %s
        from = { type = "udp", host = "127.0.0.1", port = 0,
                 probes = { %s },
                 %s } }
]]):format(settings or "", probes, extra or "")
end

local function udp_to(port) return ('{ type = "udp", host = "127.0.0.1", port = %d }'):format(port) end

describe("QUIC routed by its SNI", function()
  after_each(h.stop_all)

  it("sends gtlsclient's HTTP/3 requests to three gtlsserver backends by SNI (two patterns, the fallback)", function()
    local a, b, c = h3_server("a"), h3_server("b"), h3_server("c")
    local np = h.netproxy_start(from_probes(
      ('{ match = "quic", sni = "a.test", to = %s }, { match = "quic", sni = "*.b.test", alpn = "h3", to = %s }')
        :format(udp_to(a.port), udp_to(b.port)),
      "fallback = " .. udp_to(c.port)))
    for host, want in pairs({ ["a.test"] = "server a", ["www.b.test"] = "server b", ["other.test"] = "server c" }) do
      local got, detail = fetch(np.ports.h3, host)
      assert.are.equal(want .. "\n", got, host .. ": " .. detail)
    end
    h.stop(np)
    local log = np.log()
    assert.truthy(log:find("-> 127.0.0.1:" .. a.port .. " sni=a.test alpn=h3 ", 1, true), log)
    assert.truthy(log:find("-> 127.0.0.1:" .. b.port .. " sni=www.b.test alpn=h3 ", 1, true), log)
    assert.truthy(log:find("-> 127.0.0.1:" .. c.port .. " sni=other.test alpn=h3 ", 1, true), log)
  end)

  it("reads a ClientHello over two Initials sent in reverse order, versions 1 and 2; the datagrams go unchanged", function()
    local one, other = h.udp_echo_server(), h.udp_echo_server()
    local np = h.netproxy_start(from_probes(
      ('{ match = function(hello, conn) return hello.sni == "fn.example" and conn.sni == hello.sni and conn.ja4:match("^q1[23]d") ~= nil end, to = %s }, ' ..
       '{ match = "quic", sni = "a.example", to = %s }'):format(udp_to(other.port), udp_to(one.port)),
      "fallback = " .. udp_to(other.port)))
    for _, version in ipairs({ "1", "2" }) do
      -- a 1,500-byte padding extension: the hello spans both packets; the echo answers each
      -- datagram with itself, so "same=2" is both held datagrams through, unchanged, in order
      local out = python("send", "127.0.0.1", tostring(np.ports.h3), version, "a.example", "h3", "2", "reverse", "1500")
      assert.truthy(out:find("ok=2 same=2", 1, true), "version " .. version .. ": " .. out)
    end
    local out = python("send", "127.0.0.1", tostring(np.ports.h3), "2", "fn.example", "h3", "1", "forward", "0")
    assert.truthy(out:find("ok=1 same=1", 1, true), out)
    h.stop(np)
    local log = np.log()
    local _, n = log:gsub("-> 127%.0%.0%.1:" .. one.port .. " sni=a%.example alpn=h3 in=%d+ out=%d+ datagrams_in=2 datagrams_out=2", "")
    assert.are.equal(2, n, log)
    assert.truthy(log:find("-> 127.0.0.1:" .. other.port .. " sni=fn.example", 1, true), log)
  end)

  it("sends a flow to a pool of servers when its probe's to has servers (roundrobin over flows)", function()
    local e1, e2 = h.udp_echo_server(), h.udp_echo_server()
    local np = h.netproxy_start(from_probes(
      ('{ match = "quic", sni = "*.example", to = { type = "udp", servers = { "127.0.0.1:%d", "127.0.0.1:%d" } } }')
        :format(e1.port, e2.port)))
    for _ = 1, 2 do
      local out = python("send", "127.0.0.1", tostring(np.ports.h3), "1", "pool.example", "h3", "1", "forward", "0")
      assert.truthy(out:find("ok=1 same=1", 1, true), out)
    end
    h.stop(np)
    local log = np.log()
    assert.truthy(log:find("-> 127.0.0.1:" .. e1.port .. " sni=pool.example", 1, true), log)
    assert.truthy(log:find("-> 127.0.0.1:" .. e2.port .. " sni=pool.example", 1, true), log)
  end)

  it("holds at most 16 datagrams while probing: then the fallback gets them, in order, and the rest", function()
    local echo = h.udp_echo_server()
    local np = h.netproxy_start(from_probes(
      '{ match = "quic", sni = "never.example", to = { type = "udp", host = "127.0.0.1", port = 9 } }',
      "fallback = " .. udp_to(echo.port)))
    -- a hello over 20 Initials, the last first: 16 held, the 17th cannot be: the flow goes to
    -- the fallback, the 16 first, then the 17th and the others (the echo answers each alike)
    local out = python("send", "127.0.0.1", tostring(np.ports.h3), "1", "a.example", "h3", "20", "reverse", "16000")
    assert.truthy(out:find("ok=20 same=20", 1, true), out)
    h.wait_log(np, "not a QUIC ClientHello %(too many datagrams before a whole ClientHello%): to the fallback")
  end)

  it("ends at probe_timeout a flow whose hello never completes (fallback, or dropped and counted)", function()
    local echo = h.udp_echo_server()
    local np = h.netproxy_start(from_probes(
      '{ match = "quic", sni = "a.example", to = { type = "udp", host = "127.0.0.1", port = 9 } }',
      "probe_timeout = 0.5, fallback = " .. udp_to(echo.port)) .. from_probes(
      '{ match = "quic", sni = "a.example", to = { type = "udp", host = "127.0.0.1", port = 9 } }',
      "probe_timeout = 0.5"):gsub('name = "h3"', 'name = "nofb"'))
    local udp = require "spec.support.udp"
    local list = {}
    for line in python("craft", "1", "a.example", "h3", "3", "forward", "0"):gmatch("[^\n]+") do
      list[#list + 1] = line:gsub("..", function(x) return string.char(tonumber(x, 16)) end)
    end
    local c, d = udp.new(), udp.new()
    c:send(np.ports.h3, list[1])             -- a third of the hello, then nothing
    d:send(np.ports.nofb, list[1])
    local t0 = h.now()
    assert.are.equal(list[1], c:recv(3))     -- after probe_timeout, through the fallback
    assert.truthy(h.now() - t0 >= 0.4, "too soon: " .. (h.now() - t0))
    h.wait_log(np, "nofb: udp [^\n]+ %-> none [^\n]*end=refused: not QUIC %(probe_timeout: no whole ClientHello%) and no fallback")
    assert.is_nil(d:recv(0.2))
    c:close()
    d:close()
  end)

  it("costs bounded memory for a flood of bogus Initials and never delays a real one", function()
    local echo = h.udp_echo_server()
    local np = h.netproxy_start(from_probes(
      ('{ match = "quic", sni = "a.example", to = %s }'):format(udp_to(echo.port)),
      "probe_timeout = 1", "max_flows = 200,"))
    local rss0 = h.usage(np.pid)
    -- 3,000 datagrams from 3,000 source ports: random bytes, another version, short
    -- headers, Initials that do not decrypt, CRYPTO frames cut short, half hellos
    local out = python("flood", "127.0.0.1", tostring(np.ports.h3), "3000")
    local ms = tonumber(out:match("ok=1 ms=(%d+)"))
    assert.truthy(ms, out)
    assert.truthy(ms < 1000, out)
    -- (ASan keeps freed memory in quarantine: its RSS says nothing of ours)
    local rss1 = h.usage(np.pid)
    if not h.sanitized then assert.truthy(rss1 - rss0 < 32 * 1024, ("RSS grew by %d KiB"):format(rss1 - rss0)) end
    h.wait_log(np, "not a QUIC ClientHello %([^)]+%): dropped")
    -- every bogus one refused: counted (core.stats via the log of the ended flows)
    h.wait_until(function() return select(2, np.log():gsub("end=refused", "")) >= 2000 end, 10, "refusals")
  end)

  it("checks its probes (--check)", function()
    local cases = {
      { '{ match = "tls", to = { type = "udp", host = "127.0.0.1", port = 1 } }', 'match wants "quic" or a function' },
      { '{ match = "quic", sni = "", to = { type = "udp", host = "127.0.0.1", port = 1 } }', "sni: want a host pattern" },
      { '{ match = "quic" }', "probe 1: missing to" },
      { '{ match = "quic", to = { type = "tcp", host = "127.0.0.1", port = 1 } }', "a udp from wants a udp to" },
      { '{ match = "quic", port = 3, to = { type = "udp", host = "127.0.0.1", port = 1 } }', "unknown parameter 'port'" },
      { '{ match = "quic", to = { type = "udp", host = "127.0.0.1", port = 1, hook = function() end } }', "probes[1].to: hook: not here" },
    }
    for _, c in ipairs(cases) do
      local path = h.write(h.tmpfile("c.lua"), from_probes(c[1]))
      local out, err, rc = h.run({ h.netproxy, "--check", path })
      assert.are_not.equal(0, rc)
      assert.truthy((out .. err):find(c[2], 1, true), c[2] .. " in: " .. out .. err)
    end
    local path = h.write(h.tmpfile("c.lua"), from_probes('{ match = "quic", to = ' .. udp_to(1) .. ' }') ..
                           '\nproxy { name = "x", from = { type = "udp", port = 0, fallback = ' .. udp_to(1) .. ' }, to = ' .. udp_to(1) .. ' }')
    local out, err = h.run({ h.netproxy, "--check", path })
    assert.truthy((out .. err):find("fallback and probe_timeout go with probes", 1, true), out .. err)
  end)
end)
