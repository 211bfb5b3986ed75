-- dummy: Net::Proxy's connector that does nothing; the `to` of a proxy whose `from`
-- chooses the real destination itself (dual). It is also the template for writing a
-- connector: a connector script returns a table with
--   positions  which of from/to it can stand in
--   params     { name = validator } for its parameters (netproxy.check has the usual ones)
--   check(conf, position)       optional: fill defaults, return a message if conf is wrong
--   listen(conf)                from: host, port for the C core to bind
--   accept(conf, client, conn)  from: negotiate with the client socket; return true, or a
--                               `to`-style table naming where to go, or nil and why
--   connect(conf, conn)         to: return a socket connected (and negotiated) to the
--                               server, or nil and why
-- Sockets are cosockets (netproxy.core): read/peek/write wait without blocking anybody.
local _M = {
  positions = { to = true },
  params = {},
}

-- Connecting to nothing fails every connection: dummy only stands where the `from` chooses
-- the destination itself (dual; a connector whose accept returns a connector table).
function _M.check(conf, position, ctx)
  if not (ctx and ctx.from_chooses) then
    return "the dummy connector connects to nothing: every connection " ..
           (ctx and ctx.from_type and "from " .. ctx.from_type .. " " or "") ..
           "would fail (dummy is the `to` of a from that picks the destination itself, such as dual)"
  end
end

function _M.connect(conf, conn)
  return nil, "the dummy connector connects to nothing"
end

return _M
