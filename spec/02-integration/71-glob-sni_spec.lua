-- A tls probe's sni pattern with several `*` against a long name the client chose (issue 25,
-- item 4): the name is matched at once, and the process serves its other connections
-- meanwhile (a Lua pattern's backtracking took 85 s on 4,000 dashes, the whole process stood
-- still); --check refuses an sni or alpn that is not a pattern.
local h = require "spec.helpers"

local function be16(n) return string.char(math.floor(n / 256), n % 256) end
local function be24(n) return string.char(math.floor(n / 65536), math.floor(n / 256) % 256, n % 256) end

-- A TLS 1.2 ClientHello in one record, with a server_name extension holding name.
local function client_hello(name)
  local sni = "\0" .. be16(#name) .. name                       -- host_name, its length, the name
  local ext = "\0\0" .. be16(#sni + 2) .. be16(#sni) .. sni
  local body = "\3\3" .. ("r"):rep(32) .. "\0" .. be16(2) .. "\19\1" .. "\1\0" .. be16(#ext) .. ext
  local hs = "\1" .. be24(#body) .. body
  return "\22\3\1" .. be16(#hs) .. hs
end

describe("dual's sni pattern", function()
  after_each(h.stop_all)

  it("takes a ClientHello whose SNI is 4,000 dashes at once, and the process serves another connection meanwhile", function()
    local echo = h.peer_server("echo")
    local branch = h.peer_server("banner", { "--text", "SNI-BRANCH" })
    local np = h.netproxy_start(([[
proxy { name = "sniffed",
        from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 5,
                 probes = { { match = "tls", sni = "*-*-*.example.org", to = { type = "tcp", host = "127.0.0.1", port = %d } } },
                 client_first = { type = "tcp", host = "127.0.0.1", port = %d } } }
proxy { name = "plain", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(branch.port, echo.port, echo.port))
    -- no match (one label, no ".example.org"): client_first, the echo, gets the ClientHello
    local dashes = client_hello(("-"):rep(4000))
    local c = h.connect(np.ports.sniffed)
    c:send(dashes)
    local t0 = h.now()
    local out, how = h.talk(np.ports.plain, "ping\n", { want = "ping\n", timeout = 5 })
    assert.are.equal("ping\n", out, how)
    local echoed = c:read(#dashes, 5)
    assert.are.equal(#dashes, #echoed)
    assert.is_true(echoed == dashes)
    assert.is_true(h.now() - t0 < 5)
    c:close()
    -- a match: dashes in a label of their own before .example.org take the probe's branch
    local out2 = h.talk(np.ports.sniffed, client_hello(("-"):rep(4000) .. ".example.org"),
                        { want = "SNI%-BRANCH", timeout = 5, keep_open = true })
    assert.truthy(out2:find("SNI-BRANCH", 1, true), out2)
    assert.truthy(h.talk(np.ports.sniffed, client_hello("a-b-c.example.org"),
                         { want = "SNI%-BRANCH", timeout = 5, keep_open = true }):find("SNI-BRANCH", 1, true))
  end)

  it("is refused by --check when it is not a string", function()
    for _, v in ipairs({ "sni = 42", "alpn = {}", 'sni = ""' }) do
      local config = h.write(h.tmpfile("config.lua"), ([[
proxy { name = "sniffed",
        from = { type = "dual", host = "127.0.0.1", port = 0,
                 probes = { { match = "tls", %s, to = { type = "tcp", host = "127.0.0.1", port = 1 } } } } }
]]):format(v))
      local out, err, rc = h.run({ h.netproxy, "--check", config })
      assert.are_not.equal(0, rc, v)
      assert.truthy((out .. err):find("want a host pattern", 1, true), out .. err)
    end
  end)
end)
