-- Access logs (issue 30): access_log = { path, format = "json" | "text" | TEMPLATE } in
-- server{} and per proxy, one line per finished connection written from C; JSON valid for
-- any bytes (checked by Debian's lua-cjson decoding every line); SIGUSR1 reopens the file;
-- connection ids unique across workers; libevent's own lines through the log.
local h = require "spec.helpers"
local cjson = require "cjson"

-- The lines of a file, each decoded by cjson (which raises on invalid JSON).
local function json_lines(path)
  local out = {}
  for line in (h.read(path) or ""):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    assert(ok, "not JSON: " .. line .. ": " .. tostring(v))
    out[#out + 1] = v
  end
  return out
end

local function wait_lines(path, n)
  return h.wait_until(function()
    local text = h.read(path) or ""
    local _, count = text:gsub("\n", "")
    return count >= n and text
  end, 10, n .. " access log lines in " .. path)
end

describe("access_log", function()
  after_each(h.stop_all)

  it("writes one JSON object per connection with the contract's fields, valid for any bytes", function()
    local echo = h.peer_server("echo")
    local dead = h.closed_port()
    local dir = h.tmp()
    local np = h.netproxy_start(([[
server { access_log = { path = %q, format = "json" }, resolvers = { "127.0.0.1:%d" } }
proxy { name = "web", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
-- a reason of any bytes: a quote, a backslash, control characters, invalid UTF-8, valid UTF-8
proxy { name = "odd", accept = function(conn) return false, 'a"b\\c\1\n\127\255\192\128\237\160\128é€😀' end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(dir .. "/access.json", dead, echo.port, echo.port))
    assert.are.equal(0, h.client("127.0.0.1", np.ports.web, { "--bytes", "1000", "--half-close" }).rc)
    h.talk(np.ports.odd, "")
    wait_lines(dir .. "/access.json", 2)
    local lines = json_lines(dir .. "/access.json")
    assert.are.equal(2, #lines)
    local web, odd = lines[1], lines[2]
    if web.proxy ~= "web" then web, odd = odd, web end
    assert.are.equal("web", web.proxy)
    assert.are.equal("number", type(web.id))
    assert.are.equal("127.0.0.1", web.client_addr)
    assert.are.equal("number", type(web.client_port))
    assert.are.equal("127.0.0.1:" .. web.client_port, web.client)
    assert.are.equal("127.0.0.1:" .. echo.port, web.target)
    assert.are.equal("127.0.0.1:" .. echo.port, web.server)
    assert.are.equal(1000, web.bytes_in)
    assert.are.equal(1000, web.bytes_out)
    assert.are.equal("eof", web["end"])
    assert.is_true(web.duration >= 0 and web.connect_time >= 0 and web.negotiation_time >= 0)
    assert.truthy(web.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), web.time)
    assert.is_nil(web.sni)              -- TLS identity: absent until that feature fills it
    -- the odd reason: valid UTF-8 as it was, each stray byte as U+00XX (cjson gives its UTF-8)
    local function u(b) return b < 0x80 and string.char(b) or string.char(0xC0 + math.floor(b / 64), 0x80 + b % 64) end
    local want = 'a"b\\c\1\n\127' .. u(255) .. u(192) .. u(128) .. u(237) .. u(160) .. u(128) .. "é€😀"
    assert.are.equal(want, odd.detail, cjson.encode(odd))
    assert.are.equal("refused", odd["end"])
    assert.are.equal("odd", odd.proxy)
    assert.are_not.equal(web.id, odd.id)
    h.stop(np)
  end)

  it("takes a template per proxy, a text (logfmt) format, and reopens on SIGUSR1", function()
    local echo = h.peer_server("echo")
    local dir = h.tmp()
    local np = h.netproxy_start(([[
server { access_log = { path = %q } }
proxy { name = "tpl", access_log = { path = %q, format = "%%{proxy} #%%{id} %%{client_addr} %%{end} in=%%{bytes_in} sni=%%{sni} 100%%%%" },
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "plain", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(dir .. "/text.log", dir .. "/tpl.log", echo.port, echo.port))
    h.talk(np.ports.tpl, "hello\n", { want = 6 })
    local text = wait_lines(dir .. "/tpl.log", 1)
    assert.truthy(text:match("^tpl #%d+ 127%.0%.0%.1 eof in=6 sni=%- 100%%\n$"), text)
    h.talk(np.ports.plain, "hi\n", { want = 3 })
    text = wait_lines(dir .. "/text.log", 1)
    assert.truthy(text:match('^time=%S+ proxy=plain id=%d+ client=127%.0%.0%.1:%d+ target=127%.0%.0%.1:%d+ server=%S+ bytes_in=3 bytes_out=3 duration=[%d.]+ connect_time=[%d.]+ negotiation_time=[%d.]+ end=eof\n$'), text)
    -- logrotate: the file moved, SIGUSR1, the next line goes to a new file at the path
    assert(os.rename(dir .. "/tpl.log", dir .. "/tpl.log.1"))
    h.run({ "kill", "-USR1", tostring(np.pid) })
    h.wait_until(function() return h.read(dir .. "/tpl.log") end, 10, "the reopened access log")
    h.talk(np.ports.tpl, "again\n", { want = 6 })
    text = wait_lines(dir .. "/tpl.log", 1)
    assert.truthy(text:match("^tpl #%d+ 127%.0%.0%.1 eof in=6 "), text)
    local _, old = (h.read(dir .. "/tpl.log.1")):gsub("\n", "")
    assert.are.equal(1, old)
    h.stop(np)
  end)

  it("writes a line per forwarded HTTP request (method, url, status, user), then the connection's", function()
    local portfile = h.tmpfile("origin-port")
    local origin = h.spawn({ "python3", h.root .. "/spec/support/http_origin.py", portfile, "one" })
    origin.port = tonumber(h.wait_until(function() return h.read(portfile) end, 10, "the origin's port"))
    local dir = h.tmp()
    local np = h.netproxy_start(([[
proxy { name = "fwd", access_log = { path = %q, format = "json" },
        from = { type = "connect", host = "127.0.0.1", port = 0, allow = { "127.0.0.1:*" },
                 users = { alice = "wonderland" } } }
]]):format(dir .. "/http.json"))
    local url = "http://127.0.0.1:" .. origin.port .. "/hello"
    local _, err, rc = h.run({ "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-x", "http://alice:wonderland@127.0.0.1:" .. np.ports.fwd, url, url })
    assert.are.equal(0, rc, err)
    wait_lines(dir .. "/http.json", 3)
    local lines = json_lines(dir .. "/http.json")
    for i = 1, 2 do
      assert.are.equal("GET", lines[i].method, cjson.encode(lines[i]))
      assert.truthy(lines[i].url:find("/hello", 1, true), lines[i].url)
      assert.are.equal(200, lines[i].status)
      assert.are.equal("alice", lines[i].user)
      assert.are.equal(lines[3].id, lines[i].id)
      assert.is_nil(lines[i]["end"])
    end
    assert.is_nil(lines[3].method)
    assert.are.equal("alice", lines[3].user)
    assert.truthy(lines[3]["end"])
    h.stop(np)
  end)

  it("refuses a template naming an unknown field, and a path it cannot open", function()
    local _, err, rc = h.run({ h.netproxy, "--check", h.write(h.tmpfile("bad.lua"), [[
proxy { name = "p", access_log = { path = "/tmp/x.log", format = "%{proxy} %{nope}" },
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]]) })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("unknown field %{nope}", 1, true), err)
    local p = h.spawn({ h.netproxy, "-w", "1", h.write(h.tmpfile("nodir.lua"), [[
proxy { name = "p", access_log = { path = "/nonexistent/dir/access.log", format = "json" },
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = 9 } }
]]) })
    assert.are.equal(1, h.exit_status(p, 10))
    assert.truthy(h.read(p.err):find("access_log: cannot open /nonexistent/dir/access.log", 1, true), h.read(p.err))
  end)

  it("gives connection ids unique across the workers, in the log line and the access log", function()
    local echo = h.peer_server("echo")
    local dir = h.tmp()
    local np = h.netproxy_start(([[
server { access_log = { path = %q, format = "json" } }
proxy { name = "web", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(dir .. "/ids.json", echo.port), { "-w", "2" })
    h.wait_workers(np.pid, 2)
    local r = h.client("127.0.0.1", np.ports.web, { "--conns", "40", "--parallel", "8", "--bytes", "100", "--half-close" })
    assert.are.equal(0, r.rc, r.err)
    wait_lines(dir .. "/ids.json", 40)
    local seen, pids = {}, {}
    for _, l in ipairs(json_lines(dir .. "/ids.json")) do
      assert.is_nil(seen[l.id], "id " .. l.id .. " twice")
      seen[l.id] = true
    end
    for pid, id in np.full_log():gmatch("%[(%d+)%] #(%d+) web: 127") do
      pids[pid] = true
      assert.is_true(seen[tonumber(id)], "log line id " .. id .. " not in the access log")
    end
    assert.is_true(next(pids) ~= nil)
    h.stop(np)
  end)

  it("writes libevent's resolver lines through netproxy's log, nothing raw on stderr", function()
    local silent = h.silent_dns()
    local np = h.netproxy_start(([[
server { resolvers = { "127.0.0.1:%d" } }
proxy { name = "slowdns", connect_timeout = 8,
        from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "backend.netproxy.test", port = 80 } }
]]):format(silent.port), { "-v" })
    local waiting = {}
    for i = 1, 6 do waiting[i] = h.connect(np.ports.slowdns) end
    -- evdns gives the nameserver up after its timeouts (5 s each, four of them at once)
    h.wait_log(np, "resolver: [^\n]*[Nn]ameserver", 12)
    for line in np.full_log():gmatch("[^\n]+") do
      assert.truthy(line:match("^%d%d%d%d%-%d%d%-%d%dT%S+Z %a+ %[%d+%] "), "a raw line: " .. line)
    end
    for _, c in ipairs(waiting) do c:close() end
    h.stop(np)
  end)
end)
