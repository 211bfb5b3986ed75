-- Every duration, size and count in a config is checked for NaN, infinity and a sane range
-- by `--check`, with the range in the message: such a config never starts.
local h = require "spec.helpers"

local function check(text)
  local path = h.write(h.tmpfile("config.lua"), text)
  local _, err, rc = h.run({ h.netproxy, "--check", path })
  return rc, err, path
end

-- A proxy with `extra` among its options (line 2 of the file).
local function proxy_with(extra)
  return 'local nan, inf = 0/0, math.huge\n' ..
         'proxy { name = "p", from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 }, ' .. extra .. ' }\n'
end

local DURATION = "%(want 0 or 0%.001%.%.2592000 seconds%)"

describe("--check refuses absurd values", function()
  for _, case in ipairs({
    { "idle_timeout = 1e300", "idle_timeout: bad duration '1e%+300' " .. DURATION },
    { "idle_timeout = inf", "idle_timeout: bad duration 'inf' " .. DURATION },
    { "connect_timeout = nan", "connect_timeout: bad duration '%-?nan' " .. DURATION },
    { "connect_timeout = 1e12", "connect_timeout: bad duration '1000000000000' " .. DURATION },
    { "negotiation_timeout = -inf", "negotiation_timeout: bad duration '%-inf' " .. DURATION },
    { "hook_budget = 0.0000001", "hook_budget: bad duration '1e%-07' " .. DURATION },
    { "max_clients = inf", "max_clients: bad value 'inf' %(want an integer, 0%.%.1000000000%)" },
    { "max_clients = nan", "max_clients: bad value '%-?nan' %(want an integer, 0%.%.1000000000%)" },
    { "max_negotiating = 0", "max_negotiating: bad value '0' %(want an integer, 1%.%.1000000000%)" },
    { "buffer_size = nan", "buffer_size: bad size '%-?nan' %(want bytes, 4096%.%.67108864%)" },
  }) do
    it(case[1], function()
      local rc, err, path = check(proxy_with(case[1]))
      assert.are.equal(1, rc)
      assert.truthy(err:match(path:gsub("%p", "%%%0") .. ":2: proxy 'p': " .. case[2]), err)
    end)
  end

  for _, case in ipairs({
    { "max_connections = math.huge", "max_connections: bad value 'inf' %(want an integer, 0%.%.1000000000%)" },
    { "workers = 1000", "workers: bad value '1000' %(want an integer, 1%.%.63%)" },
    { "workers = 0", "workers: bad value '0' %(want an integer, 1%.%.63%)" },
    { "idle_timeout = 0/0", "idle_timeout: bad duration '%-?nan' " .. DURATION },
    { "pipe_size = math.huge", "pipe_size: bad size 'inf' %(want bytes, 4096%.%.67108864%)" },
    { "reuseport = 1", "reuseport: want true or false, not 1" },
  }) do
    it("server { " .. case[1] .. " }", function()
      local rc, err, path = check('\nserver { ' .. case[1] .. ' }\n' ..
                                  'proxy { from = { type = "tcp", port = 1 }, to = { type = "tcp", host = "h", port = 2 } }\n')
      assert.are.equal(1, rc)
      assert.truthy(err:match(path:gsub("%p", "%%%0") .. ":2: server: " .. case[2]), err)
    end)
  end

  for _, case in ipairs({
    { 'from = { type = "dual", port = 1, timeout = math.huge, client_first = { type = "tcp", host = "h", port = 2 } }',
      "from: timeout: bad duration 'inf' " .. DURATION },
    { 'from = { type = "dual", port = 1, max_peek = 1e9, client_first = { type = "tcp", host = "h", port = 2 } }',
      "from: max_peek: bad value '1000000000' %(want an integer, 16%.%.65536 bytes%)" },
    { 'from = { type = "tcp", port = 1 }, to = { type = "connect", host = "h", port = 2, proxy_host = "p", proxy_port = 3, reply_timeout = 0/0 }',
      "to: reply_timeout: bad duration '%-?nan' " .. DURATION },
    { 'from = { type = "connect", port = 1, allow = { "*:443" }, max_header = math.huge }',
      "from: max_header: bad value 'inf' %(want an integer, 1024%.%.65536 bytes%)" },
    { 'from = { type = "tcp", port = 1 }, to = { type = "ssl", host = "h", port = 2, handshake_timeout = 1e99 }',
      "to: handshake_timeout: bad duration '1e%+99' " .. DURATION },
    { 'from = { type = "tcp", port = 1 }, to = { type = "ssl", host = "h", port = 2, verify = "yes" }',
      "to: verify: want true or false, not yes" },
  }) do
    it("a connector's own: " .. case[2]:match("^%w+: %w+"), function()
      local rc, err, path = check('\nproxy { name = "p", ' .. case[1] .. ' }\n')
      assert.are.equal(1, rc)
      assert.truthy(err:match(path:gsub("%p", "%%%0") .. ":2: proxy 'p': " .. case[2]), err)
    end)
  end

  it("still accepts 0 and the bounds themselves", function()
    local rc, err = check(proxy_with("idle_timeout = 0, connect_timeout = 0.001, negotiation_timeout = 2592000, " ..
                                     "max_clients = 1000000000, max_negotiating = 1") .. "server { workers = 63 }\n")
    assert.are.equal(0, rc, err)
  end)
end)
