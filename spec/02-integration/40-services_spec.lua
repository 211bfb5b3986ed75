-- Services: netproxy answering clients itself (Net::Server's process_request, the
-- Net::Server::Multiplex callbacks), counted and logged like any connection.
local h = require "spec.helpers"
local tcp = require "spec.support.tcp"
local ffi = require "ffi"

-- Reads one line (without "\n") from a spec.support.tcp client, or nil at EOF/timeout.
local function line_of(c, timeout)
  local parts = {}
  while true do
    local b, why = c:receive(1, timeout or 5)
    if b == "" then return nil, why end
    if b == "\n" then return table.concat(parts) end
    parts[#parts + 1] = b
  end
end

local function socat(port, input)
  local f = h.write(h.tmpfile("input"), input)
  local out, err, rc = h.run({ "sh", "-c", "socat -t 5 - TCP:127.0.0.1:" .. port .. " < " .. f })
  return out, err, rc
end

describe("a straight-line service (serve)", function()
  after_each(h.stop_all)

  local UPPER = [[
proxy { name = "up", from = { type = "tcp", host = "127.0.0.1", port = 0 }, %s
  to = { type = "service", serve = function(client, conn)
    client:write("hello\n")
    for line in client:lines() do client:write(line:upper() .. "\n") end
    client:write("bye\n")         -- after the client's end: the half-close works
  end } }
]]

  it("answers line by line, writes after the client half-closed, ends with eof, counted in and out", function()
    local np = h.netproxy_start(UPPER:format(""))
    local out = socat(np.ports.up, "abc\ndef\r\nlast")
    assert.equal("hello\nABC\nDEF\nLAST\nbye\n", out)
    local line = h.wait_log(np, "#%d+ up: [^\n]*")
    assert.matches("127%.0%.0%.1:%d+ %-> service in=13 out=23 time=[%d.]+s end=eof$", line)
  end)

  -- issue 32: the socket check compares metatables by address once it has seen them; what
  -- is no socket (another userdata of the core, a table) is still refused with a clear error
  it("a socket method called on what is no socket fails with a clear error, after sockets were checked", function()
    local np = h.netproxy_start([[
proxy { name = "chk", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client, conn)
    client:write("ok\n")
    local sock = client._sock
    for _, v in ipairs({ conn._handle, {}, "x" }) do
      local ok, err = pcall(sock.write, v, "no\n")
      client:write(tostring(ok) .. " " .. tostring(err):match("netproxy[%w.]* expected") .. "\n")
    end
  end } }
]])
    assert.equal("ok\nfalse netproxy.sock expected\nfalse netproxy.sock expected\nfalse netproxy.sock expected\n",
                 (socat(np.ports.chk, "")))
    assert.equal("ok\nfalse netproxy.sock expected\nfalse netproxy.sock expected\nfalse netproxy.sock expected\n",
                 (socat(np.ports.chk, "")))      -- a second connection: the addresses known
  end)

  it("counts opened, closed, active and bytes each way, and is neither refused nor an error", function()
    local np = h.netproxy_start(UPPER:format("") .. [[
proxy { name = "stats", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client)
    local s = require("netproxy.core").stats().proxies.up
    client:write(("opened=%d closed=%d active=%d refused=%d errors=%d in=%d out=%d\n"):format(
      s.opened, s.closed, s.active, s.refused, s.errors, s.bytes_in, s.bytes_out))
  end } }
]])
    assert.equal("hello\nA\nbye\n", (socat(np.ports.up, "a\n")))
    assert.equal("hello\nBB\nbye\n", (socat(np.ports.up, "bb\n")))
    h.wait_log(np, "end=eof.-end=eof")
    assert.equal("opened=2 closed=2 active=0 refused=0 errors=0 in=5 out=25\n", (socat(np.ports.stats, "")))
  end)

  it("is cut by idle_timeout but not by negotiation_timeout, nor held back by max_negotiating", function()
    local np = h.netproxy_start(UPPER:format("negotiation_timeout = 0.2, idle_timeout = 0.8, max_negotiating = 1,"))
    local a, b = assert(tcp.connect(np.ports.up)), assert(tcp.connect(np.ports.up))
    assert.equal("hello", line_of(a))
    assert.equal("hello", line_of(b))          -- both served at once
    h.sleep(0.4)                                -- past negotiation_timeout
    a:send("x\n")
    assert.equal("X", line_of(a))
    b:send("y\n")
    assert.equal("Y", line_of(b))
    assert.is_nil(line_of(a, 3))                -- silent: closed by idle_timeout
    a:close(); b:close()
    h.wait_log(np, "%-> service in=2 out=8 time=[%d.]+s end=idle timeout")
    assert.not_matches("negotiation timeout", np.log())
  end)

  it("passes the guards: deny, accept(), max_clients, and the PROXY protocol on from", function()
    local np = h.netproxy_start([[
local function who(client, conn) client:write("you are " .. conn.client .. "\n") client:read("*l") end
proxy { name = "denied", from = { type = "tcp", host = "127.0.0.1", port = 0 }, deny = { "127.0.0.1/32" },
        to = { type = "service", serve = who } }
proxy { name = "picky", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        accept = function(conn) return nil, "not today" end, to = { type = "service", serve = who } }
proxy { name = "one", from = { type = "tcp", host = "127.0.0.1", port = 0 }, max_clients = 1,
        to = { type = "service", serve = who } }
proxy { name = "behind", from = { type = "tcp", host = "127.0.0.1", port = 0, proxy_protocol = "v1" },
        to = { type = "service", serve = who } }
]])
    assert.equal("", (socat(np.ports.denied, "x\n")))
    h.wait_log(np, "denied: refused 127%.0%.0%.1:%d+: ")
    assert.equal("", (socat(np.ports.picky, "x\n")))
    h.wait_log(np, "picky: [^\n]*end=refused: not today")
    local first = assert(tcp.connect(np.ports.one))
    assert.matches("^you are ", line_of(first))
    assert.equal("", (socat(np.ports.one, "x\n")))
    h.wait_log(np, "one: refused 127%.0%.0%.1:%d+: max_clients")
    first:send("done\n")
    first:close()
    assert.equal("you are 192.0.2.7:4321\n", (socat(np.ports.behind, "PROXY TCP4 192.0.2.7 192.0.2.1 4321 80\r\nbye\n")))
    h.wait_log(np, "behind: 192%.0%.2%.7:4321 %-> service in=4 out=%d+ [^\n]*end=closed")
  end)

  it("closes that connection only on a Lua error, with the script and line", function()
    local np = h.netproxy_start([[
proxy { name = "bad", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client)
    local line = client:read("*l")
    if line == "boom" then error("boom asked") end
    client:write("fine " .. line .. "\n")
  end } }
]])
    local ok = assert(tcp.connect(np.ports.bad))
    assert.equal("", (socat(np.ports.bad, "boom\n")))
    local line = h.wait_log(np, "#%d+ bad: [^\n]*end=lua error[^\n]*")
    assert.matches("end=lua error: [^\n]*config%.lua:4: boom asked", line)
    ok:send("ok\n")
    assert.equal("fine ok", line_of(ok))
    ok:close()
  end)

  it("works behind tls (ssl from) and as one of dual's probes", function()
    local pki = h.pki()
    local np = h.netproxy_start(([[
local function serve(client) client:write("you said " .. client:read("*l") .. "\n") end
proxy { name = "tls", from = { type = "ssl", host = "127.0.0.1", port = 0,
        cert = %q, key = %q }, to = { type = "service", serve = serve } }
proxy { name = "sniff", from = { type = "dual", host = "127.0.0.1", port = 0, timeout = 5,
        probes = { { match = function(b) return b:sub(1, 4) == "PING" or nil end,
                     to = { type = "service", serve = serve } } },
        client_first = { type = "tcp", host = "127.0.0.1", port = 9 },
        server_first = { type = "tcp", host = "127.0.0.1", port = 9 } } }
]]):format(pki .. "/localhost.pem", pki .. "/localhost.key"))
    local out = h.run({ "sh", "-c", "printf 'over tls\\n' | socat -t 5 - OPENSSL:127.0.0.1:" .. np.ports.tls ..
                        ",cafile=" .. pki .. "/ca.pem,verify=1" })
    assert.equal("you said over tls\n", out)
    assert.equal("you said PING sniffed\n", (socat(np.ports.sniff, "PING sniffed\n")))
    h.wait_log(np, "tls: [^\n]*%-> service in=%d+ out=%d+ [^\n]*end=")
    h.wait_log(np, "sniff: [^\n]*%-> service in=13 out=22 [^\n]*end=closed: by the service")
  end)
