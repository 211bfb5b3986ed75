-- unix: unix-domain stream sockets. As `from` it listens on `path` ("@name" is Linux's
-- abstract namespace: no file), with `mode` ("0660") for the socket file; a stale file
-- (nothing listening) is replaced at start and the file is removed at exit; a path with a
-- live listener is an error naming it. As `to` it connects to `path`. The client of a unix
-- listener is "unix:PATH" in the logs, and conn.peer = { uid =, gid =, pid = } (SO_PEERCRED)
-- is there for accept(conn). The relay splices between unix and tcp sockets alike.
local core = require "netproxy.core"
local proxy_protocol = require "netproxy.proxy_protocol"

local tonumber, type = tonumber, type

local _M = {
  positions = { from = true, to = true },
  sends_proxy_protocol = true,
}

local MAX_PATH = 107            -- sun_path holds 108 bytes with the terminating NUL

local function path(v)
  if type(v) ~= "string" or v == "" or v == "@" then
    return nil, "want a socket path (\"/run/app.sock\") or \"@name\" (abstract)"
  end
  if #v > MAX_PATH then return nil, ("path too long (%d bytes, at most %d)"):format(#v, MAX_PATH) end
  if v:find("\0", 1, true) then return nil, "a path cannot hold a NUL byte" end
  return v
end

local function mode(v)
  local n = type(v) == "string" and v:match("^0?[0-7][0-7][0-7]$") and tonumber(v, 8)
  if not n then return nil, "bad mode '" .. tostring(v) .. "' (want octal permissions like \"0660\")" end
  return n
end

_M.params = { path = path, mode = mode }
_M.pool_fields = { "path" }   -- `servers` is a list of socket paths

function _M.check(conf, position)
  if conf.path == nil then return "missing path" end
  if conf.mode and position ~= "from" then return "mode is for a listening (from) socket" end
  if conf.mode and conf.path:sub(1, 1) == "@" then return "mode: an abstract socket has no file" end
end

-- What the C core binds: a unix socket, not a host and port.
function _M.listen(conf)
  return { path = conf.path, mode = conf.mode }
end

-- Where connect() goes when it has nothing else to do (netproxy.session.route).
function _M.fixed(conf)
  if conf.proxy_protocol == nil then return { path = conf.path } end
end

function _M.connect(conf, conn)
  local sock, err = core.connect_unix(conf.path, { timeout = conn.connect_timeout })
  if not sock then return nil, err end
  return proxy_protocol.send(sock, conf, conn)
end

return _M
