-- /metrics for operators (issue 30): how connections ended, duration and connect-time
-- histograms, refusals by reason, reloads, build info, and only the series a proxy can
-- produce; the whole page checked by Prometheus's own parser (promtool check metrics).
local h = require "spec.helpers"

local function metrics(np)
  local body, err, rc = h.run({ "curl", "-sS", "--max-time", "5", "http://127.0.0.1:" .. np.stats_port .. "/metrics" })
  assert.are.equal(0, rc, err)
  return body
end

-- promtool reads the page on its standard input: its exit status and what it says.
local function promtool(body)
  local path = h.write(h.tmpfile("metrics.txt"), body)
  local out, err, rc = h.run({ "sh", "-c", "promtool check metrics < " .. path })
  return rc, out .. err
end

local function has(body, line)
  assert.truthy(body:find(line .. "\n", 1, true), "missing: " .. line .. "\n---\n" .. body)
end

describe("/metrics", function()
  after_each(h.stop_all)

  it("has ends, histograms, refusals by reason, build info; promtool accepts it", function()
    local echo = h.peer_server("echo")
    local udp_echo = h.udp_echo_server()
    local dead = h.closed_port()
    local np = h.netproxy_start(([[
server { stats = "127.0.0.1:0" }
proxy { name = "web", deny = { "127.0.0.2" },
        from = { type = "tcp", host = "0.0.0.0", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "picky", accept = function() return false, "not you" end,
        from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "dead", from = { type = "tcp", host = "127.0.0.1", port = 0 },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
proxy { name = "dns", from = { type = "udp", host = "127.0.0.1", port = 0 },
        to = { type = "udp", host = "127.0.0.1", port = %d } }
]]):format(echo.port, echo.port, dead, udp_echo.port))
    assert.are.equal(0, h.client("127.0.0.1", np.ports.web, { "--bytes", "1000", "--conns", "3", "--half-close" }).rc)
    h.talk(np.ports.web, "hi\n", { from = "127.0.0.2" })
    h.talk(np.ports.picky, "hi\n")
    h.talk(np.ports.dead, "hi\n")
    h.wait_log(np, "dead: [^\n]*end=connect failed")
    h.wait_log(np, "picky: [^\n]*end=refused")
    local body = metrics(np)
    local rc, said = promtool(body)
    assert.are.equal(0, rc, said .. "\n---\n" .. body)
    has(body, 'netproxy_connections_ended_total{proxy="web",end="eof"} 3')
    has(body, 'netproxy_connections_ended_total{proxy="web",end="client reset"} 0')
    has(body, 'netproxy_connections_ended_total{proxy="dead",end="connect failed"} 1')
    has(body, 'netproxy_connections_ended_total{proxy="picky",end="refused"} 1')
    has(body, 'netproxy_refusals_total{proxy="web",reason="acl"} 1')
    has(body, 'netproxy_refusals_total{proxy="picky",reason="session"} 1')
    has(body, "# TYPE netproxy_connection_duration_seconds histogram")
    has(body, 'netproxy_connection_duration_seconds_bucket{proxy="web",le="+Inf"} 3')
    has(body, 'netproxy_connection_duration_seconds_count{proxy="web"} 3')
    has(body, 'netproxy_connect_time_seconds_bucket{proxy="web",le="+Inf"} 3')
    has(body, 'netproxy_connect_time_seconds_count{proxy="web"} 3')
    has(body, 'netproxy_connect_time_seconds_count{proxy="dead"} 0')
    has(body, "netproxy_reloads_total 0")
    has(body, "netproxy_last_reload_success 1")
    assert.truthy(body:find('\nnetproxy_build_info{version="%d+%.%d+%.%d+"} 1\n'), body)
    -- a TCP proxy has no UDP series, a UDP proxy no connection series
    assert.falsy(body:find('netproxy_udp_[%w_]*{proxy="web"'), body)
    assert.falsy(body:find('netproxy_connection[%w_]*{proxy="dns"'), body)
    has(body, 'netproxy_udp_flows_opened_total{proxy="dns"} 0')
    h.stop(np)
  end)

  it("counts reloads and whether the last one loaded", function()
    local echo = h.peer_server("echo")
    local good = ([[
server { stats = "127.0.0.1:0" }
proxy { name = "web", from = { type = "tcp", host = "127.0.0.1", port = 0 }, to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(echo.port)
    local path = h.write(h.tmpfile("reload.lua"), good)
    local np = h.netproxy_start(path)
    h.write(path, good .. "proxy { name = 'broken' }\n")
    h.run({ "kill", "-HUP", tostring(np.pid) })
    h.wait_log(np, "reload failed")
    local body = metrics(np)
    has(body, "netproxy_reloads_total 1")
    has(body, "netproxy_last_reload_success 0")
    h.write(path, good)
    np.mark()
    h.run({ "kill", "-HUP", tostring(np.pid) })
    h.wait_log(np, "reloaded ")
    body = metrics(np)
    has(body, "netproxy_reloads_total 2")
    has(body, "netproxy_last_reload_success 1")
    assert.are.equal(0, (promtool(body)))
    h.stop(np)
  end)
end)
