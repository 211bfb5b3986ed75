-- --check refuses settings that would pass and then do nothing (file:line), warns about the
-- harmless ones (--check and at start), and names bad values clearly.
local h = require "spec.helpers"

local function check(text)
  local path = h.write(h.tmpfile("config.lua"), text)
  local out, err, rc = h.run({ h.netproxy, "--check", path })
  return rc, err, path, out
end

-- A proxy{} line: from and to as given (text), on one line.
local function proxy(name, from, to, extra)
  return ("proxy { name = %q, from = %s, to = %s%s }\n"):format(name, from, to, extra and (", " .. extra) or "")
end

local TO = '{ type = "tcp", host = "127.0.0.1", port = 9 }'

describe("--check on settings that would do nothing", function()
  local pki
  setup(function() pki = h.pki() end)
  teardown(h.stop_all)

  local function ssl(extra)
    return ('{ type = "ssl", host = "127.0.0.1", port = 0, cert = %q, key = %q%s }')
        :format(pki .. "/localhost.pem", pki .. "/localhost.key", extra and (", " .. extra) or "")
  end

  local cases = {
    { "max_clients on a stdio proxy",
      bad = proxy("s", '{ type = "stdio" }', TO, 'max_clients = 2'),
      says = { "proxy 's': max_clients does nothing on a stdio proxy" },
      -- inetd style: a socket on standard input is checked against allow and deny
      good = proxy("s", '{ type = "stdio" }', TO, 'allow = { "10.0.0.0/8" }, deny = { "10.1.0.0/16" }') },
    { "server{} guards with a stdio proxy",
      bad = 'server { max_clients = 4 }\n' .. proxy("s", '{ type = "stdio" }', TO),
      line = 2, says = { "proxy 's': server{} max_clients does nothing on a stdio proxy" } },
    { "a to next to dual",
      bad = proxy("d", '{ type = "dual", host = "127.0.0.1", port = 0, client_first = ' .. TO .. ' }', TO),
      says = { "proxy 'd': to: the dual connector picks the destination itself" },
      good = proxy("d", '{ type = "dual", host = "127.0.0.1", port = 0, client_first = ' .. TO .. ' }', '{ type = "dummy" }') },
    { "to.host and to.port next to from = connect",
      bad = proxy("c", '{ type = "connect", host = "127.0.0.1", port = 0, allow = { "*:443" } }', TO),
      says = { "proxy 'c': to: host and port come from the client's request (from = connect)" },
      good = proxy("c", '{ type = "connect", host = "127.0.0.1", port = 0, allow = { "*:443" } }',
                   '{ type = "connect", proxy_host = "127.0.0.1", proxy_port = 3128 }') },
    { "total_timeout on a udp proxy",
      bad = proxy("u", '{ type = "udp", host = "127.0.0.1", port = 0 }', '{ type = "udp", host = "127.0.0.1", port = 53 }', "total_timeout = 5"),
      says = { "proxy 'u': total_timeout does nothing on a udp proxy: a flow ends by udp_idle_timeout" },
      good = proxy("u", '{ type = "udp", host = "127.0.0.1", port = 0 }', '{ type = "udp", host = "127.0.0.1", port = 53 }', "udp_idle_timeout = 5") },
    { "a hook on a service",
      bad = proxy("s", '{ type = "tcp", host = "127.0.0.1", port = 0 }',
                  '{ type = "service", hook = function(d) return d end, serve = function(c) return "eof" end }'),
      says = { "proxy 's': to: hook does nothing on a service: no relay runs" },
      good = proxy("s", '{ type = "tcp", host = "127.0.0.1", port = 0 }', '{ type = "service", serve = function(c) return "eof" end }') },
    { "a from hook when every destination is a service",
      bad = proxy("s", '{ type = "tcp", host = "127.0.0.1", port = 0, hook = function(d) return d end }',
                  '{ type = "service", serve = function(c) return "eof" end }'),
      says = { "proxy 's': from: hook does nothing when the connection is answered by a service" },
      -- dual: the hook still sees what goes to the destinations that are relayed
      good = proxy("s", '{ type = "dual", host = "127.0.0.1", port = 0, hook = function(d) return d end, client_first = ' .. TO ..
                        ', server_first = { type = "service", serve = function(c) return "eof" end } }', '{ type = "dummy" }') },
    { "relay = \"splice\" with a hook",
      bad = proxy("r", '{ type = "tcp", host = "127.0.0.1", port = 0, hook = function() end }', TO, 'relay = "splice"'),
      says = { "proxy 'r': relay = \"splice\" cannot be honoured: a hook needs the bytes" },
      good = proxy("r", '{ type = "tcp", host = "127.0.0.1", port = 0 }', TO, 'relay = "splice"') },
    { "ca without verify on from = ssl",
      bad = function() return proxy("t", ssl(("ca = %q"):format(pki .. "/ca.pem")), TO) end,
      says = { "proxy 't': from: ca without verify = true" },
      good = function() return proxy("t", ssl(("ca = %q, verify = true"):format(pki .. "/ca.pem")), TO) end },
    { "a typo inside a certs[] entry",
      bad = function() return proxy("t", ssl(("certs = { { names = 'a.test', cert = %q, kye = 'x' } }"):format(pki .. "/a.test.pem")), TO) end,
      says = { "proxy 't': from: certs: certs[1]: unknown parameter 'kye' (want names, cert, key, ocsp)" },
      good = function() return proxy("t", ssl(("certs = { { names = 'a.test', cert = %q, key = %q } }"):format(pki .. "/a.test.pem", pki .. "/a.test.key")), TO) end },
    { "start_cleartext with no way to upgrade",
      bad = function() return proxy("t", ssl("start_cleartext = true"), TO) end,
      says = { "proxy 't': from: start_cleartext = true without a starttls function or a hook calling conn:starttls()" },
      good = function() return proxy("t", ssl("start_cleartext = true, hook = function(d, conn) end"), TO) end },
    { "workers = 100000",
      bad = 'server { workers = 100000 }\n' .. proxy("w", '{ type = "tcp", port = 0 }', TO),
      line = 1, says = { "server: workers: bad value '100000' (want an integer, 1..63)" },
      good = 'server { workers = 63 }\n' .. proxy("w", '{ type = "tcp", port = 0 }', TO) },
    { "a host such as 256.1.1.1",
      bad = proxy("a", '{ type = "tcp", host = "256.1.1.1", port = 0 }', TO),
      says = { "proxy 'a': from: host: bad host '256.1.1.1' (not an IPv4 address)" },
      good = proxy("a", '{ type = "tcp", host = "255.1.1.1", port = 0 }', TO) },
    { "two proxies on one address and port",
      bad = proxy("a", '{ type = "tcp", host = "127.0.0.1", port = 6101 }', TO) ..
            proxy("b", '{ type = "tcp", host = "localhost", port = 6101 }', TO),
      line = 2, says = { "proxy 'b': listen address localhost:6101 clashes with 127.0.0.1:6101 of proxy 'a' at " },
      good = proxy("a", '{ type = "tcp", host = "127.0.0.1", port = 6101 }', TO) ..
             proxy("b", '{ type = "tcp", host = "127.0.0.2", port = 6101 }', TO) ..
             proxy("c", '{ type = "tcp", host = "::1", port = 6102 }', TO) ..
             proxy("d", '{ type = "tcp", host = "0.0.0.0", port = 6102 }', TO) },
    { "two unix listeners on one path",
      bad = proxy("a", '{ type = "unix", path = "@np-spec-same" }', TO) .. proxy("b", '{ type = "unix", path = "@np-spec-same" }', TO),
      line = 2, says = { "proxy 'b': listen path @np-spec-same clashes with @np-spec-same of proxy 'a' at " },
      good = proxy("a", '{ type = "unix", path = "@np-spec-a" }', TO) .. proxy("b", '{ type = "unix", path = "@np-spec-b" }', TO) },
    { "a wildcard and a specific address on one port",
      bad = proxy("a", '{ type = "tcp", host = "0.0.0.0", port = 6103 }', TO) ..
            proxy("b", '{ type = "tcp", host = "127.0.0.1", port = 6103 }', TO),
      line = 2, says = { "proxy 'b': listen address 127.0.0.1:6103 clashes with 0.0.0.0:6103 of proxy 'a' at " } },
  }

  for _, case in ipairs(cases) do
    it("refuses " .. case[1] .. ", with file:line", function()
      local text = type(case.bad) == "function" and case.bad() or case.bad
      local rc, err, path = check(text)
      assert.are.equal(1, rc, err)
      for _, msg in ipairs(case.says) do
        assert.truthy(err:find(path .. ":" .. (case.line or 1) .. ": " .. msg, 1, true), msg .. "\n" .. err)
      end
    end)
    if case.good then
      it("accepts the working form of " .. case[1], function()
        local text = type(case.good) == "function" and case.good() or case.good
        local rc, err = check(text)
        assert.are.equal(0, rc, err)
        assert.falsy(err:find("warning", 1, true), err)
      end)
    end
  end
end)

