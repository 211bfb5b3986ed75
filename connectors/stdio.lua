-- stdio: the client is standard input and output (Net::Server's inetd model, and what ssh's
-- ProxyCommand expects). There is no listener: the process serves this one connection and
-- exits 0 once both directions have ended. A config with a stdio proxy has only that proxy.
local _M = {
  positions = { from = true },
  params = {},
}

function _M.listen(conf)
  return { stdio = true }
end

return _M
