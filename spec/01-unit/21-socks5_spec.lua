-- netproxy.socks5: the RFC 1928 / RFC 1929 messages as pure functions over bytes: whole
-- messages, every prefix of them, trailing bytes, the largest ones, malformed and random input.
require "spec.helpers"
local socks5 = require "netproxy.socks5"

local function be16(n) return string.char(math.floor(n / 256), n % 256) end

-- Valid messages of each kind, with what they parse to.
local GREETINGS = {
  { "\5\1\0", { methods = { 0 } } },
  { "\5\2\0\2", { methods = { 0, 2 } } },
  { "\5\3\0\1\2", { methods = { 0, 1, 2 } } },
  { "\5\255" .. string.rep("\7", 255), {} },                     -- the largest greeting
}
do
  local all = {}
  for i = 1, 255 do all[i] = 7 end
  GREETINGS[4][2].methods = all
end
local AUTHS = {
  { "\1\5alice\6secret", { user = "alice", pass = "secret" } },
  { "\1\1u\0", { user = "u", pass = "" } },
  { "\1\255" .. ("u"):rep(255) .. "\255" .. ("p"):rep(255), { user = ("u"):rep(255), pass = ("p"):rep(255) } },
}
local REQUESTS = {
  { "\5\1\0\1\127\0\0\1" .. be16(80), { cmd = 1, atyp = 1, addr = "\127\0\0\1", port = 80 } },
  { "\5\1\0\3\11example.org" .. be16(443), { cmd = 1, atyp = 3, addr = "example.org", port = 443 } },
  { "\5\1\0\4" .. ("\0"):rep(15) .. "\1" .. be16(22), { cmd = 1, atyp = 4, addr = ("\0"):rep(15) .. "\1", port = 22 } },
  { "\5\2\0\1\0\0\0\0\0\0", { cmd = 2, atyp = 1, addr = "\0\0\0\0", port = 0 } },           -- BIND
  { "\5\3\0\1\10\0\0\1" .. be16(53), { cmd = 3, atyp = 1, addr = "\10\0\0\1", port = 53 } }, -- UDP ASSOCIATE
  { "\5\1\0\3\255" .. ("a"):rep(255) .. be16(65535), { cmd = 1, atyp = 3, addr = ("a"):rep(255), port = 65535 } },
}
local REPLIES = {
  { "\5\0\0\1\127\0\0\1" .. be16(40000), { rep = 0, atyp = 1, addr = "\127\0\0\1", port = 40000 } },
  { "\5\5\0\1\0\0\0\0\0\0", { rep = 5, atyp = 1, addr = "\0\0\0\0", port = 0 } },
  { "\5\0\0\4" .. ("\0"):rep(15) .. "\1" .. be16(1), { rep = 0, atyp = 4, addr = ("\0"):rep(15) .. "\1", port = 1 } },
  { "\5\0\0\3\4host" .. be16(7), { rep = 0, atyp = 3, addr = "host", port = 7 } },
}

local function subset(want, got)
  for k, v in pairs(want) do assert.are.same(v, got[k], k) end
end

