-- netproxy.pool_checks: a pool's active checks: one server checked (connect, send/expect or
-- the check function) and the loop that marks it up or down in the shared table (src/pool.c).
local core = require "netproxy.core"

local tostring, ipairs = tostring, ipairs

local _M = {}

-- A udp check: send one datagram; the first reply within timeout decides (it must match
-- expect, when given). ICMP port unreachable reads as "refused".
local function exchange_datagram(c, sock)
  local ok, why = sock:write(c.send, c.timeout)
  if not ok then return nil, why end
  local d, err = sock:read(65536, c.timeout)
  if not d then return nil, err end
  if c.expect and not d:find(c.expect) then return nil, ("expected %q, got %q"):format(c.expect, d:sub(1, 60)) end
  return true
end

-- (a server is checked from the address its clients reach it from: the `to`'s source)
local function check_connect(c, s)
  local f = s.fields
  if c.datagram then return core.connect_udp(f.host, f.port, { timeout = c.timeout }) end
  if f.path then return core.connect_unix(f.path, { timeout = c.timeout }) end
  local source = s.conf and s.conf.source
  return core.connect(f.host or f.proxy_host, f.port or f.proxy_port, { timeout = c.timeout, source = source })
end

-- One check of a server: true, or nil and why. A TCP connect (a connected UDP socket for a
-- udp pool); then send/expect, or the check function with the connected socket.
local function check_once(c, s)
  local sock, err = check_connect(c, s)
  if not sock then return nil, err end
  local ok, why = true, nil
  if c.fn then
    local pok, res, fwhy = pcall(c.fn, sock, s.view)
    if not pok then ok, why = nil, "check function: " .. tostring(res)
    elseif not res then ok, why = nil, tostring(fwhy or "check function said no") end
  elseif c.datagram then
    ok, why = exchange_datagram(c, sock)
  elseif c.send or c.expect then
    local deadline = core.now() + c.timeout
    if c.send then ok, why = sock:write(c.send, c.timeout) end
    if ok and c.expect then
      local got = ""
      ok = nil
      while #got < 65536 do
        local left = deadline - core.now()
        if left <= 0 then why = "timeout" break end
        local more, rerr = sock:read(65536, left)
        if not more then why = rerr break end
        got = got .. more
        if got:find(c.expect) then ok = true break end
      end
      if not ok then why = ("expected %q, got %q (%s)"):format(c.expect, got:sub(1, 60), tostring(why or "too long")) end
    end
  end
  sock:close()
  return ok, why
end

-- A server's check loop, in a task of its own, until a newer checker starts (or, for a
-- server from DNS, until DNS no longer names it).
local function check_loop(p, s, epoch)
  local c = p.check
  s.checking = true
  while core.pool_epoch() == epoch do
    if p.dns then
      p:sync()
      if s.state == "deleted" then break end
    end
    while core.pool_epoch() == epoch and core.pool_control(s.row) == "maint" do core.sleep(c.interval) end
    if core.pool_epoch() ~= epoch then break end
    local ok, why = check_once(c, s)
    local verdict = core.pool_checked(s.row, ok, c.rise, c.fall)
    if verdict == "down" then
      core.log("warning", ("%s: server %s down: check failed %d times: %s"):format(p.proxy, s.name, c.fall, tostring(why)))
    elseif verdict == "up" then
      core.log("notice", ("%s: server %s up: check passed %d times"):format(p.proxy, s.name, c.rise))
    end
    core.sleep(c.interval)
  end
  s.checking = nil
end

-- The checks of a DNS pool's servers that have none running (new in the answer).
local function check_new(p, epoch)
  p:sync()
  for _, s in ipairs(p.servers) do
    if s.row and not s.checking and s.state ~= "deleted" then
      s.checking = true
      core.pool_spawn(p.proxy, check_loop, p, s, epoch)
    end
  end
end

_M.check_loop = check_loop
_M.check_new = check_new

return _M