end)

describe("a Multiplex service (on_* callbacks)", function()
  after_each(h.stop_all)

  local function chat()
    local config = h.read(h.root .. "/examples/chat.lua"):gsub("port = 2020", "port = 0")
    return h.netproxy_start(config)
  end

  it("examples/chat.lua: a line reaches the two others, not its sender", function()
    local np = chat()
    local a = assert(tcp.connect(np.ports.chat))
    assert.matches("^%* welcome", line_of(a))
    local b = assert(tcp.connect(np.ports.chat))
    assert.matches("^%* welcome", line_of(b))
    assert.matches("joined$", line_of(a))
    local c = assert(tcp.connect(np.ports.chat))
    assert.matches("^%* welcome", line_of(c))
    assert.matches("joined$", line_of(a))
    assert.matches("joined$", line_of(b))
    a:send("/nick alice\n")
    assert.equal("* 127.0.0.1", line_of(b):match("^%* [%d.]+"))
    line_of(c)
    a:send("hello all\n")
    assert.equal("alice: hello all", line_of(b))
    assert.equal("alice: hello all", line_of(c))
    b:send("from b\n")
    assert.matches(": from b$", line_of(a))     -- a's next line is b's: its own never came back
    assert.matches(": from b$", line_of(c))
    a:send("/quit\n")
    assert.equal("* bye", line_of(a))
    assert.is_nil(line_of(a))
    assert.equal("* alice left", line_of(b))
    for _, x in ipairs({ a, b, c }) do x:close() end
    h.wait_log(np, "chat: [^\n]*%-> service in=28 out=%d+ [^\n]*end=closed: by the service")
  end)

  it("closes a slow reader at the write bound while the others go on", function()
    local np = chat()
    local out, err = h.run({ "python3", h.root .. "/spec/tools/chat_slow_reader.py", tostring(np.ports.chat), "10000" })
    assert.equal("fast_lines=10000 slow_closed=1 after=1\n", out, err .. "\n--- the log:\n" .. np.log():sub(-3000))
    h.wait_log(np, "end=closed: write buffer over 262144 bytes %(a slow reader%)")
  end)

  local MUX = [[
proxy { name = "mux", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", input_mode = "line", timeout = %s,
    on_connect = function(conn) conn:write("hi\n") end,
    on_input = function(conn, line)
      if line == "boom" then error("boom in on_input") end
      if line == "slow" then conn:set_timeout(0.3) end
      conn:write("got " .. line .. "\n")
    end,
    on_eof = function(conn) conn:write("eof seen\n") end,
    %s } }
]]

  it("calls on_timeout after timeout without input; conn:set_timeout changes it; without on_timeout: end=timeout", function()
    local np = h.netproxy_start(MUX:format("30", [[on_timeout = function(conn) conn:write("too quiet\n") conn:close() end]]))
    local a = assert(tcp.connect(np.ports.mux))
    assert.equal("hi", line_of(a))
    a:send("slow\n")
    assert.equal("got slow", line_of(a))
    assert.equal("too quiet", line_of(a, 3))
    assert.is_nil(line_of(a))
    a:close()
    h.wait_log(np, "mux: [^\n]*in=5 out=22 [^\n]*end=closed: by the service")
    h.stop(np)
    np = h.netproxy_start(MUX:format("0.3", ""))
    a = assert(tcp.connect(np.ports.mux))
    assert.equal("hi", line_of(a))
    assert.is_nil(line_of(a, 3))
    a:close()
    h.wait_log(np, "mux: [^\n]*end=timeout: no input for 0%.3s")
  end)

  it("closes that connection only on a Lua error in a callback, with the script and line; on_eof may still write", function()
    local np = h.netproxy_start(MUX:format("30", ""))
    local a, b = assert(tcp.connect(np.ports.mux)), assert(tcp.connect(np.ports.mux))
    assert.equal("hi", line_of(a))
    assert.equal("hi", line_of(b))
    a:send("boom\n")
    assert.is_nil(line_of(a))
    local line = h.wait_log(np, "mux: [^\n]*end=lua error[^\n]*")
    assert.matches("on_input: [^\n]*config%.lua:5: boom in on_input", line)
    b:send("still\n")
    assert.equal("got still", line_of(b))
    ffi.C.shutdown(b.fd, 1)                     -- the client half-closes
    assert.equal("eof seen", line_of(b))
    assert.is_nil(line_of(b))
    a:close(); b:close()
    h.wait_log(np, "mux: [^\n]*in=6 out=22 [^\n]*end=eof")
  end)
