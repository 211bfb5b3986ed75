-- `source = "ADDR"` on a `to`: the address outgoing connections are made from (nginx's
-- proxy_bind, HAProxy's source, socat's bind=), done once in np_dial (src/dial.c) for the
-- routed proxy and core.connect alike. The backend here is a second netproxy whose log line
-- names each connection's client: it must read 127.0.0.2, not 127.0.0.1.
local h = require "spec.helpers"

local function config(text)
  return h.write(h.tmpfile("config.lua"), text)
end

describe("source = ADDR on a to", function()
  local echo, back
  setup(function()
    echo = h.peer_server("echo")
    -- the backend: tcp for the tcp tests, socks5 for the socks5 one; both name their clients
    back = h.netproxy_start(([[
proxy { name = "back", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "back_socks", from = { type = "socks5", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" } } }
]]):format(echo.port))
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  -- One exchange through port; the backend's proxy `name` must have had it from 127.0.0.2.
  local function reaches_from_127_0_0_2(port, name)
    back.mark()
    local got, how = h.talk(port, "ping", { want = 4 })
    assert.are.equal("ping", got, how)
    h.wait_log(back, name .. ": 127%.0%.0%.2:%d+ %-> [^\n]* end=eof")
    assert.is_nil(back.log():find(name .. ": 127.0.0.1:", 1, true))
  end

  it("tcp, routed (the core's own connect): the backend sees 127.0.0.2", function()
    local np = h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d, source = "127.0.0.2" } }
]]):format(back.ports.back), { "-vv" })
    assert.truthy(np.full_log():find("p: routed to ", 1, true))
    reaches_from_127_0_0_2(np.ports.p, "back")
  end)

  it("tcp through the session (core.connect's source option): the backend sees 127.0.0.2", function()
    local np = h.netproxy_start(([[
proxy { name = "p", accept = function() return true end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d, source = "127.0.0.2" } }
]]):format(back.ports.back), { "-vv" })
    assert.is_nil(np.full_log():find("p: routed to ", 1, true))
    reaches_from_127_0_0_2(np.ports.p, "back")
  end)

  it("socks5: the proxy is reached from 127.0.0.2", function()
    local np = h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "socks5", proxy_host = "127.0.0.1", proxy_port = %d,
               host = "127.0.0.1", port = %d, source = "127.0.0.2" } }
]]):format(back.ports.back_socks, echo.port))
    reaches_from_127_0_0_2(np.ports.p, "back_socks")
  end)

  it("a pool: its servers are reached from the to's source", function()
    local np = h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { "127.0.0.1:%d" }, source = "127.0.0.2" } }
]]):format(back.ports.back))
    reaches_from_127_0_0_2(np.ports.p, "back")
  end)

  it("a pool's active checks connect from the to's source too", function()
    back.mark()
    h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", servers = { "127.0.0.1:%d" }, source = "127.0.0.2",
               check = { interval = 0.2, timeout = 1 } } }
]]):format(back.ports.back))
    h.wait_log(back, "back: 127%.0%.0%.2:%d+ %-> ")     -- a check: no client connects here
    assert.is_nil(back.log():find("back: 127.0.0.1:", 1, true))
  end)

  it("core.connect: a source that is not an IP address is a Lua error", function()
    local np = h.netproxy_start(([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = function(client, conn)
          local core = require "netproxy.core"
          local ok, err = pcall(core.connect, "127.0.0.1", %d, { source = "localhost" })
          client:write(tostring(err))
        end } }
]]):format(back.ports.back))
    local got = h.talk(np.ports.p, "", { want = "address" })
    assert.truthy(got:find("source must be an IP address", 1, true), got)
  end)

  it("a malformed address fails --check, with file:line", function()
    local path = config([[
proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = 9, source = "127.0.0.300" } }
proxy { name = "q", from = { type = "tcp", host = "127.0.0.1", port = 0, source = "127.0.0.2" },
        to = { type = "tcp", host = "127.0.0.1", port = 9 } }
proxy { name = "c", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "chain", host = "127.0.0.1", port = 9,
               hops = { { type = "socks5", proxy_host = "127.0.0.1", proxy_port = 1080, source = "127.0.0.2" } } } }
]])
    local out, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    local text = out .. err
    assert.truthy(text:find(":1: proxy 'p': to: source: bad address '127.0.0.300'", 1, true), text)
    assert.truthy(text:find(":3: proxy 'q': from: source: only a `to` connects from an address", 1, true), text)
    assert.truthy(text:find(":5: proxy 'c': to: hops: hop 1: source is the chain's", 1, true), text)
  end)

  it("an address this host does not have fails at start, naming the proxy", function()
    local path = config([[
proxy { name = "away", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = 9, source = "192.0.2.1" } }
]])
    local _, _, check_rc = h.run({ h.netproxy, "--check", path })
    assert.are.equal(0, check_rc)      -- well formed: --check may run on another host
    local out, err, rc = h.run({ h.netproxy, "-w", "1", path })
    assert.are_not.equal(0, rc)
    assert.truthy((out .. err):find("proxy 'away': source 192.0.2.1: not an address of this host", 1, true), out .. err)
  end)
end)
