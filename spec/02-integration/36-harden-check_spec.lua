-- --check catches what used to pass it and then fail or misbehave at start: two listeners on
-- one address (with or without reuseport), malformed IPv6 in CIDRs and hosts, absurd worker
-- counts, and errors raised with something else than a message.
local h = require "spec.helpers"

local function write(text)
  return h.write(h.tmpfile("config.lua"), text)
end

local function check(text)
  local path = write(text)
  local _, err, rc = h.run({ h.netproxy, "--check", path })
  return rc, err, path
end

local function listener(name, host, port)
  return ('proxy { name = %q, from = { type = "tcp", host = %q, port = %d }, to = { type = "tcp", host = "h", port = 2 } }\n')
         :format(name, host, port)
end

describe("duplicate listen addresses", function()
  for _, case in ipairs({
    { "127.0.0.1", "127.0.0.1" },
    { "localhost", "127.0.0.1" },
    { "::1", "localhost" },
    { "[::1]", "0:0:0:0:0:0:0:1" },
    { "0.0.0.0", "127.0.0.1" },
    { "10.1.2.3", "0.0.0.0" },
    { "::", "::1" },
    { "0.0.0.0", "backend.example" },
    { "Backend.Example", "backend.example" },
  }) do
    for _, reuseport in ipairs({ false, true }) do
      it(("%s and %s on one port are an error%s"):format(case[1], case[2], reuseport and " (reuseport)" or ""), function()
        local rc, err, path = check("server { reuseport = " .. tostring(reuseport) .. " }\n" ..
                                    listener("a", case[1], 18080) .. listener("b", case[2], 18080))
        assert.are.equal(1, rc)
        local function at(host)
          host = host:match("^%[(.*)%]$") or host
          return (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":18080"
        end
        local want = ("%s:3: proxy 'b': listen address %s clashes with %s of proxy 'a' at %s:2")
                     :format(path, at(case[2]), at(case[1]), path)
        assert.truthy(err:find(want, 1, true), err)
      end)
    end
  end

  for _, case in ipairs({
    { "0.0.0.0", 18080, "::1", 18080 },          -- another family
    { "127.0.0.1", 18080, "127.0.0.2", 18080 },
    { "127.0.0.1", 18080, "127.0.0.1", 18081 },
    { "127.0.0.1", 0, "127.0.0.1", 0 },           -- any free port, twice
    { "backend.example", 18080, "127.0.0.1", 18080 },  -- a name is not resolved by --check
  }) do
    it(("%s:%d and %s:%d do not clash"):format(unpack(case)), function()
      local rc, err = check(listener("a", case[1], case[2]) .. listener("b", case[3], case[4]))
      assert.are.equal(0, rc, err)
    end)
  end

  it("the stats address clashes with a proxy on the same address", function()
    local rc, err, path = check(listener("a", "127.0.0.1", 18080) .. '\nserver { stats = "127.0.0.1:18080" }\n')
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":3: server: stats: listen address 127.0.0.1:18080 clashes with " ..
                           "127.0.0.1:18080 of proxy 'a' at " .. path .. ":1", 1, true), err)
  end)

  it("UDP ports are apart from TCP ports; two UDP listeners on one port clash", function()
    local function udp(name, port)
      return ('proxy { name = %q, from = { type = "udp", host = "127.0.0.1", port = %d }, to = { type = "udp", host = "h", port = 2 } }\n')
             :format(name, port)
    end
    local rc, err, path = check(listener("a", "127.0.0.1", 18083) .. udp("b", 18083))
    assert.are.equal(0, rc, err)
    rc, err, path = check(udp("a", 18083) .. udp("b", 18083))
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":2: proxy 'b': listen address udp 127.0.0.1:18083 clashes with 127.0.0.1:18083 of proxy 'a' at " ..
                           path .. ":1", 1, true), err)
  end)

  it("two unix listeners on one path clash; two paths do not", function()
    local function unix(name, path)
      return ('proxy { name = %q, from = { type = "unix", path = %q }, to = { type = "tcp", host = "h", port = 2 } }\n'):format(name, path)
    end
    local rc, err, path = check(unix("a", "/tmp/np-clash.sock") .. unix("b", "/tmp/np-clash.sock"))
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":2: proxy 'b': listen path /tmp/np-clash.sock clashes with /tmp/np-clash.sock of proxy 'a' at " ..
                           path .. ":1", 1, true), err)
    rc, err = check(unix("a", "/tmp/np-clash.sock") .. unix("b", "@np-clash"))
    assert.are.equal(0, rc, err)
  end)

  it("such a config does not start, even with reuseport", function()
    local path = write("server { reuseport = true }\n" .. listener("a", "127.0.0.1", 18082) ..
                       listener("b", "127.0.0.1", 18082))
    local _, err, rc = h.run({ h.netproxy, "-w", "2", path })
    assert.are.equal(1, rc)
    assert.truthy(err:find("proxy 'b': listen address 127.0.0.1:18082 clashes", 1, true), err)
    assert.falsy(err:find("listening on", 1, true), err)
  end)
end)

describe("--check also catches", function()
  it("error({}) while loading, with file:line and what was raised", function()
    local rc, err, path = check('local x = 1\nerror({})\n')
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":2: error raised with a table {} (want a message: error(\"...\"))", 1, true), err)
    assert.falsy(err:find("table: 0x", 1, true), err)
    rc, err, path = check('\n\nerror({ code = 3 })\n')
    assert.truthy(err:find(path .. ":3: error raised with a table { code = 3 }", 1, true), err)
  end)

  it("a malformed IPv6 CIDR such as ::1::2/64", function()
    for _, bad in ipairs({ "::1::2/64", "1:2:3:4:5:6:7:8:9", ":::1", "12345::/16", "::ffff:01.2.3.4", "010.0.0.1" }) do
      local rc, err, path = check('\nserver { allow = { "127.0.0.1", "' .. bad .. '" } }\n' ..
                                  listener("a", "127.0.0.1", 0))
      assert.are.equal(1, rc, bad)
      assert.truthy(err:find(path .. ":2: server: allow: bad address or CIDR '" .. bad .. "'", 1, true), err)
    end
  end)

  it("a malformed IPv6 host", function()
    local rc, err, path = check('\nproxy { from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "::1::2", port = 2 } }\n')
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":2: proxy 'proxy1': to: host: bad host '::1::2' (not an IPv6 address)", 1, true), err)
  end)

  it("workers = 1000, with the range", function()
    local rc, err, path = check('server { workers = 1000 }\n' .. listener("a", "127.0.0.1", 0))
    assert.are.equal(1, rc)
    assert.truthy(err:find(path .. ":1: server: workers: bad value '1000' (want an integer, 1..63)", 1, true), err)
  end)
end)
