-- Services under a client that streams at full speed (issue 25, item 3): reads that never wait
-- must not make one resume of the connection's coroutine span the whole stream (charged
-- against hook_budget, and holding the worker's other connections); and the line cutter
-- (item 12) over lines split across reads.
local h = require "spec.helpers"

local STREAM = h.root .. "/spec/support/line_stream.py"
local GIB = 1024 * 1024 * 1024

-- hook_budget = 0.1: each callback and each stretch of serve() takes microseconds, a tenth of a
-- second is a thousand times that. A stream of 1 GB takes a second or more: when one resume
-- spanned it all, it was cut at 0.1 s of CPU.
local ECHOES = [[
proxy { name = "chunk", hook_budget = 0.1, from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", on_input = function(conn, data) conn:write(data) end } }
proxy { name = "line", hook_budget = 0.1, from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", input_mode = "line",
         on_input = function(conn, line) conn:write(line .. "\n") end } }
proxy { name = "serve", hook_budget = 0.1, from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client)
    for line in client:lines() do client:write(line .. "\n") end
  end } }
]]

-- A short exchange on a second connection to the worker that serves the stream (connection
-- #1): true once answered while the stream goes on, that is before netproxy has logged the
-- stream's end. (A worker held by the stream would take the second connection in only once
-- the stream had ended, and logged so.)
local function answered_during(np, name, port)
  local out, how = h.talk(port, "ping\n", { want = "ping\n", timeout = 60 })
  assert.equal("ping\n", out, how)
  assert.not_matches("#1 " .. name .. ": [^\n]*%-> service in=", np.log(),
                     "the second connection was answered once the stream had ended")
  return true
end

-- Streams 1 GiB of lines (up to 8,000 bytes each) through proxy name and checks that every
-- byte comes back; while it runs, a second connection to the same worker has its exchange.
local function stream_and_talk(name)
  local np = h.netproxy_start(ECHOES)
  local port = np.ports[name]
  local stream = h.spawn({ "python3", STREAM, tostring(port), tostring(GIB), "8000" })
  h.wait_until(function() return (h.read(stream.out) or ""):find("streaming") end, 60, "the stream under way")

  assert.is_true(answered_during(np, name, port))

  local rc = h.exit_status(stream, 180)
  local result = (h.read(stream.out) or "") .. (h.read(stream.err) or "")
  assert.equal(0, rc, result .. "\n--- the log:\n" .. np.log():sub(-2000))
  local sent, recv = result:match("sent=(%d+) recv=(%d+) ok=1")
  assert.equal(sent, recv)
  assert.is_true(tonumber(sent) >= GIB)
  h.wait_log(np, name .. ": [^\n]*%-> service in=" .. sent .. " out=" .. sent .. " [^\n]*end=eof")
  assert.not_matches("budget", np.log())
end

describe("a service under a client streaming 1 GiB at full speed", function()
  after_each(h.stop_all)

  it("echoes it all in chunk mode, and answers another connection meanwhile", function()
    stream_and_talk("chunk")
  end)

  it("echoes it all in line mode, and answers another connection meanwhile", function()
    stream_and_talk("line")
  end)

  it("echoes it all through serve() with client:lines(), and answers another connection meanwhile", function()
    stream_and_talk("serve")
  end)

  -- The client is faster than the service here (np-peer sends at gigabytes a second, and each
  -- chunk costs the callback a little work), so the service's reads never wait: only its
  -- taking turns lets the other connection in. No budget, so none can cut the stream.
  it("takes turns with the worker's other connections (no hook_budget, the service the slower)", function()
    local np = h.netproxy_start([[
proxy { name = "busy", hook_budget = 0, from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service",
         on_connect = function(conn) conn:log("notice", "connected") end,
         on_input = function(conn, data)
           for _ = 1, 20000 do end
           conn:write(data)
         end } }
]])
    local port = np.ports.busy
    local stream = h.spawn({ h.peer, "client", "--connect", "127.0.0.1:" .. port, "--bytes", "1024M", "--half-close" })
    h.wait_log(np, "busy: [^\n]*connected")
    assert.is_true(answered_during(np, "busy", port))
    assert.equal(0, h.exit_status(stream, 180), (h.read(stream.out) or "") .. (h.read(stream.err) or ""))
    assert.matches("bytes_recv=1073741824 ", h.read(stream.out))
  end)
end)

describe("a service's lines split across reads", function()
  after_each(h.stop_all)

  local BRACKETS = [[
proxy { name = "line", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", input_mode = "line",
         on_input = function(conn, line) conn:write("[" .. line .. "]\n") end,
         on_eof = function(conn) conn:write("eof\n") end } }
proxy { name = "serve", from = { type = "tcp", host = "127.0.0.1", port = 0 },
  to = { type = "service", serve = function(client)
    while true do
      local line, err, partial = client:read("*l")
      if not line then client:write(("%s (%d)\n"):format(err, #partial)) break end
      client:write("[" .. line .. "]\n")
    end
  end } }
]]

  -- Each piece is sent once the line the piece before completed has come back: the service
  -- has read that piece, the unfinished line at its end included, before the next arrives.
  local PIECES = {
    { "one\ntw", "%[one%]\n" },
    { "o\r\nthree\r", "%[two%]\n" },                  -- a line across two reads, ended by \r\n
    { "\n\nfo", "%[three%]\n%[%]\n" },                -- \r and \n in two reads; an empty line
    { "ur\n" .. ("x"):rep(60000), "%[four%]\n" },
    { ("y"):rep(5000) .. "\nlast without newline", "%[x+y+%]\n" },
  }

  for _, name in ipairs({ "line", "serve" }) do
    it(name .. ": cuts partial lines, \\r\\n and a last line without \\n as whole lines", function()
      local np = h.netproxy_start(BRACKETS)
      local c = assert(h.connect(np.ports[name]))
      for _, piece in ipairs(PIECES) do
        assert.is_true(c:send(piece[1]))
        local _, how = c:read(piece[2], 10)
        assert.equal("want", how, piece[2])
      end
      c:shutdown()
      local out, how = c:read(nil, 10)
      assert.equal("eof", how)
      local last = name == "line" and "[last without newline]\neof\n" or "[last without newline]\nclosed (0)\n"
      assert.equal("[one]\n[two]\n[three]\n[]\n[four]\n[" .. ("x"):rep(60000) .. ("y"):rep(5000) .. "]\n" .. last, out)
      c:close()
    end)
  end

  it("ends a line longer than 64 KiB: client error in line mode, \"line too long\" to serve()", function()
    local np = h.netproxy_start(BRACKETS)
    local c = assert(h.connect(np.ports.line))
    c:send("ok\n" .. ("z"):rep(70000))
    local out, how = c:read(nil, 10)
    assert.equal("[ok]\n", out)
    assert.is_true(how == "eof" or how == "reset", how)
    c:close()
    h.wait_log(np, "line: [^\n]*end=client error: line longer than 65536 bytes")
    out = h.talk(np.ports.serve, "ok\n" .. ("z"):rep(70000), { timeout = 10 })
    assert.matches("^%[ok%]\nline too long %(%d+%)\n$", out)
  end)
end)