describe("--check warnings (harmless settings)", function()
  teardown(h.stop_all)

  it("warns about reuseport with one worker, at --check and at start, and still runs", function()
    local text = 'server { reuseport = true, workers = 1 }\n' .. proxy("w", '{ type = "tcp", host = "127.0.0.1", port = 0 }', TO)
    local rc, err, path, out = check(text)
    assert.are.equal(0, rc, err)
    assert.truthy(out:find(": OK", 1, true), out)
    assert.truthy(err:find(path .. ":1: warning: server: reuseport with one worker does nothing", 1, true), err)
    local np = h.netproxy_start(path)         -- -w 1
    local line = np.log():match("[^\n]*reuseport with one worker[^\n]*") or ""
    assert.truthy(line:find(" warning [", 1, true) and line:find(path .. ":1: server: ", 1, true), np.log())
    h.stop(np)
    rc, err = check('server { reuseport = true, workers = 2 }\n' .. proxy("w", '{ type = "tcp", port = 0 }', TO))
    assert.are.equal(0, rc, err)
    assert.are.equal("", err)
  end)

  it("warns about a relay = \"splice\" from server{} that a hooked proxy cannot honour", function()
    local rc, err, path = check('server { relay = "splice" }\n' ..
      proxy("hooked", '{ type = "tcp", port = 0, hook = function() end }', TO) ..
      proxy("plain", '{ type = "tcp", port = 0 }', TO))
    assert.are.equal(0, rc, err)
    assert.truthy(err:find(path .. ":2: warning: proxy 'hooked': relay \"splice\" (from server{}) cannot be honoured", 1, true), err)
    assert.falsy(err:find("'plain'", 1, true), err)
  end)
end)

