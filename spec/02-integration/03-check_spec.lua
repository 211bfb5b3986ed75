-- `netproxy --check`: every problem as file:line: message, non-zero exit; a bad config
-- never starts.
local h = require "spec.helpers"

local function config(text)
  return h.write(h.tmpfile("config.lua"), text)
end

local function check(path, ...)
  local argv = { h.netproxy, "--check", ... }
  argv[#argv + 1] = path
  return h.run(argv)
end

describe("netproxy --check", function()
  after_each(h.stop_all)

  it("accepts a valid config, binds nothing and exits 0", function()
    local out, err, rc = check(h.root .. "/examples/tcp.lua")
    assert.are.equal(0, rc, err)
    assert.truthy(out:find("examples/tcp.lua: OK", 1, true))
  end)

  it("accepts every shipped example", function()
    local checked = 0
    for file in h.lines("ls " .. h.root .. "/examples/*.lua") do
      local out, err, rc = check(file)
      assert.are.equal(0, rc, file .. ": " .. err)
      assert.truthy(out:find(": OK", 1, true))
      checked = checked + 1
    end
    assert.is_true(checked >= 3, checked .. " examples found")
  end)

  it("also answers to -c and -t", function()
    for _, flag in ipairs({ "-c", "-t" }) do
      local _, err, rc = h.run({ h.netproxy, flag, h.root .. "/examples/tcp.lua" })
      assert.are.equal(0, rc, err)
    end
  end)

  it("reports a Lua syntax error with its line", function()
    local path = config('proxy {\n  name = "x",\n  from = { type = "tcp", port = 1\n')
    local _, err, rc = check(path)
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":4: '}' expected", 1, true), err)
  end)

  it("reports an error raised by the script with its line", function()
    local path = config('local t = nil\nt.x = 1\n')
    local _, err, rc = check(path)
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":2: attempt to index", 1, true), err)
  end)

  it("names an unknown connector type", function()
    local path = config('\nproxy {\n  name = "x",\n  from = { type = "tcp", port = 6000 },\n' ..
                        '  to = { type = "socks9", host = "a", port = 1 },\n}\n')
    local _, err, rc = check(path)
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":2: proxy 'x': to: unknown connector type 'socks9'", 1, true), err)
  end)

  it("reports a missing port, a bad port and a bad host, all at once", function()
    local path = config('proxy { name = "a", from = { type = "tcp" }, to = { type = "tcp", host = "h", port = 1 } }\n' ..
                        'proxy { name = "b", from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 70000 } }\n' ..
                        'proxy { name = "c", from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "bad host!", port = 1 } }\n' ..
                        'proxy { name = "d", from = { type = "tcp", port = 1 }, to = { type = "tcp", port = 1 } }\n')
    local _, err, rc = check(path)
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":1: proxy 'a': from: missing port", 1, true), err)
    assert.truthy(err:find(path .. ":2: proxy 'b': to: port: bad port '70000'", 1, true), err)
    assert.truthy(err:find(path .. ":3: proxy 'c': to: host: bad host 'bad host!'", 1, true), err)
    assert.truthy(err:find(path .. ":4: proxy 'd': to: missing host", 1, true), err)
  end)

  it("rejects unknown parameters (typos) and bad server options", function()
    local path = config('server { log_level = 9, bogus = 1 }\n' ..
                        'proxy { name = "x", from = { type = "tcp", port = 1, prot = 2 }, to = { type = "tcp", host = "h", port = 1 } }\n')
    local _, err, rc = check(path)
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":1: server: log_level: bad log level '9'", 1, true), err)
    assert.truthy(err:find(path .. ":1: server: unknown parameter 'bogus'", 1, true), err)
    assert.truthy(err:find(path .. ":2: proxy 'x': from: unknown parameter 'prot'", 1, true), err)
  end)

  it("rejects a config that declares no proxy, and two proxies with one name", function()
    local _, err, rc = check(config("-- nothing here\n"))
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("no proxy declared", 1, true), err)
    local twice = 'proxy { name = "x", from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 } }\n'
    local path = config(twice .. twice)
    _, err, rc = check(path)
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":2: proxy 'x': name already used at " .. path .. ":1", 1, true), err)
  end)

  it("never starts a bad config: same messages, non-zero exit, nothing bound", function()
    local path = config('proxy { name = "x", from = { type = "tcp", host = "127.0.0.1", port = 0 }, ' ..
                        'to = { type = "nope", port = 1 } }\n')
    local _, err, rc = h.run({ h.netproxy, path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find(path .. ":1: proxy 'x': to: unknown connector type 'nope'", 1, true), err)
    assert.falsy(err:find("listening", 1, true))
  end)

  it("fails with a clear message when the listen address cannot be had", function()
    local peer = h.peer_server("echo")
    local path = config(('proxy { name = "busy", from = { type = "tcp", host = "127.0.0.1", port = %d }, ' ..
                         'to = { type = "tcp", host = "127.0.0.1", port = 1 } }\n'):format(peer.port))
    local _, err, rc = h.run({ h.netproxy, path })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("busy: cannot listen on 127.0.0.1:" .. peer.port .. ": Address already in use", 1, true), err)
    h.stop(peer)
  end)

  it("explains bad command-line usage", function()
    local _, err, rc = h.run({ h.netproxy, "--log-level", "loud", "x.lua" })
    assert.are.equal(2, rc)
    assert.truthy(err:find("--log-level wants 0..4", 1, true), err)
    _, err, rc = h.run({ h.netproxy })
    assert.are.equal(2, rc)
    assert.truthy(err:find("no config script given", 1, true), err)
    local out
    out, _, rc = h.run({ h.netproxy, "--version" })
    assert.are.equal(0, rc)
    assert.truthy(out:match("^netproxy %d+%.%d+%.%d+"))
    out, _, rc = h.run({ h.netproxy, "--help" })
    assert.are.equal(0, rc)
    assert.truthy(out:find("--max-connections", 1, true))
  end)
end)
