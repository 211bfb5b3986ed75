-- TLS session resumption across workers, a reload and a binary upgrade (issue 31): a session
-- saved by `openssl s_client -sess_out` is resumed (`Reused`) by `-sess_in` against either of
-- two workers (each try's worker read from the log line), after a SIGHUP, and after a SIGUSR2,
-- with TLS 1.2 and TLS 1.3. The ticket keys are shared by the processes (src/tickets.c).
local h = require "spec.helpers"
local tls = require "spec.support.tls"

local function config(pki, echo_port, port, server)
  return ([[
server { workers = 2%s }
proxy { name = "tls", from = { type = "ssl", host = "127.0.0.1", port = %d,
                               cert = %q, key = %q },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(server or "", port or 0, pki .. "/localhost.pem", pki .. "/localhost.key", echo_port)
end

describe("tls session resumption", function()
  local pki, echo

  setup(function()
    pki = h.pki()
    echo = h.peer_server("echo")
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  local function start(server)
    local path = h.write(h.tmpfile("resume.lua"), config(pki, echo.port, nil, server))
    local np = h.netproxy_start(path, { "-w", "2", "-v" })
    h.wait_workers(np.pid, 2)
    h.write(path, config(pki, echo.port, np.ports.tls, server))   -- a reload keeps the port
    return np
  end

  -- One s_client; returns its output and the pid of the worker that logged its handshake.
  local function connect(np, version, ...)
    local _, before = np.log():gsub("tls: tls from the client", "")
    local out = tls.s_client(np.ports.tls, "MARK\n", version, ...)
    assert.truthy(out:find("MARK\n", 1, true), out)
    local pid
    h.wait_until(function()
      local n = 0
      for p in np.log():gmatch("%[(%d+)%] #%d+ tls: tls from the client") do
        n = n + 1
        if n == before + 1 then pid = p end
      end
      return pid
    end, 10, "the handshake's log line")
    return out, pid
  end

  local function save(np, version)
    local file = h.tmpfile("session")
    local out = connect(np, version, "-sess_out", file)
    assert.truthy(out:find("New, TLSv1", 1, true), out)
    return file
  end

  -- Resumes file until both workers have resumed it (at most 40 tries); every try is Reused.
  local function resumed_by_both(np, version, file)
    local by = {}
    for i = 1, 40 do
      local out, pid = connect(np, version, "-sess_in", file)
      assert.truthy(out:find("Reused, TLSv1", 1, true), "try " .. i .. " on worker " .. pid .. ":\n" .. out)
      by[pid] = true
      if next(by, next(by)) then return end
    end
    error("40 connections all went to one worker")
  end

  for _, version in ipairs({ "-tls1_2", "-tls1_3" }) do
    it("resumes a session on either worker (" .. version .. ")", function()
      local np = start()
      resumed_by_both(np, version, save(np, version))
      assert.truthy(np.log():find("tls from the client: TLSv1%.[23] [^\n]* resumed"), np.log())
    end)

    it("resumes a session made before a SIGHUP, on the new workers (" .. version .. ")", function()
      local np = start()
      local file = save(np, version)
      np.mark()
      os.execute("kill -HUP " .. np.pid)
      h.wait_reloaded(np, 1)
      resumed_by_both(np, version, file)
    end)
  end

  it("resumes a session made before a binary upgrade (SIGUSR2), on the new binary's workers", function()
    local np = start()
    local file = save(np, "-tls1_3")
    local before = h.wait_workers(np.pid, 2)
    os.execute("kill -USR2 " .. np.pid)
    h.wait_log(np, "master: upgraded: netproxy [^\n]* with 2 workers of the previous binary to drain")
    h.wait_until(function()
      for _, pid in ipairs(before) do if h.alive(pid) then return false end end
      return true
    end, 10, "the old workers to finish")
    np.mark()
    resumed_by_both(np, "-tls1_3", file)
  end)

  it("ticket_rotate: a ticket under a previous key resumes; one older than 3 keys does not", function()
    local np = start(", ticket_rotate = 1")
    local function keys() return select(2, np.log():gsub("tls: new session ticket key %(every 1 s; 3 kept", "")) end
    local file = save(np, "-tls1_3")
    local first = keys()
    assert.is_true(first >= 1, np.log())
    -- each handshake replaces the current key once it is 1 s old (one key at most per handshake)
    -- keys made since the ticket's, before and after each handshake: the handshake that makes
    -- the third may have read the ticket just before (reused) or after (new); none other may
    local seen, made = {}, 0
    h.wait_until(function()
      local before = made
      local out = connect(np, "-tls1_3", "-sess_in", file)
      made = keys() - first
      seen[#seen + 1] = { before = before, after = made, how = out:find("Reused, TLSv1.3", 1, true) and "reused" or "new" }
      return made >= 3 and before >= 3
    end, 20, "3 more ticket keys, then a handshake past them")
    local text = {}
    for _, s in ipairs(seen) do text[#text + 1] = s.before .. "-" .. s.after .. " " .. s.how end
    for _, s in ipairs(seen) do
      if s.after < 3 then assert.are.equal("reused", s.how, table.concat(text, ", ")) end
      if s.before >= 3 then assert.are.equal("new", s.how, table.concat(text, ", ")) end
    end
  end)

  it("a session of a proxy without client verification is not resumed by one with it", function()
    local function ssl(extra)
      return ('{ type = "ssl", host = "127.0.0.1", port = 0, cert = %q, key = %q%s }')
             :format(pki .. "/localhost.pem", pki .. "/localhost.key", extra)
    end
    local to = ('{ type = "tcp", host = "127.0.0.1", port = %d }'):format(echo.port)
    local np = h.netproxy_start(("proxy { name = 'open', from = %s, to = %s }\n"):format(ssl(""), to)
      .. ("proxy { name = 'open2', from = %s, to = %s }\n"):format(ssl(""), to)
      .. ("proxy { name = 'verified', from = %s, to = %s }\n")
         :format(ssl((", ca = %q, verify = true"):format(pki .. "/ca.pem")), to), { "-v" })
    local client = { "-cert", pki .. "/client.pem", "-key", pki .. "/client.key" }
    for _, version in ipairs({ "-tls1_2", "-tls1_3" }) do
      local file = h.tmpfile("session")
      local out = tls.s_client(np.ports.open, "MARK\n", version, "-sess_out", file)
      assert.truthy(out:find("New, TLSv1", 1, true), out)
      -- the same settings on another proxy: resumed
      out = tls.s_client(np.ports.open2, "MARK\n", version, "-sess_in", file)
      assert.truthy(out:find("Reused, TLSv1", 1, true), out)
      -- client verification: a full handshake with the certificate, never the ticket
      out = tls.s_client(np.ports.verified, "MARK\n", version, "-sess_in", file, unpack(client))
      assert.truthy(out:find("New, TLSv1", 1, true), out)
      assert.truthy(out:find("MARK\n", 1, true), out)
    end
  end)

  it("refuses a bad ticket_rotate at --check", function()
    local path = h.write(h.tmpfile("rotate.lua"), "server { ticket_rotate = 0 }\n"
      .. "proxy { from = { type = 'tcp', port = 1 }, to = { type = 'tcp', host = 'h', port = 2 } }\n")
    local _, err, rc = h.run({ h.netproxy, "--check", path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("ticket_rotate", 1, true), err)
  end)
end)
