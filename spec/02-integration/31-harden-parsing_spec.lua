-- Hostile requests cost their own connection only: while one CONNECT request of the worst
-- shapes is read and parsed, a second client of the same single process still gets its echo
-- at once (every parser and reader is linear in its input, and reads carry their state).
local h = require "spec.helpers"
local tcp = require "spec.rawtcp"

local BOUND = 0.050    -- seconds: the longest round trip the second client may see

-- Sends `request` on a new connection and pings the echo connection until the hostile one is
-- answered (or closed), and a few times more; returns the answer and the longest round trip.
local function while_parsing(np, echo_conn, request)
  local hostile = assert(tcp.connect("127.0.0.1", np.ports.connect))
  assert(hostile:send(request))
  local answer, slowest, pings, deadline = nil, 0, 0, tcp.now() + 20
  while (answer == nil or pings < 10) and tcp.now() < deadline do
    local t0 = tcp.now()
    assert(echo_conn:send("p"))
    assert.are.equal("p", echo_conn:recv(10))
    slowest = math.max(slowest, tcp.now() - t0)
    pings = pings + 1
    if answer == nil then
      local got, err = hostile:recv(0)
      if got then answer = got elseif err == "closed" then answer = "" end
    end
  end
  hostile:close()
  return answer, slowest
end

describe("hostile CONNECT requests", function()
  local echo, np, conn

  setup(function()
    echo = h.peer_server("echo")
    np = h.netproxy_start(([[
proxy { name = "connect",
        from = { type = "connect", host = "127.0.0.1", port = 0, max_header = 65536,
                 route = function(host, port) return nil, "not here" end } }
proxy { name = "echo", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port), { "-w", "1" })
    conn = assert(tcp.connect("127.0.0.1", np.ports.echo))
    assert(conn:send("warm"))
    assert.are.equal("warm", conn:recv_n(4, 5))
  end)
  teardown(function()
    if conn then conn:close() end
    h.stop_all()
  end)

  it("a long header line ending in a bare LF does not hold the loop", function()
    local request = "CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-A: " .. ("a"):rep(16300) .. "\n\r\n\r\n"
    local answer, slowest = while_parsing(np, conn, request)
    assert.truthy(answer and answer:match("^HTTP/1%.1 4%d%d "), tostring(answer))
    assert.is_true(slowest < BOUND, ("echo round trip %.3f s while parsing"):format(slowest))
  end)

  it("a 64 KB header of short lines does not hold the loop", function()
    local lines = {}
    for i = 1, 6500 do lines[i] = ("X-%d: v"):format(i % 1000) end
    local request = "CONNECT 127.0.0.1:1 HTTP/1.1\r\n" .. table.concat(lines, "\r\n") .. "\r\n\r\n"
    assert.is_true(#request > 60000 and #request <= 65536, #request)
    local answer, slowest = while_parsing(np, conn, request)
    assert.truthy(answer and answer:match("^HTTP/1%.1 403 "), tostring(answer))
    assert.is_true(slowest < BOUND, ("echo round trip %.3f s while parsing"):format(slowest))
  end)

  it("a header over max_header is refused (431) as fast", function()
    local request = "CONNECT 127.0.0.1:1 HTTP/1.1\r\n" .. ("X-B: y\r\n"):rep(9000) .. "\r\n"
    local answer, slowest = while_parsing(np, conn, request)
    assert.truthy(answer and answer:match("^HTTP/1%.1 431 "), tostring(answer))
    assert.is_true(slowest < BOUND, ("echo round trip %.3f s while reading"):format(slowest))
  end)
end)
