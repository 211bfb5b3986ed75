-- dual sniffed by the core: when every target of a dual `from` is fixed (tcp or unix, no TLS,
-- no pool, no probe with a server side of its own) and nothing else runs in Lua before the
-- relay, the C core reads the client's first bytes, calls the probes once per arrival and
-- connects like a routed proxy (netproxy.session.route, dual.sniff, src/conn.c). From
-- outside, such a connection must look the same as one that runs dual's session: the same
-- bytes, log lines and ends. A proxy is made to run the session here by an accept function.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"

local function sniffed(np, name)
  return np.full_log():find("debug %[%d+%] " .. name .. ": routed by the client's first bytes") ~= nil
end

-- Two proxies over the same dual `from` fields: "d_<name>" (sniffed by the core) and
-- "s_<name>" (the session, made to run by an accept function).
local function pair(name, fields)
  local one = [[proxy { name = "%s", %s
  from = { type = "dual", host = "127.0.0.1", port = 0, %s } }
]]
  return one:format("d_" .. name, "", fields) .. one:format("s_" .. name, "accept = function() return true end,", fields)
end

-- The end of the last connection of proxy name: "target in=.. out=.. end=..", with the line
-- numbers of Lua errors left out (the two proxies' functions are on different lines).
local function end_of(np, name)
  local line = h.wait_log(np, "#%d+ " .. name .. ": 127%.0%.0%.1:%d+ %-> ([^\n]*)")
  return (line:gsub("time=[%d%.]+s ", ""):gsub(":%d+: ", ": "))
end

describe("dual sniffed by the core", function()
  local echo, banner, np, port

  setup(function()
    echo = h.peer_server("echo")
    banner = h.peer_server("banner", { "--text", "SSH-2.0-banner" })
    local e, closed = echo.port, h.closed_port()
    local http = ("{ match = \"http\", to = { type = \"tcp\", host = \"127.0.0.1\", port = %d } }"):format(e)
    local function probes(...) return "probes = { " .. table.concat({ ... }, ", ") .. " }," end
    np = h.netproxy_start(
      pair("strict", "timeout = 0.5, probe_timeout = 0.5, " .. probes(http)) ..
      pair("boom", probes('{ match = function(b) error("boom") end, to = { type = "tcp", host = "127.0.0.1", port = ' .. e .. ' } }')) ..
      pair("slow", "timeout = 5, server_first = { type = \"tcp\", host = \"127.0.0.1\", port = " .. e .. " },") ..
      pair("down", "timeout = 0.2, server_first = { type = \"tcp\", host = \"127.0.0.1\", port = " .. closed .. " },") ..
      pair("fallback", ("timeout = 0.3, %s client_first = { type = \"tcp\", host = \"127.0.0.1\", port = %d }, " ..
                        "server_first = { type = \"tcp\", host = \"127.0.0.1\", port = %d },")
                       :format(probes('{ match = "ssh", to = { type = "tcp", host = "127.0.0.1", port = ' .. banner.port .. ' } }',
                                      http), e, banner.port)) ..
      -- a `from` branch talks to the client: the session runs
      ([[proxy { name = "branch", from = { type = "dual", host = "127.0.0.1", port = 0,
          probes = { { match = "socks5", from = { type = "socks5", allow = { "127.0.0.1:*" } } } } } }
]]),
      { "-vv" })
    port = np.ports
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("is taken only when every target is fixed and nothing else runs in Lua", function()
    for _, name in ipairs({ "strict", "boom", "slow", "down", "fallback" }) do
      assert.is_true(sniffed(np, "d_" .. name), name .. "\n" .. np.full_log())
      assert.is_false(sniffed(np, "s_" .. name), name)
    end
    assert.is_false(sniffed(np, "branch"), "a probe with a server side runs the session")
  end)

  -- each case: what the client does, then the end both proxies must log alike
  local cases = {
    { "strict", "a client silent past `timeout`", "", { keep_open = true }, "end=refused: client silent for 0.5s" },
    { "strict", "a client that closes before a byte", "", {}, "end=refused: client closed$" },
    { "strict", "a client that closes while probed", "GE", {}, "end=refused: client closed while probed" },
    { "strict", "bytes no probe matches", "xyz\n", { keep_open = true }, "end=refused: no probe matched the first 4 bytes" },
    { "strict", "a probe still wanting bytes at probe_timeout", "GE", { keep_open = true },
      "end=refused: no probe matched the first 2 bytes" },
    { "strict", "a match", "GET / HTTP/1.0\r\n\r\n", {}, "in=18 out=18 end=eof" },
    { "boom", "a probe that raises an error", "hi\n", {}, "end=lua error: [^\n]*boom" },
    { "down", "a silent client whose server_first refuses", "", { keep_open = true }, "end=connect failed: refused" },
    { "fallback", "a client no probe matches (client_first)", "hello\n", { want = "hello\n" }, "in=6 out=6 end=eof" },
    { "fallback", "a silent client (server_first)", "", { keep_open = true, want = "SSH%-2%.0%-banner" }, "in=0 out=15 end=eof" },
    { "fallback", "a probe's match (ssh)", "SSH-2.0-me\r\n", { want = "SSH%-2%.0%-banner" }, "in=12 out=%d+ end=eof" },
  }
  for _, case in ipairs(cases) do
    local name, what, input, opts, want = case[1], case[2], case[3], case[4], case[5]
    it("ends as the session does for " .. what, function()
      local ends = {}
      for _, which in ipairs({ "d_", "s_" }) do
        local o = { keep_open = opts.keep_open, want = opts.want, timeout = 5 }
        h.talk(port[which .. name], input, o)
        ends[which] = end_of(np, which .. name)
        assert.truthy(ends[which]:find(want), which .. name .. ": " .. ends[which])
        np.mark()
      end
      assert.are.equal(ends.s_, ends.d_)
    end)
  end

  it("logs the probe that matched as the session does", function()
    local said = {}
    for _, which in ipairs({ "d_", "s_" }) do
      assert.are.same({ "GET / HTTP/1.0\r\n\r\n", "eof" }, { h.talk(port[which .. "fallback"], "GET / HTTP/1.0\r\n\r\n") })
      said[which] = h.wait_log(np, which .. "fallback: (dual: [^\n]*)")
      np.mark()
    end
    assert.are.equal("dual: probe 2 (http) matched after 18 bytes", said.d_)
    assert.are.equal(said.s_, said.d_)
  end)

  it("ends with negotiation_timeout when it is the nearer deadline", function()
    local config = pair("neg", "timeout = 5, server_first = { type = \"tcp\", host = \"127.0.0.1\", port = " .. echo.port .. " },")
    local np2 = h.netproxy_start((config:gsub("proxy {", "proxy { negotiation_timeout = 0.5,")), { "-vv" })
    assert.is_true(sniffed(np2, "d_neg"))
    local took = {}
    for _, which in ipairs({ "d_", "s_" }) do
      h.talk(np2.ports[which .. "neg"], "", { keep_open = true, timeout = 5 })
      took[which] = tonumber(h.wait_log(np2, which .. "neg: %S+ %-> %- in=0 out=0 time=([%d%.]+)s end=negotiation timeout\n"))
      assert.is_true(h.about(took[which], 0.5), which .. " after " .. took[which] .. "s")
    end
    h.stop(np2)
  end)
end)

describe("dual sniffed by the core, with hooks", function()
  local echo
  setup(function() echo = h.peer_server("echo") end)
  teardown(h.stop_all)

  it("gives hooks the conn object the session gives them, and runs the session when a hook may want conn.sni", function()
    local fields = ([[
      hook = function(data, conn)
        conn:log("notice", "seen target=%%s server=%%s sni=%%s", conn.target, conn.server, tostring(conn.sni))
      end,
      probes = { { match = "http", to = { type = "tcp", host = "127.0.0.1", port = %d,
                                          hook = function(d) return d:upper() end } } },]]):format(echo.port)
    local with_tls = fields:gsub("probes = {", 'probes = { { match = "tls", to = { type = "tcp", host = "127.0.0.1", port = ' ..
                                               echo.port .. ' } },', 1)
    local np = h.netproxy_start(pair("hooked", fields) .. ([[proxy { name = "tls_conn",
      from = { type = "dual", host = "127.0.0.1", port = 0, %s } }
]]):format(with_tls), { "-vv" })
    assert.is_true(sniffed(np, "d_hooked"))
    assert.is_false(sniffed(np, "tls_conn"), "conn.sni is set by the session's tls probe")
    local seen = {}
    for _, which in ipairs({ "d_", "s_" }) do
      assert.are.same({ "GET /X HTTP/1.0\r\n\r\n", "want" },
                      { h.talk(np.ports[which .. "hooked"], "GET /x http/1.0\r\n\r\n", { want = "\r\n\r\n" }) })
      seen[which] = h.wait_log(np, which .. "hooked: (seen [^\n]*)")
    end
    assert.are.equal("seen target=127.0.0.1:" .. echo.port .. " server=127.0.0.1:" .. echo.port .. " sni=nil", seen.d_)
    assert.are.equal(seen.s_, seen.d_)
    h.stop(np)
  end)

  it("stops a runaway probe at its budget, costing its own connection only", function()
    local np = h.netproxy_start(([[
proxy { name = "runaway", hook_budget = 0.2,
        from = { type = "dual", host = "127.0.0.1", port = 0,
                 probes = { { match = function(b) if b == "loop" then while true do end end return true end,
                              to = { type = "tcp", host = "127.0.0.1", port = %d } } } } }
]]):format(echo.port), { "-vv" })
    assert.is_true(sniffed(np, "runaway"))
    local stuck = assert(h.connect(np.ports.runaway))
    stuck:send("loop")
    h.wait_log(np, "runaway: 127[^\n]* end=lua error: [^\n]*budget")
    assert.are.same({ "ok\n", "eof" }, { h.talk(np.ports.runaway, "ok\n") })
    stuck:close()
    h.stop(np)
  end)

  it("keeps a client it is sniffing through a reload that changes its targets", function()
    local other = h.peer_server("reply", { "--text", "other\n", "--close" })
    local function config(listen, target)
      return ([[proxy { name = "r", from = { type = "dual", host = "127.0.0.1", port = %d, probe_timeout = 10,
        probes = { { match = "http", to = { type = "tcp", host = "127.0.0.1", port = %d } } } } }
]]):format(listen, target)
    end
    local path = h.write(h.tmpfile("sniffed.lua"), config(0, echo.port))
    local np = h.netproxy_start(path, { "-vv" })
    local listen = np.ports.r   -- the port bound: the reload keeps it
    local old = assert(tcp.connect(listen))
    old:send("GE")                      -- the http probe wants more
    h.wait_log(np, "r: accepted")
    h.write(path, config(listen, other.port))
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reloaded [^\n]*%(config generation 1%)")
    assert.are.equal("other\n", (h.talk(listen, "GET / HTTP/1.0\r\n\r\n")), "a new client goes to the new target")
    assert.are.equal("GET / HTTP/1.0\r\n\r\n", old:exchange("T / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"),
                     "the old one goes where its config said, its first bytes intact")
    old:close()
    h.wait_log(np, "config generation 0: drained")
    h.stop(np)
  end)
end)
