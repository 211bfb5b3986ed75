-- stdio: the client is standard input and output (Net::Server's inetd model, and what ssh's
-- ProxyCommand expects). There is no listener: the process serves this one connection and
-- exits 0 once both directions have ended, 1 when it failed (src/main.c). A config with a
-- stdio proxy has only that proxy.
local _M = {
  positions = { from = true },
  params = {},
}

function _M.listen(conf)
  return { stdio = true }
end

-- The server could not be reached. ssh shows its ProxyCommand's standard error, which is all
-- its user gets to know why ("Connection closed by remote host" otherwise): say it as an
-- error, so that it is shown at the stdio form's log levels (warning, and err with -q).
function _M.failed(conf, client, conn, err)
  conn:log("err", "cannot reach %s: %s", tostring(conn.target or "the server"), tostring(err))
end

return _M
