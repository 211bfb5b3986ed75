-- sock:splice_to(dst, n, timeout) (src/sock_splice.c): a service connects to two real peers
-- (np-peer source: a stream of bytes; np-peer sink: verifies the stream to its EOF and answers
-- "OK <n>"), moves bytes from one to the other with the op, and tells the spec what it
-- returned. TLS sides go through netproxy's own ssl proxies in front of the same peers; a
-- destination that stops reading is a service of the same netproxy that never reads.
local h = require "spec.helpers"

local MIB = 1024 * 1024

-- The service: one request line "SRC SRC_TLS DST DST_TLS N PEEK DST_TIMEOUT SRC_TIMEOUT"
-- (ports, "tls" or "-", n or "-" for until EOF, bytes to peek first, timeouts or "-"),
-- answered with what splice_to returned, the sink's verdict and the bytes left in the source.
local SERVICE = [[
local core = require "netproxy.core"
local client_tls = core.tls_context { verify = false }

local function reach(port, secure)
  local s = assert(core.connect("127.0.0.1", port))
  if secure then assert(s:tls(client_tls)) end
  return s
end

local function opt(v) return v ~= "-" and tonumber(v) or nil end

local function serve(client)
  local line = client:read("*l")
  local sp, st, dp, dt, n, peek, dto, sto =
    line:match("^(%d+) (%S+) (%d+) (%S+) (%S+) (%d+) (%S+) (%S+)$")
  local src, dst = reach(tonumber(sp), st == "tls"), reach(tonumber(dp), dt == "tls")
  if opt(dto) then dst:settimeout(opt(dto)) end
  if tonumber(peek) > 0 then assert(src:peek(tonumber(peek))) end
  local moved, err, side, partial = src:splice_to(dst, opt(n), opt(sto))
  local out = ("moved=%s err=%s side=%s partial=%s"):format(tostring(moved), tostring(err),
                                                             tostring(side), tostring(partial))
  if moved then
    dst:shutdown()                              -- the sink answers at its EOF
    local verdict = dst:read(100, 10)
    out = out .. " sink=" .. tostring(verdict and verdict:match("^(%u+ %d+)"))
    local rest = 0                              -- what the source still had: n was exact
    while true do
      local data = src:read(65536, 10)
      if not data then break end
      rest = rest + #data
    end
    out = out .. " rest=" .. rest
  end
  client:write(out .. "\n")
end
]]

-- Asks the service of np for one move; returns its answer's fields.
local function move(np, spec)
  local line = ("%d %s %d %s %s %d %s %s\n"):format(spec.src, spec.src_tls and "tls" or "-", spec.dst,
                                                   spec.dst_tls and "tls" or "-", spec.n or "-", spec.peek or 0,
                                                   spec.dst_timeout or "-", spec.src_timeout or "-")
  local out, how = h.talk(np.ports.mover, line, { keep_open = true, want = "\n", timeout = 60 })
  assert.are.equal("want", how, "no answer from the service: " .. out .. "\n" .. np.log():sub(-2000))
  local r = {}
  for k, v in out:gmatch("(%w+)=(%S+)") do r[k] = tonumber(v) or v end
  r.sink = out:match("sink=(%u+ %d+)")
  return r
end

