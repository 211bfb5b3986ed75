-- Net::Server's listen forms and options in the config language: port lists, "host:port",
-- host "*", service names, backlog, syslog ident and facility, --set over server{}.
local h = require "spec.helpers"
package.preload["netproxy.core"] = package.preload["netproxy.core"] or function() return {} end
local config = require "netproxy.config"
local listen = require "netproxy.listen"
local services = require "netproxy.services"

local function load(text, cli)
  cli = cli or {}
  cli.builtin_connectors = h.root .. "/connectors"
  local warnings = {}
  cli.on_warning = function(w) warnings[#warnings + 1] = w end
  local path = h.write(h.tmpfile("config.lua"), text)
  local cfg, errors = config.load(path, cli)
  return cfg, errors, path, warnings
end

local TO = 'to = { type = "tcp", host = "127.0.0.1", port = 9 }'

-- The host:port pairs of a proxy's listen list.
local function pairs_of(l)
  local out = {}
  for i, e in ipairs(l) do out[i] = e.host .. " " .. e.port end
  return out
end

describe("listen forms", function()
  it("turns a list of ports into one entry each, on the proxy's host", function()
    local cfg, errors = load('proxy { name = "m", from = { type = "tcp", host = "127.0.0.1", port = { 80, 8080 } }, ' .. TO .. ' }')
    assert.is_table(cfg, errors and errors[1])
    assert.are.same({ "127.0.0.1 80", "127.0.0.1 8080" }, pairs_of(cfg.proxies[1].listen))
    assert.are.equal(80, cfg.proxies[1].from.port)
  end)

  it("takes \"host:port\", \"[v6]:port\" and \"*:port\" entries, and host = \"*\"", function()
    local cfg, errors = load('proxy { name = "m", from = { type = "tcp", port = { "127.0.0.2:81", "[::1]:82", "*:83", 84 } }, ' .. TO .. ' }\n' ..
                             'proxy { name = "s", from = { type = "tcp", host = "*", port = 85 }, ' .. TO .. ' }')
    assert.is_table(cfg, errors and errors[1])
    assert.are.same({ "127.0.0.2 81", "::1 82", "0.0.0.0 83", ":: 83", "localhost 84" }, pairs_of(cfg.proxies[1].listen))
    assert.are.same({ "0.0.0.0 85", ":: 85" }, pairs_of(cfg.proxies[2].listen))
    assert.are.equal("*", cfg.proxies[2].from.host)
  end)

  it("keeps a stdio from's listen table as it is", function()
    local cfg = load('proxy { from = { type = "stdio" }, ' .. TO .. ' }')
    assert.is_true(cfg.proxies[1].listen.stdio)
    assert.is_nil(cfg.proxies[1].listen[1])
  end)

  it("resolves service names through /etc/services, on both sides", function()
    assert.are.equal(443, services.port("https"))
    assert.are.equal(80, services.port("www"))          -- an alias
    local cfg, errors = load('proxy { from = { type = "tcp", port = { "https", "127.0.0.1:ssh" } }, ' ..
                             'to = { type = "tcp", host = "127.0.0.1", port = "http" } }')
    assert.is_table(cfg, errors and errors[1])
    assert.are.same({ "localhost 443", "127.0.0.1 22" }, pairs_of(cfg.proxies[1].listen))
    assert.are.equal(80, cfg.proxies[1].to.port)
  end)

  it("names what is wrong with a bad port, service or list", function()
    local cases = {
      { 'port = "nosuchservice"', "from: port: unknown service 'nosuchservice' (not a tcp service in /etc/services)" },
      { 'port = { 80, {} }', "from: port: [2]: bad port: a table (want a port, a service name or \"host:port\")" },
      { 'port = {}', "from: port: want at least one port" },
      { 'port = { a = 1 }', "from: port: want a list of ports, not a table with key 'a'" },
      { 'port = "300.1.1.1:80"', "from: port: bad host '300.1.1.1' (not an IPv4 address)" },
      { 'port = "127.0.0.1:99999"', "from: port: bad port '99999' (want 0..65535)" },
    }
    for _, case in ipairs(cases) do
      local _, errors = load('proxy { name = "p", from = { type = "tcp", ' .. case[1] .. ' }, ' .. TO .. ' }')
      assert.is_table(errors, case[1])
      assert.truthy(errors[1]:find("proxy 'p': " .. case[2], 1, true), errors[1])
    end
    local _, errors = load('proxy { name = "p", from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = { 1, 2 } } }')
    assert.truthy(errors[1]:find("to: port: a list of ports is for listening (from), not to", 1, true), errors[1])
  end)

  it("refuses one address twice, within a proxy or across two", function()
    local _, errors = load('proxy { name = "p", from = { type = "tcp", host = "127.0.0.1", port = { 81, 81 } }, ' .. TO .. ' }')
    assert.truthy(errors[1]:find("proxy 'p': listen address 127.0.0.1:81 clashes with 127.0.0.1:81 of proxy 'p' at ", 1, true), errors[1])
    _, errors = load('proxy { name = "a", from = { type = "tcp", host = "*", port = 82 }, ' .. TO .. ' }\n' ..
                     'proxy { name = "b", from = { type = "tcp", host = "::1", port = 82 }, ' .. TO .. ' }')
    assert.truthy(errors[1]:find(":2: proxy 'b': listen address [::1]:82 clashes with [::]:82 of proxy 'a' at ", 1, true), errors[1])
  end)

  it("gives every entry its backlog: the proxy's, else server{}'s, else 4096", function()
    local cfg = load('server { backlog = 100 }\n' ..
                     'proxy { name = "a", from = { type = "tcp", port = { 1, 2 } }, ' .. TO .. ', backlog = 7 }\n' ..
                     'proxy { name = "b", from = { type = "tcp", port = 3 }, ' .. TO .. ' }')
    assert.are.equal(7, cfg.proxies[1].listen[1].backlog)
    assert.are.equal(7, cfg.proxies[1].listen[2].backlog)
    assert.are.equal(100, cfg.proxies[2].listen[1].backlog)
    cfg = load('proxy { from = { type = "tcp", port = 3 }, ' .. TO .. ' }')
    assert.are.equal(listen.BACKLOG, cfg.proxies[1].listen[1].backlog)
    local _, errors = load('proxy { from = { type = "tcp", port = 3 }, ' .. TO .. ', backlog = 0 }')
    assert.truthy(errors[1]:find("backlog: bad backlog '0' (want 1..65535)", 1, true), errors[1])
  end)

  it("gives every tcp entry defer_accept when set (the proxy's, else server{}'s), none by default", function()
    local cfg = load('server { defer_accept = 3 }\n' ..
                     'proxy { name = "a", from = { type = "tcp", port = { 1, 2 } }, ' .. TO .. ', defer_accept = 1 }\n' ..
                     'proxy { name = "b", from = { type = "tcp", port = 3 }, ' .. TO .. ' }\n' ..
                     'proxy { name = "c", from = { type = "tcp", port = 4 }, ' .. TO .. ', defer_accept = 0 }')
    assert.are.equal(1, cfg.proxies[1].listen[1].defer_accept)
    assert.are.equal(1, cfg.proxies[1].listen[2].defer_accept)
    assert.are.equal(3, cfg.proxies[2].listen[1].defer_accept)
    assert.is_nil(cfg.proxies[3].listen[1].defer_accept)
    cfg = load('proxy { from = { type = "tcp", port = 3 }, ' .. TO .. ' }')
    assert.is_nil(cfg.proxies[1].listen[1].defer_accept)
  end)

  it("refuses a bad defer_accept, and one on a listener that takes no TCP client", function()
    for _, bad in ipairs({ "-1", "1.5", "3601", '"soon"' }) do
      local _, errors = load('proxy { from = { type = "tcp", port = 3 }, ' .. TO .. ', defer_accept = ' .. bad .. ' }')
      assert.truthy(errors and errors[1]:find("defer_accept: bad value '", 1, true), bad .. ": " .. tostring(errors and errors[1]))
      assert.truthy(errors[1]:find("(want an integer, 0..3600 seconds)", 1, true), errors[1])
    end
    local _, errors = load('proxy { from = { type = "unix", path = "/tmp/x.sock" }, ' .. TO .. ', defer_accept = 1 }')
    assert.truthy(errors and errors[1]:find("defer_accept does nothing here: it waits for a TCP client's first bytes (this from listens on a unix socket)", 1, true),
                  tostring(errors and errors[1]))
  end)
end)

describe("syslog ident and facility", function()
  it("go to the C core inside log_file, only for syslog", function()
    local cfg = load('server { log_file = "syslog", syslog_ident = "edge-proxy", syslog_facility = "local3" }\n' ..
                     'proxy { from = { type = "tcp", port = 1 }, ' .. TO .. ' }')
    assert.are.equal("syslog:edge-proxy:local3", cfg.server.log_file)
    cfg = load('server { daemon = true, syslog_facility = "local0" }\nproxy { from = { type = "tcp", port = 1 }, ' .. TO .. ' }')
    assert.are.equal("syslog:netproxy:local0", cfg.server.log_file)
    cfg = load('server { log_file = "syslog" }\nproxy { from = { type = "tcp", port = 1 }, ' .. TO .. ' }')
    assert.are.equal("syslog", cfg.server.log_file)
  end)

  it("are warned about when the log is not syslog, and checked", function()
    local cfg, _, path, warnings = load('server { syslog_ident = "x" }\nproxy { from = { type = "tcp", port = 1 }, ' .. TO .. ' }',
                                        { log_file = "/tmp/x.log" })
    assert.is_table(cfg)
    assert.are.equal("/tmp/x.log", cfg.server.log_file)
    assert.truthy(warnings[1]:find(path .. ":1: server: syslog_ident, syslog_facility and syslog_logopt do nothing unless", 1, true), warnings[1])
    local _, errors = load('server { syslog_facility = "local9", syslog_ident = "a b" }\nproxy { from = { type = "tcp", port = 1 }, ' .. TO .. ' }')
    assert.truthy(table.concat(errors, "\n"):find("syslog_facility: bad value 'local9' (want one of auth,", 1, true), errors[1])
    assert.truthy(table.concat(errors, "\n"):find("syslog_ident: bad syslog ident 'a b'", 1, true), errors[1])
  end)
end)

describe("--set KEY=VALUE", function()
  local P = 'proxy { from = { type = "tcp", port = 1 }, ' .. TO .. ' }'

  it("sets any server{} option, over server{}, with values as server{} takes them", function()
    local cfg, errors = load('server { max_clients = 5, reuseport = false }\n' .. P, { set = {
      "max_clients=1", "reuseport=true", "stats=127.0.0.1:9100", "allow=10.0.0.0/8, 192.0.2.1",
      "connect_timeout=2.5", "log_level=info", "backlog=64", "user=nobody" } })
    assert.is_table(cfg, errors and errors[1])
    local s = cfg.server
    assert.are.equal(1, s.max_clients)
    assert.is_true(s.reuseport)
    assert.are.equal("127.0.0.1:9100", s.stats)
    assert.are.same({ "10.0.0.0/8", "192.0.2.1" }, s.allow)
    assert.are.equal(2.5, cfg.proxies[1].connect_timeout)
    assert.are.equal(3, s.log_level)
    assert.are.equal(64, cfg.proxies[1].listen[1].backlog)
    assert.are.equal("nobody", s.user)
  end)

  it("loses to the dedicated options and to a proxy's own setting", function()
    local cfg = load('proxy { from = { type = "tcp", port = 1 }, ' .. TO .. ', connect_timeout = 7 }',
                     { set = { "workers=3", "log_level=debug", "connect_timeout=2" }, workers = 2, log_level = 1 })
    assert.are.equal(2, cfg.server.workers)
    assert.are.equal(1, cfg.server.log_level)
    assert.are.equal(7, cfg.proxies[1].connect_timeout)
  end)

  it("names a bad key or value", function()
    local _, errors = load(P, { set = { "bogus=1", "workers=many", "accept=x", "reuseport=maybe", "noequals" } })
    local all = table.concat(errors, "\n")
    assert.truthy(all:find("command line: --set bogus=1: unknown server{} option 'bogus'", 1, true), all)
    assert.truthy(all:find("command line: --set workers: bad value 'many' (want an integer, 1..63)", 1, true), all)
    assert.truthy(all:find("command line: --set accept=x: accept wants a Lua function", 1, true), all)
    assert.truthy(all:find("command line: --set reuseport: want true or false", 1, true), all)
    assert.truthy(all:find("command line: --set noequals: want KEY=VALUE", 1, true), all)
  end)
end)