end)

describe("a service's budget", function()
  after_each(h.stop_all)

  it("stops a runaway callback or serve function (hook_budget), closing that connection only", function()
    local np = h.netproxy_start([[
proxy { name = "mux", hook_budget = 0.2, from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", input_mode = "line",
         on_input = function(conn, line)
           if line == "spin" then while true do end end
           conn:write("ok " .. line .. "\n")
         end } }
proxy { name = "straight", hook_budget = 0.2, from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client) client:read("*l") while true do end end } }
]])
    local a, b = assert(tcp.connect(np.ports.mux)), assert(tcp.connect(np.ports.mux))
    a:send("spin\n")
    assert.is_nil(line_of(a, 5))
    h.wait_log(np, "mux: [^\n]*end=lua error: [^\n]*budget of 0%.2")
    b:send("alive\n")
    assert.equal("ok alive", line_of(b))
    assert.equal("", (socat(np.ports.straight, "go\n")))
    h.wait_log(np, "straight: [^\n]*end=lua error: [^\n]*budget of 0%.2")
    a:close(); b:close()
  end)
end)

describe("examples/http-status.lua", function()
  after_each(h.stop_all)

  it("serves /health and the stats as JSON over HTTP/1.1, keep-alive on (curl)", function()
    local config = h.read(h.root .. "/examples/http-status.lua"):gsub("port = 8080", "port = 0")
    local np = h.netproxy_start(config)
    local base = "http://127.0.0.1:" .. np.ports.status
    local out = h.run({ "curl", "-s", "-w", "%{http_code}\n", base .. "/health", base .. "/stats", base .. "/nope" })
    assert.matches("^ok\n200\n{", out)
    local status = assert(out:match('"status":(%b{})'))
    -- the /stats of the second request came over the first one's connection (keep-alive)
    for _, field in ipairs({ '"active":1', '"opened":1', '"closed":0', '"errors":0', '"refused":0', '"bytes_in":%d+', '"bytes_out":%d+' }) do
      assert.matches(field, status)
    end
    assert.matches("not found\n404\n$", out)
    local log = h.wait_log(np, "status: [^\n]*end=eof")
    assert.matches("%-> service in=%d+ out=%d+", log)
    out = h.run({ "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", base .. "/health" })
    assert.equal("405", out)
  end)
end)

