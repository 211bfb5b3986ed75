-- Statistics after known traffic: served at /metrics in the Prometheus text format, and
-- readable from Lua (core.stats).
local h = require "spec.helpers"

describe("metrics", function()
  after_each(h.stop_all)

  it("count connections, refusals, errors and bytes per proxy", function()
    local echo = h.peer_server("echo")
    local dead = h.closed_port()
    local np = h.netproxy_start(([[
server { stats = "127.0.0.1:0" }
proxy { name = "web", deny = { "127.0.0.2" },
        accept = function(conn)
          local s = require("netproxy.core").stats()
          conn:log("notice", "stats seen by accept: opened=%%d total=%%d", s.proxies.web.opened, s.total.opened)
          return true
        end,
        from = { type = "tcp", host = "0.0.0.0", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "dead \"one\"", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, dead))
    local stats = np.stats_port
    assert.are.equal(0, h.client("127.0.0.1", np.ports.web, { "--bytes", "1000", "--conns", "3", "--half-close" }).rc)
    h.talk(np.ports.web, "hi\n", { from = "127.0.0.2" })
    h.talk(np.ports['dead "one"'], "hi\n")
    h.wait_log(np, "end=connect failed: refused")
    local body, err, rc = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. stats .. "/metrics" })
    assert.are.equal(0, rc, err)
    for _, line in ipairs({
      'netproxy_connections_opened_total{proxy="web"} 3',
      'netproxy_connections_closed_total{proxy="web"} 3',
      'netproxy_connections_active{proxy="web"} 0',
      'netproxy_connections_refused_total{proxy="web"} 1',
      'netproxy_connections_errors_total{proxy="web"} 0',
      'netproxy_bytes_total{proxy="web",direction="in"} 3000',
      'netproxy_bytes_total{proxy="web",direction="out"} 3000',
      'netproxy_connections_opened_total{proxy="dead \\"one\\""} 1',
      'netproxy_connections_errors_total{proxy="dead \\"one\\""} 1',
      "# TYPE netproxy_connections_active gauge",
      -- how they ended, by the log line's words; the refusal by its reason (issue 30)
      'netproxy_connections_ended_total{proxy="web",end="eof"} 3',
      'netproxy_connections_ended_total{proxy="dead \\"one\\"",end="connect failed"} 1',
      'netproxy_refusals_total{proxy="web",reason="acl"} 1',
    }) do
      assert.truthy(body:find(line .. "\n", 1, true), line .. "\n---\n" .. body)
    end
    -- TCP proxies only: no UDP series at all
    assert.falsy(body:find("netproxy_udp_", 1, true), body)
    h.wait_log(np, "stats seen by accept: opened=3 total=3")
    assert.are.equal("404", (h.run({ "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:" .. stats .. "/" })))
    h.stop(np)
  end)
end)