describe("messages for bad values", function()
  teardown(h.stop_all)

  it("says that a certificate file does not exist", function()
    local rc, err, path = check(proxy("t", '{ type = "ssl", port = 0, cert = "/nonexistent/site.pem" }', TO))
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":1: proxy 't': from: cert /nonexistent/site.pem: No such file or directory", 1, true), err)
  end)

  it("names the type of a table given as a port", function()
    local rc, err, path = check(proxy("p", '{ type = "tcp", port = 0 }',
      '{ type = "connect", host = "h", port = 1, proxy_host = "127.0.0.1", proxy_port = { 3128 } }'))
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":1: proxy 'p': to: proxy_port: bad port: a table (want 0..65535)", 1, true), err)
    assert.falsy(err:find("0x", 1, true), err)
  end)

  it("dual counts the bytes the client sent when no probe matches", function()
    local np = h.netproxy_start(proxy("d", '{ type = "dual", host = "127.0.0.1", port = 0, probes = { { match = "ssh", to = ' .. TO .. ' } } }', '{ type = "dummy" }'))
    local _, how = h.talk(np.ports.d, "XYZABC", { keep_open = true })   -- open until netproxy closes it
    assert.are_not.equal("timeout", how)
    local line = h.wait_log(np, "[^\n]*end=refused: no probe matched[^\n]*")
    assert.truthy(line:find("no probe matched the first 6 bytes", 1, true), line)
    h.stop(np)
  end)
end)