-- Every proper prefix asks for more, naming a need past what it has and within the message;
-- the whole message parses, and so does the message followed by other bytes, taking only its own.
local function exhaustive(parse, cases)
  for _, c in ipairs(cases) do
    local bytes, want = c[1], c[2]
    for n = 0, #bytes - 1 do
      local verdict, need = parse(bytes:sub(1, n))
      assert.are.equal("more", verdict, ("prefix of %d bytes of %q"):format(n, bytes:sub(1, 40)))
      assert.is_true(need > n and need <= #bytes, ("need %s after %d of %d bytes"):format(tostring(need), n, #bytes))
    end
    local msg, len = parse(bytes)
    assert.are.equal("table", type(msg), ("%q: %s"):format(bytes:sub(1, 40), tostring(len)))
    assert.are.equal(#bytes, len)
    subset(want, msg)
    local msg2, len2 = parse(bytes .. "\5\1\0 and then the tunnel" .. ("x"):rep(70000))
    assert.are.equal(#bytes, len2)
    subset(want, msg2)
  end
end

describe("socks5 parsers", function()
  it("read whole greetings, every prefix asking for more", function()
    exhaustive(socks5.parse_greeting, GREETINGS)
    assert.is_true(socks5.parse_greeting("\5\2\0\2").offers[2])
    assert.is_nil(socks5.parse_greeting("\5\1\0").offers[2])
  end)

  it("read whole username/password messages, every prefix asking for more", function()
    exhaustive(socks5.parse_auth, AUTHS)
  end)

  it("read whole requests (IPv4, name, IPv6; CONNECT, BIND, UDP ASSOCIATE), every prefix asking for more", function()
    exhaustive(socks5.parse_request, REQUESTS)
  end)

  it("read whole replies, every prefix asking for more", function()
    exhaustive(socks5.parse_reply, REPLIES)
    exhaustive(socks5.parse_method_reply, { { "\5\0", { method = 0 } }, { "\5\255", { method = 255 } } })
    exhaustive(socks5.parse_auth_reply, { { "\1\0", { ok = true, status = 0 } }, { "\1\1", { ok = false, status = 1 } },
                                          { "\5\0", { ok = true } } })
  end)

  it("refuse malformed greetings at the first wrong byte", function()
    for _, bad in ipairs({ "\4", "\4\1\0\80\0\0\0\1\0", "GET / HTTP/1.1\r\n", "\5\0", "\22\3\1\0\1" }) do
      local msg, why = socks5.parse_greeting(bad)
      assert.is_nil(msg, bad)
      assert.are.equal("string", type(why))
    end
  end)

  it("refuse malformed username/password messages", function()
    assert.is_nil((socks5.parse_auth("\5\5alice\6secret")))      -- the SOCKS version, not RFC 1929's
    assert.is_nil((socks5.parse_auth("\1\0\6secret")))            -- empty user name
  end)

  it("refuse malformed requests, with the reply code that says why", function()
    local cases = {
      { "\4\1\0\80\0\0\0\1", nil },                -- SOCKS4
      { "\5\9\0\1\0\0\0\0\0\0", socks5.COMMAND_NOT_SUPPORTED },
      { "\5\0", socks5.COMMAND_NOT_SUPPORTED },
      { "\5\1\1\1\0\0\0\0\0\0", nil },             -- reserved byte not 0
      { "\5\1\0\2\0\0\0\0\0\0", socks5.ATYP_NOT_SUPPORTED },
      { "\5\1\0\5", socks5.ATYP_NOT_SUPPORTED },
      { "\5\1\0\3\0\0\80", socks5.GENERAL_FAILURE },                 -- empty name
      { "\5\1\0\3\3a b\0\80", socks5.GENERAL_FAILURE },              -- not a name
      { "\5\1\0\3\4a\0bc\0\80", socks5.GENERAL_FAILURE },
    }
    for _, c in ipairs(cases) do
      local msg, why, rep = socks5.parse_request(c[1])
      assert.is_nil(msg, c[1])
      assert.are.equal("string", type(why))
      assert.are.equal(c[2], rep, why)
    end
  end)

  it("refuse malformed replies", function()
    assert.is_nil((socks5.parse_reply("\4\0\0\1\0\0\0\0\0\0")))
    assert.is_nil((socks5.parse_reply("\5\0\0\9\0\0\0\0\0\0")))
    assert.is_nil((socks5.parse_method_reply("\1\0")))
    assert.is_nil((socks5.parse_auth_reply("\2\0")))
  end)

  it("never raise and never ask for more than the largest message, on random input", function()
    math.randomseed(1928)
    local parsers = { greeting = { socks5.parse_greeting, socks5.MAX_GREETING },
                      auth = { socks5.parse_auth, socks5.MAX_AUTH },
                      request = { socks5.parse_request, socks5.MAX_REQUEST },
                      reply = { socks5.parse_reply, socks5.MAX_REQUEST },
                      method_reply = { socks5.parse_method_reply, 2 },
                      auth_reply = { socks5.parse_auth_reply, 2 } }
    local firsts = { 1, 5, 5, 5, 4, 0 }
    for _ = 1, 5000 do
      local t = { string.char(firsts[math.random(#firsts)]) }
      for i = 2, math.random(1, 300) do
        t[i] = string.char(math.random() < 0.3 and math.random(0, 8) or math.random(0, 255))
      end
      local buf = table.concat(t)
      for name, p in pairs(parsers) do
        local ok, a, b = pcall(p[1], buf)
        assert.is_true(ok, name .. ": " .. tostring(a))
        if a == "more" then
          assert.is_true(b > #buf and b <= p[2], name .. " wants " .. tostring(b))
        elseif a ~= nil then
          assert.is_true(b >= 2 and b <= #buf and b <= p[2], name .. " took " .. tostring(b))
        else
          assert.are.equal("string", type(b), name)
        end
      end
    end
  end)

  it("never raise byte by byte: each prefix of random input is more, a message or an error", function()
    math.randomseed(1929)
    for _ = 1, 300 do
      local t = { "\5" }
      for i = 2, 40 do t[i] = string.char(math.random(0, 12)) end
      local buf = table.concat(t)
      for n = 0, #buf do
        for _, parse in ipairs({ socks5.parse_greeting, socks5.parse_request, socks5.parse_reply, socks5.parse_auth }) do
          assert.is_true((pcall(parse, buf:sub(1, n))))
        end
      end
    end
  end)
end)

describe("socks4 and 4a requests", function()
  local V4 = "\4\1" .. be16(80) .. "\127\0\0\1" .. "alice\0"
  local V4A = "\4\1" .. be16(443) .. "\0\0\0\1" .. "\0" .. "example.org\0"

  it("read whole, every prefix asking for more", function()
    exhaustive(socks5.parse_socks4_request, {
      { V4, { cmd = 1, atyp = 1, addr = "\127\0\0\1", port = 80, user = "alice" } },
      { V4A, { cmd = 1, atyp = 3, addr = "example.org", port = 443, user = "" } },
      { "\4\2\0\0\0\0\0\0\0", { cmd = 2, port = 0, user = "" } },
    })
  end)

  it("refuse what is not one, and over-long strings, without raising", function()
    assert.is_nil((socks5.parse_socks4_request("\5\1\0")))
    assert.is_nil((socks5.parse_socks4_request("\4\3" .. ("\0"):rep(7))))
    assert.is_nil((socks5.parse_socks4_request("\4\1\0\80\1\2\3\4" .. ("u"):rep(256))))
    assert.is_nil((socks5.parse_socks4_request("\4\1\0\80\0\0\0\9\0" .. ("n"):rep(300))))
    assert.is_nil((socks5.parse_socks4_request("\4\1\0\80\0\0\0\9\0\0")))        -- empty name
    assert.is_nil((socks5.parse_socks4_request("\4\1\0\80\0\0\0\9\0a b\0")))
    math.randomseed(4)
    for _ = 1, 3000 do
      local t = { "\4", string.char(math.random(1, 2)) }
      for i = 3, math.random(3, 600) do t[i] = string.char(math.random() < 0.1 and 0 or math.random(0, 255)) end
      local buf = table.concat(t)
      local ok, a, b = pcall(socks5.parse_socks4_request, buf)
      assert.is_true(ok, tostring(a))
      if a == "more" then assert.is_true(b > #buf and b <= socks5.MAX_SOCKS4, tostring(b)) end
      if type(a) == "table" then assert.is_true(b <= #buf and b <= socks5.MAX_SOCKS4) end
    end
  end)

  it("build replies", function()
    assert.are.equal("\0\90\0\80\127\0\0\1", socks5.socks4_reply(socks5.SOCKS4_GRANTED, 80, "\127\0\0\1"))
    assert.are.equal("\0\91\0\0\0\0\0\0", socks5.socks4_reply(socks5.SOCKS4_REJECTED))
  end)
end)

describe("socks5 builders", function()
  it("build what the parsers read back", function()
    assert.are.equal("\5\2\0\2", socks5.greeting({ 0, 2 }))
    assert.are.equal("\5\255", socks5.method_reply(socks5.NO_ACCEPTABLE))
    assert.are.equal("\1\5alice\6secret", socks5.auth("alice", "secret"))
    assert.are.equal("\1\0", socks5.auth_reply(true))
    assert.are.equal("\1\1", socks5.auth_reply(false))
    for _, c in ipairs(REQUESTS) do
      local r = c[2]
      assert.are.equal(c[1], socks5.request(r.cmd, r.atyp, r.addr, r.port))
    end
    for _, c in ipairs(REPLIES) do
      local r = c[2]
      assert.are.equal(c[1], socks5.reply(r.rep, r.atyp, r.addr, r.port))
    end
    assert.are.equal("\5\2\0\1\0\0\0\0\0\0", socks5.reply(socks5.NOT_ALLOWED))
  end)

  it("raise on misuse", function()
    assert.has_error(function() socks5.request(1, 3, ("a"):rep(256), 80) end)
    assert.has_error(function() socks5.request(1, 3, "", 80) end)
    assert.has_error(function() socks5.request(1, 1, "\1\2\3", 80) end)
    assert.has_error(function() socks5.request(1, 1, "\1\2\3\4", 65536) end)
    assert.has_error(function() socks5.auth("", "p") end)
    assert.has_error(function() socks5.auth("u", ("p"):rep(256)) end)
    assert.has_error(function() socks5.greeting({}) end)
  end)

  it("name reply codes for logs", function()
    assert.are.equal("connection refused (5)", socks5.reply_name(5))
    assert.are.equal("host unreachable (4)", socks5.reply_name(4))
    assert.are.equal("unassigned reply code (42)", socks5.reply_name(42))
  end)
end)