describe("examples/http-status.lua /bytes/N", function()
  after_each(h.stop_all)

  it("answers N bytes with their Content-Length, the same string again on keep-alive", function()
    local config = h.read(h.root .. "/examples/http-status.lua"):gsub("port = 8080", "port = 0")
    local np = h.netproxy_start(config)
    local port = np.ports.status
    local out = h.talk(port, "GET /bytes/1024 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/65536 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local first, body1, second, body2 = out:match("^(HTTP/1%.1 200 OK\r\n.-\r\n\r\n)(x+)(HTTP/1%.1 200 OK\r\n.-\r\n\r\n)(x+)$")
    assert.truthy(first, out:sub(1, 300))
    assert.matches("Content%-Length: 1024\r\n", first)
    assert.equal(1024, #body1)
    assert.matches("Content%-Length: 65536\r\n", second)
    assert.matches("Connection: close\r\n", second)
    assert.equal(65536, #body2)
    out = h.talk(port, "GET /bytes/9999999 HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1%.1 404 Not Found\r\n", out)
  end)

  it("reads Connection: close in any case and with blanks, not a longer value; drops a query", function()
    local config = h.read(h.root .. "/examples/http-status.lua"):gsub("port = 8080", "port = 0")
    local np = h.netproxy_start(config)
    -- kept open by the client: only the service's close ends the exchange (eof)
    local out, how = h.talk(np.ports.status,
      "GET /bytes/3?x=1 HTTP/1.1\r\nHost: x\r\nConnection: closed\r\nX-Connection: close\r\n\r\n" ..
      "GET /bytes/2 HTTP/1.1\r\nCONNECTION: \t Close  \r\n\r\n", { keep_open = true })
    assert.equal("eof", how)
    local first, body1, second, body2 = out:match("^(HTTP/1%.1 200 OK\r\n.-\r\n\r\n)(x*)(HTTP/1%.1 200 OK\r\n.-\r\n\r\n)(x*)$")
    assert.truthy(first, out)
    assert.equal("xxx", body1)
    assert.is_nil(first:find("Connection: close", 1, true))
    assert.matches("Connection: close\r\n", second)
    assert.equal("xx", body2)
  end)
end)

describe("examples/redis-kv.lua", function()
  after_each(h.stop_all)

  local function start()
    local config = h.read(h.root .. "/examples/redis-kv.lua"):gsub("port = 6380", "port = 0")
    local np = h.netproxy_start(config)
    return np, np.ports.kv
  end

  it("answers redis-cli's GET, SET (EX), DEL, EXISTS and PING over the shared dict", function()
    local np, port = start()
    local function cli(...)
      return h.run({ "redis-cli", "-p", tostring(port), ... })
    end
    assert.equal("PONG\n", cli("ping"))
    assert.equal("OK\n", cli("set", "greeting", "hello world"))
    assert.equal("hello world\n", cli("get", "greeting"))
    assert.equal("\n", cli("get", "missing"))          -- a nil bulk
    assert.equal("OK\n", cli("set", "brief", "x", "ex", "100"))
    assert.equal("2\n", cli("exists", "greeting", "brief", "missing"))
    assert.equal("1\n", cli("del", "brief", "missing"))
    assert.matches("^ERR unknown command 'frobnicate'\n", cli("frobnicate"))
    assert.matches("^ERR too large", cli("set", "big", ("v"):rep(446)))     -- key and value: 449 bytes
    assert.matches("^ERR Protocol error: invalid bulk length", cli("set", "big", ("v"):rep(600)))
    assert.matches("ERR invalid expire time", cli("set", "k", "v", "ex", "-1"))
    h.wait_log(np, "kv: [^\n]*end=eof")
  end)

  it("answers pipelined RESP and inline commands in order over one connection; bad input ends that connection only", function()
    local _, port = start()
    local resp = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    local want = "+OK\r\n$2\r\nv1\r\n$2\r\nv1\r\n+PONG\r\n+OK\r\n"
    local out, how = h.talk(port, resp .. "GET k\r\nPING\r\nQUIT\r\n", { want = #want })
    assert.equal(want, out, how)
    out = h.talk(port, "*2\r\n$3\r\nGET\r\n$99999\r\n")
    assert.equal("-ERR Protocol error: invalid bulk length\r\n", out)
    out = h.talk(port, "*x\r\n")
    assert.equal("-ERR Protocol error: invalid multibulk length\r\n", out)
    assert.equal("$2\r\nv1\r\n", (h.talk(port, "GET k\r\n")))
  end)
end)

describe("client:write of a table of pieces (one writev)", function()
  after_each(h.stop_all)

  local PIECES = [[
proxy { name = "pieces", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client)
    local what = client:read("*l")
    if what == "small" then
      client:write({ "a", "bc", 42, "" , "d\n" })
    elseif what == "big" then
      -- more than the socket takes at once: the rest waits in order for the client to read
      local n = client:write({ ("1"):rep(3 * 1024 * 1024), ("2"):rep(3 * 1024 * 1024), "end\n" })
      client:write(n .. "\n")
    elseif what == "many" then
      local t = {}
      for i = 1, 200 do t[i] = i .. "," end   -- past 64 pieces: joined, the same bytes
      client:write(t)
      client:write("\n")
    elseif what == "bad" then
      client:write({ "ok", true })
    end
  end } }
]]

  it("sends the pieces in order, numbers as text, the count of all bytes as the result", function()
    local np = h.netproxy_start(PIECES)
    local port = np.ports.pieces
    assert.equal("abc42d\n", (h.talk(port, "small\n")))
    local out = h.talk(port, "big\n", { timeout = 20 })
    assert.equal(6 * 1024 * 1024 + 4 + #tostring(6 * 1024 * 1024 + 4) + 1, #out)
    assert.equal(("1"):rep(3 * 1024 * 1024) .. ("2"):rep(3 * 1024 * 1024) .. "end\n" .. (6 * 1024 * 1024 + 4) .. "\n", out)
    local want = {}
    for i = 1, 200 do want[i] = i .. "," end
    assert.equal(table.concat(want) .. "\n", (h.talk(port, "many\n")))
  end)

  it("raises an error naming a piece that is not a string: that connection ends, logged", function()
    local np = h.netproxy_start(PIECES)
    assert.equal("", (h.talk(np.ports.pieces, "bad\n")))
    h.wait_log(np, "pieces: [^\n]*end=lua error: [^\n]*write: piece 2 is a boolean, not a string")
    assert.equal("abc42d\n", (h.talk(np.ports.pieces, "small\n")))
  end)
end)

describe("a service's read after its answer", function()
  after_each(h.stop_all)

  it("waits for the client's next request without a read(2) ending in EAGAIN nor an epoll_ctl(2) per request", function()
    local np = h.netproxy_start([[
proxy { name = "up", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client)
    for line in client:lines() do client:write(line:upper() .. "\n") end
  end } }
]])
    local trace = h.tmpfile("strace")
    local st = h.spawn({ "strace", "-f", "-e", "trace=read,epoll_ctl", "-p", tostring(np.pid), "-o", trace })
    h.wait_until(function() return (h.read(st.err) or ""):find("attached") end, 10, "strace to attach")
    local c = assert(h.connect(np.ports.up))
    local want = ""
    for _, word in ipairs({ "one", "two", "three" }) do
      want = want .. word:upper() .. "\n"
      assert.is_true(c:send(word .. "\n"))
      local got, how = c:read(#want)
      assert.equal(want, got, how)
    end
    c:close()
    h.wait_log(np, "up: [^\n]*end=eof")
    h.stop(st)
    local log = h.read(trace) or ""
    local reads, eagain, ctl = 0, 0, 0
    for line in log:gmatch("[^\n]+") do
      if line:find("read%(") then reads = reads + 1 end
      if line:find("read%(.*EAGAIN") then eagain = eagain + 1 end
      if line:find("epoll_ctl%(") then ctl = ctl + 1 end
    end
    assert.is_true(reads >= 4, log)       -- three lines, then the end
    assert.equal(0, eagain, log)
    -- the read event is added once and deleted at the close, not changed for each request
    assert.is_true(ctl <= 2, log)
  end)
end)

describe("a service on standard input and output (from = stdio)", function()
  after_each(h.stop_all)

  it("reads a regular file given as standard input to its end (epoll cannot wait on one)", function()
    local config = h.write(h.tmpfile("stdio.lua"), [[
proxy { name = "s", from = { type = "stdio" },
  to = { type = "service", serve = function(client)
    for line in client:lines() do client:write(line:upper() .. "\n") end
  end } }
]])
    local input = h.write(h.tmpfile("input.txt"), "one\ntwo\n")
    local out, err, rc = h.run({ "sh", "-c", "timeout 10 " .. h.quote(h.netproxy) .. " -q " .. h.quote(config) .. " < " .. h.quote(input) })
    assert.equal("ONE\nTWO\n", out, err)
    assert.equal(0, rc, err)
  end)
end)
