-- ssl: TLS on either side, stunnel's job. As `from` netproxy terminates TLS (it holds the
-- certificates); as `to` it originates TLS to the server (and checks its certificate).
-- With start_cleartext = true (Net::Proxy) the side starts in clear text and is upgraded
-- later: by `starttls`, a function that speaks the protocol's clear-text part first (an SMTP
-- EHLO/STARTTLS exchange), or from a hook with conn:starttls().
local core = require "netproxy.core"
local check = require "netproxy.check"
local proxy_protocol = require "netproxy.proxy_protocol"

local type, tostring, pcall = type, tostring, pcall

local _M = {
  positions = { from = true, to = true },
  sends_proxy_protocol = true,        -- in clear, before the handshake
}

local function alpn(v)
  if type(v) == "string" then
    local list = {}
    for name in v:gmatch("[^,%s]+") do list[#list + 1] = name end
    v = list
  end
  if type(v) ~= "table" or #v == 0 then return nil, "want a list of protocol names, like { \"h2\", \"http/1.1\" }" end
  for _, name in ipairs(v) do
    if type(name) ~= "string" or #name == 0 or #name > 255 then return nil, "bad protocol name" end
  end
  return v
end

local CERT_ENTRY = { names = true, cert = true, key = true, ocsp = true }

local function certs(v)
  if type(v) ~= "table" then return nil, "want a list of { names = { ... }, cert = ..., key = ... }" end
  for i, c in ipairs(v) do
    if type(c) ~= "table" or type(c.cert) ~= "string" then return nil, "certs[" .. i .. "]: missing cert" end
    for k in pairs(c) do
      if not CERT_ENTRY[k] then
        return nil, "certs[" .. i .. "]: unknown parameter '" .. tostring(k) .. "' (want names, cert, key, ocsp)"
      end
    end
    if c.key ~= nil and type(c.key) ~= "string" then return nil, "certs[" .. i .. "]: key: want a file name" end
    if c.ocsp ~= nil and type(c.ocsp) ~= "string" then return nil, "certs[" .. i .. "]: ocsp: want a file name" end
    if type(c.names) == "string" then c.names = { c.names } end
    if type(c.names) ~= "table" or #c.names == 0 then return nil, "certs[" .. i .. "]: missing names" end
  end
  return v
end

-- "1.2", "TLSv1.2", "TLSv1_2" (IO::Socket::SSL) or "TLSv1" -> "1.0" .. "1.3"
local function version(v)
  local n = type(v) == "string" and (v:match("^1%.[0-3]$") or v:match("^TLSv(1[._][0-3])$") or (v == "TLSv1" and "1.0"))
  if n then return (n:gsub("_", ".")) end
  return nil, "bad value '" .. tostring(v) .. "' (want \"1.0\" .. \"1.3\", or \"TLSv1.2\" ...)"
end

-- IO::Socket::SSL's SSL_verify_mode: 0 (SSL_VERIFY_NONE) or a mask with 1 (SSL_VERIFY_PEER)
local function verify_mode(v)
  if v == 0 then return false end
  if type(v) == "number" and v % 2 == 1 and v >= 1 and v <= 15 then return true end
  return nil, "want 0 (SSL_VERIFY_NONE) or 1 (SSL_VERIFY_PEER, with 2 or 4 added), not " .. tostring(v)
end

-- Net::Proxy passes IO::Socket::SSL's names through: each is the netproxy parameter here.
local ALIASES = {
  SSL_cert_file = "cert", SSL_key_file = "key", SSL_ca_file = "ca", SSL_ca_path = "ca",
  SSL_cipher_list = "ciphers", SSL_ciphersuites = "ciphersuites", SSL_ecdh_curve = "groups",
  SSL_crl_file = "crl", SSL_verify_mode = "verify", SSL_passwd_cb = "key_password",
  SSL_hostname = "sni", SSL_verifycn_name = "verify_name", SSL_alpn_protocols = "alpn",
}
_M.ALIASES = ALIASES

_M.params = {
  host = check.host, port = check.port,
  cert = check.string, key = check.string,
  certs = certs, ca = check.string, verify = check.boolean, alpn = alpn,
  min_version = version, max_version = version,
  ciphers = check.string, ciphersuites = check.string, groups = check.string,
  crl = check.string, ocsp = check.string, verify_depth = check.int_range(0, 100),
  -- an encrypted key's password: the text, a file holding it (its first line), an
  -- environment variable, or (IO::Socket::SSL's SSL_passwd_cb) a function returning it
  key_password = function(v)
    if type(v) == "string" or type(v) == "function" then return v end
    return nil, "want the password, or a function returning it"
  end,
  key_password_file = check.string, key_password_env = check.string,
  sni = check.string, verify_name = check.string,
  start_cleartext = check.boolean, starttls = check.func, handshake_timeout = check.seconds,
  source = check.address,             -- to: the local address to connect from
}

for alias, name in pairs(ALIASES) do
  _M.params[alias] = name == "verify" and verify_mode or _M.params[name]
end

local CLIENT_ONLY = { sni = true, verify_name = true }
local SERVER_ONLY = { certs = true, ocsp = true }

local function is_address(host)
  return host:match("^[%d.]+$") or host:find(":", 1, true)
end

-- What a client sends as SNI and checks the certificate against: the host, by default.
local function names(conf)
  return {
    sni = conf.sni or (conf.host and not is_address(conf.host) and conf.host or nil),
    verify_name = conf.verify_name or conf.host,
  }
end

-- Builds the TLS context now, so that a missing or bad file is a config error.
local function context(conf, server)
  local ok, ctx = pcall(core.tls_context, {
    server = server, cert = conf.cert, key = conf.key, certs = conf.certs, ca = conf.ca,
    verify = conf.verify, alpn = conf.alpn, min_version = conf.min_version,
    max_version = conf.max_version, ciphers = conf.ciphers, ciphersuites = conf.ciphersuites,
    groups = conf.groups, crl = conf.crl, ocsp = conf.ocsp, verify_depth = conf.verify_depth,
    key_password = conf._key_password,
  })
  if not ok then return nil, tostring(ctx) end
  return ctx
end

-- IO::Socket::SSL's names become netproxy's; both for one setting is an error.
local function unalias(conf)
  for alias, name in pairs(ALIASES) do
    if conf[alias] ~= nil then
      if conf[name] ~= nil and conf[name] ~= conf[alias] then return ("'%s' and '%s' say the same: give one"):format(alias, name) end
      conf[name], conf[alias] = conf[alias], nil
    end
  end
end

-- The key's password, from one of key_password, key_password_file, key_password_env.
local function key_password(conf)
  local given = (conf.key_password and 1 or 0) + (conf.key_password_file and 1 or 0) + (conf.key_password_env and 1 or 0)
  if given > 1 then return nil, "give one of key_password, key_password_file, key_password_env" end
  local pw = conf.key_password
  if type(pw) == "function" then
    local ok, v = pcall(pw)
    if not ok or type(v) ~= "string" then return nil, "key_password: the function gave no password: " .. tostring(v) end
    pw = v
  elseif conf.key_password_file then
    local f, err = io.open(conf.key_password_file)
    if not f then return nil, "key_password_file: " .. tostring(err) end
    pw = f:read("*l")
    f:close()
    if not pw then return nil, "key_password_file " .. conf.key_password_file .. ": empty" end
  elseif conf.key_password_env then
    pw = os.getenv(conf.key_password_env)
    if not pw then return nil, "key_password_env: " .. conf.key_password_env .. " is not set" end
  end
  conf._key_password = pw
  return true
end

-- Checks the TLS parameters of a side; used by connect_ssl too. Returns a problem or nil.
function _M.check_tls(conf, server)
  local problem = unalias(conf)
  if problem then return problem end
  local ok, perr = key_password(conf)
  if not ok then return perr end
  if conf.crl and not conf.verify and server then return "crl without verify = true: no client certificate is checked" end
  for k in pairs(server and CLIENT_ONLY or SERVER_ONLY) do
    if conf[k] ~= nil then return ("'%s' is for the other position"):format(k) end
  end
  if server then
    if not conf.cert and not conf.certs then return "missing cert (and key)" end
    if conf.verify and not conf.ca then return "verify (client certificates) needs ca" end
    if conf.ca and not conf.verify then
      return "ca without verify = true: no client certificate is asked for (add verify = true, or leave ca out)"
    end
  elseif conf.verify == nil then
    conf.verify = true                  -- check the server's certificate unless told not to
  end
  if conf.starttls and not conf.start_cleartext then return "starttls goes with start_cleartext = true" end
  local ctx, err = context(conf, server)
  if not ctx then return err end
  conf._tls = ctx
  if not server then conf._tls_names = names(conf) end   -- for conn:starttls("server")
end

function _M.check(conf, position, ctx)
  if position == "from" then
    local problem = check.listen(conf)
    if problem then return problem end
  elseif not ctx.target_from_client then
    if conf.host == nil or conf.port == nil then return "missing host or port" end
  end
  return _M.check_tls(conf, position == "from")
end

function _M.listen(conf)
  return conf.host, conf.port
end

-- The clear-text part (starttls), then the handshake; bytes the starttls function returns
-- are handed to the other side first (a greeting it will not see again).
local function upgrade(sock, conf, conn, opts, who)
  if conf.start_cleartext then
    if not conf.starttls then return true end        -- a hook will call conn:starttls()
    local ok, err = conf.starttls(sock, conn)
    if not ok then return nil, "starttls: " .. tostring(err) end
    opts.replay = type(ok) == "string" and ok or nil
  end
  opts.timeout = conf.handshake_timeout
  local ok, info = sock:tls(conf._tls, opts)
  if not ok then return nil, "tls: " .. info end
  conn:log("info", "tls %s: %s", who, info)
  if opts.replay then sock:unread(opts.replay) end
  return true
end

-- A client turned away by tls_accept: the proxy's on_denied (server{}'s first) hears of it,
-- as of one turned away by the guards; an error there is logged and changes nothing.
local function tell_denied(proxy, conn, why)
  for _, fn in ipairs({ proxy.server_on_denied or false, proxy.on_denied or false }) do
    if fn then
      local ok, err = pcall(fn, { proxy = proxy.name, client = conn.client, reason = why, tls = conn.tls })
      if not ok then conn:log("err", "on_denied: %s", tostring(err)) end
    end
  end
end

-- The handshake; then conn.tls (and conn.sni, conn.ja4) says who the client is, and the
-- proxy's tls_accept(conn) may refuse it. A failed handshake keeps the JA4 of its hello.
function _M.accept(conf, client, conn, proxy)
  local ok, err = upgrade(client, conf, conn, {}, "from the client")
  if conf.start_cleartext and not conf.starttls then return ok, err end   -- no handshake yet
  local tls = core.tls_identity(client)
  if tls then
    conn.tls, conn.sni, conn.ja4 = tls, tls.sni, tls.ja4
  end
  if not ok then return ok, err end
  if proxy and proxy.tls_accept then
    local yes, why = proxy.tls_accept(conn)
    if not yes then
      why = tostring(why or "by tls_accept()")
      conn:log("info", "refused by tls_accept: %s", why)
      tell_denied(proxy, conn, why)
      return nil, why
    end
  end
  return true
end

-- TLS to the server on a connected socket; connect_ssl uses it after its CONNECT.
function _M.client_handshake(sock, conf, conn)
  local sent, perr = proxy_protocol.send(sock, conf, conn)
  if not sent then return nil, perr end
  local ok, err = upgrade(sock, conf, conn, names(conf), "to the server")
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

function _M.connect(conf, conn)
  local sock, err = core.connect(conf.host, conf.port,
    { timeout = conn.connect_timeout, source = conf.source, keepalive = conf.tcp_keepalive })
  if not sock then return nil, err end
  return _M.client_handshake(sock, conf, conn)
end

return _M