local function config(pki, peers, extra)
  return SERVICE .. ([[
local pki = %q
server { stop_timeout = 0.5 }   -- the deaf service's connections are cut at the spec's end
proxy { name = "mover", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "service", serve = serve } %s }
proxy { name = "deaf", from = { type = "tcp", host = "127.0.0.1", port = 0 },   -- never reads
        to = { type = "service", serve = function() core.sleep(3600) end } }
proxy { name = "tls_source", from = { type = "ssl", host = "127.0.0.1", port = 0,
                                      cert = pki .. "/localhost.pem", key = pki .. "/localhost.key" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "tls_sink", from = { type = "ssl", host = "127.0.0.1", port = 0,
                                    cert = pki .. "/localhost.pem", key = pki .. "/localhost.key" },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(pki, extra or "", peers.big.port, peers.sink.port)
end

describe("sock:splice_to between two cosockets", function()
  local np, peers

  setup(function()
    peers = {
      big = h.peer_server("source", { "--bytes", tostring(3 * MIB + 1000) }),
      small = h.peer_server("source", { "--bytes", "1000" }),
      huge = h.peer_server("source", { "--bytes", tostring(256 * MIB) }),
      sink = h.peer_server("sink"),
      silent = h.peer_server("silent"),
    }
    np = h.netproxy_start(config(h.pki(), peers), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  it("moves exactly n bytes, more than the read-ahead, and leaves the rest in the source", function()
    local n = 2 * MIB + 12345
    local r = move(np, { src = peers.big.port, dst = peers.sink.port, n = n, peek = 1000 })
    assert.are.equal(n, r.moved, r.err)
    assert.are.equal("OK " .. n, r.sink)
    assert.are.equal(3 * MIB + 1000 - n, r.rest)
  end)

  it("moves the read-ahead alone when n is no more than it", function()
    local r = move(np, { src = peers.big.port, dst = peers.sink.port, n = 700, peek = 1000 })
    assert.are.equal(700, r.moved, r.err)
    assert.are.equal("OK 700", r.sink)
    assert.are.equal(3 * MIB + 1000 - 700, r.rest)
  end)

  it("moves everything until the source's EOF when n is nil", function()
    local r = move(np, { src = peers.big.port, dst = peers.sink.port })
    assert.are.equal(3 * MIB + 1000, r.moved, r.err)
    assert.are.equal("OK " .. (3 * MIB + 1000), r.sink)
  end)

  it("fails with closed, saying src and what it moved, when the source ends before n bytes", function()
    local r = move(np, { src = peers.small.port, dst = peers.sink.port, n = 5000 })
    assert.are.equal("nil", r.moved)
    assert.are.equal("closed", r.err)
    assert.are.equal("src", r.side)
    assert.are.equal(1000, r.partial)
  end)

  it("copies in C when a side speaks TLS, and still moves every byte", function()
    local n = 2 * MIB + 777
    local from_tls = move(np, { src = np.ports.tls_source, src_tls = true, dst = peers.sink.port, n = n, peek = 10 })
    assert.are.equal(n, from_tls.moved, from_tls.err)
    assert.are.equal("OK " .. n, from_tls.sink)
    assert.are.equal(3 * MIB + 1000 - n, from_tls.rest)
    local to_tls = move(np, { src = peers.big.port, dst = np.ports.tls_sink, dst_tls = true })
    assert.are.equal(3 * MIB + 1000, to_tls.moved, to_tls.err)
    assert.are.equal("OK " .. (3 * MIB + 1000), to_tls.sink)
    local both = move(np, { src = np.ports.tls_source, src_tls = true, dst = np.ports.tls_sink, dst_tls = true })
    assert.are.equal(3 * MIB + 1000, both.moved, both.err)
    assert.are.equal("OK " .. (3 * MIB + 1000), both.sink)
  end)

  it("waits without spinning for a destination that stops reading, until dst's timeout", function()
    local _, cpu_before = h.usage(np.pid)
    local started = h.now()
    local r = move(np, { src = peers.huge.port, dst = np.ports.deaf, dst_timeout = 1 })
    local took = h.now() - started
    local _, cpu_after = h.usage(np.pid)
    assert.are.equal("nil", r.moved)
    assert.are.equal("timeout", r.err)
    assert.are.equal("dst", r.side)
    assert.is_true(r.partial > 0 and r.partial < 256 * MIB, "moved " .. tostring(r.partial))
    -- libevent arms a timer from the loop's cached time, which can lag the clock by the turn's
    -- own work: the timeout may end a few ms short of 1 s as the test's clock reads it
    assert.is_true(took >= 0.95, "timed out after " .. took .. " s")
    -- filling the kernel's buffers takes milliseconds; a spin over the wait would take it all
    assert.is_true(cpu_after - cpu_before < 0.5, "netproxy used " .. (cpu_after - cpu_before) .. " s of CPU")
  end)

  it("times out by the call's timeout when the source sends nothing", function()
    local r = move(np, { src = peers.silent.port, dst = peers.sink.port, n = 10, src_timeout = 0.3 })
    assert.are.equal("timeout", r.err)
    assert.are.equal("src", r.side)
    assert.are.equal(0, r.partial)
  end)
end)

-- The pipes of a process: its descriptors that are pipe ends.
local function pipes(pid)
  local n = 0
  for link in h.lines("ls -l /proc/" .. pid .. "/fd 2>/dev/null") do
    if link:find("pipe:%[") then n = n + 1 end
  end
  return n
end

describe("sock:splice_to ended with its connection", function()
  after_each(h.stop_all)

  it("lets its pipe go when total_timeout ends the connection while it waits", function()
    local peers = { big = h.peer_server("source", { "--bytes", tostring(256 * MIB) }), sink = h.peer_server("sink") }
    local np = h.netproxy_start(config(h.pki(), peers, ", total_timeout = 1"), { "-v" })
    local before = pipes(np.pid)
    local c = assert(h.connect(np.ports.mover))
    c:send(("%d - %d - - 0 0 -\n"):format(peers.big.port, np.ports.deaf))   -- dst: no timeout
    h.wait_log(np, "mover: [^\n]*end=total timeout")
    assert.are.equal(before, pipes(np.pid))
    c:close()
  end)
end)
