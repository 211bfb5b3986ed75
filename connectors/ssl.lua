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

local CERT_ENTRY = { names = true, cert = true, key = true }

local function certs(v)
  if type(v) ~= "table" then return nil, "want a list of { names = { ... }, cert = ..., key = ... }" end
  for i, c in ipairs(v) do
    if type(c) ~= "table" or type(c.cert) ~= "string" then return nil, "certs[" .. i .. "]: missing cert" end
    for k in pairs(c) do
      if not CERT_ENTRY[k] then
        return nil, "certs[" .. i .. "]: unknown parameter '" .. tostring(k) .. "' (want names, cert, key)"
      end
    end
    if c.key ~= nil and type(c.key) ~= "string" then return nil, "certs[" .. i .. "]: key: want a file name" end
    if type(c.names) == "string" then c.names = { c.names } end
    if type(c.names) ~= "table" or #c.names == 0 then return nil, "certs[" .. i .. "]: missing names" end
  end
  return v
end

_M.params = {
  host = check.host, port = check.port,
  cert = check.string, key = check.string,
  SSL_cert_file = check.string, SSL_key_file = check.string,    -- Net::Proxy's names
  certs = certs, ca = check.string, verify = check.boolean, alpn = alpn,
  min_version = check.one_of("1.0", "1.1", "1.2", "1.3"),
  sni = check.string, verify_name = check.string,
  start_cleartext = check.boolean, starttls = check.func, handshake_timeout = check.seconds,
  source = check.address,             -- to: the local address to connect from
}

local CLIENT_ONLY = { sni = true, verify_name = true }
local SERVER_ONLY = { certs = true }

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
  })
  if not ok then return nil, tostring(ctx) end
  return ctx
end

-- Checks the TLS parameters of a side; used by connect_ssl too. Returns a problem or nil.
function _M.check_tls(conf, server)
  if conf.SSL_cert_file then conf.cert = conf.cert or conf.SSL_cert_file end
  if conf.SSL_key_file then conf.key = conf.key or conf.SSL_key_file end
  conf.SSL_cert_file, conf.SSL_key_file = nil, nil
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

function _M.accept(conf, client, conn)
  return upgrade(client, conf, conn, {}, "from the client")
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
