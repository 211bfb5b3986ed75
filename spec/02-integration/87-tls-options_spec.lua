-- The TLS options of `ssl` (issue 31), each shown enforced on a real openssl s_client:
-- min_version/max_version, ciphers (TLS 1.2), ciphersuites (TLS 1.3), groups, crl (a CRL
-- made with `openssl ca` in the spec's PKI), verify_depth (a chain through an intermediate
-- CA), an encrypted key loaded with key_password (text, file, environment variable), and
-- IO::Socket::SSL's names (SSL_ca_file, SSL_verify_mode, SSL_crl_file, ...) as aliases.
local h = require "spec.helpers"
local tls = require "spec.support.tls"
local ffi = require "ffi"
pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite);")

-- A second folder beside h.pki()'s: an `openssl ca` database over the same CA, a client
-- certificate it revoked and its CRL, an intermediate CA and a client under it, and the
-- localhost key encrypted with a password.
local function more_pki(pki)
  local dir = pki .. "/more"
  if h.read(dir .. "/crl.pem") then return dir end
  local key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local function sh(cmd) assert(os.execute("cd " .. dir .. " && " .. cmd .. " >/dev/null 2>&1") == 0, cmd) end
  local function signed(name, ca, ext)
    sh(("openssl req %s -keyout %s.key -out %s.csr -subj /CN=%s"):format(key, name, name, name))
    h.write(dir .. "/" .. name .. ".ext", ext)
    sh(("openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -out %s.pem -days 2 -extfile %s.ext")
       :format(name, ca, ca, name, name))
  end
  os.execute("mkdir -p " .. dir)
  sh(("cp %s/ca.pem %s/ca.key ."):format(pki, pki))
  h.write(dir .. "/ca.cnf", table.concat({
    "[ca]", "default_ca = spec", "[spec]", "dir = .", "database = index.txt", "new_certs_dir = .",
    "certificate = ca.pem", "private_key = ca.key", "default_md = sha256", "default_crl_days = 2",
    "crlnumber = crlnumber", "policy = any", "[any]", "commonName = supplied", "" }, "\n"))
  h.write(dir .. "/index.txt", "")
  h.write(dir .. "/crlnumber", "01\n")
  signed("revoked", "ca", "extendedKeyUsage=clientAuth\n")
  sh("openssl ca -batch -config ca.cnf -revoke revoked.pem")
  sh("openssl ca -batch -config ca.cnf -gencrl -out crl.pem")
  signed("inter", "ca", "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n")
  signed("deep", "inter", "extendedKeyUsage=clientAuth\n")
  sh(("openssl pkey -in %s/localhost.key -aes256 -passout pass:sekrit -out enc.key"):format(pki))
  h.write(dir .. "/password.txt", "sekrit\n")
  return dir
end

describe("ssl options", function()
  local pki, more, echo, np

  setup(function()
    pki = h.pki()
    more = more_pki(pki)
    echo = h.peer_server("echo")
    ffi.C.setenv("SPEC_KEY_PASSWORD", "sekrit", 1)      -- netproxy inherits it
    np = h.netproxy_start(([[
local pki, more = %q, %q
local function ssl(t)
  t.type, t.host, t.port = "ssl", "127.0.0.1", 0
  t.cert = t.cert or pki .. "/localhost.pem"
  if not t.key and not t.key_password and not t.key_password_file and not t.key_password_env then t.key = pki .. "/localhost.key" end
  return t
end
local to = { type = "tcp", host = "127.0.0.1", port = %d }
proxy { name = "v13", from = ssl { min_version = "TLSv1.3" }, to = to }
proxy { name = "v12", from = ssl { max_version = "1.2" }, to = to }
proxy { name = "ciphers", from = ssl { max_version = "1.2", ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384" }, to = to }
proxy { name = "suites", from = ssl { ciphersuites = "TLS_CHACHA20_POLY1305_SHA256" }, to = to }
proxy { name = "groups", from = ssl { groups = "secp384r1" }, to = to }
proxy { name = "crl", from = ssl { SSL_ca_file = pki .. "/ca.pem", SSL_verify_mode = 1, SSL_crl_file = more .. "/crl.pem" }, to = to }
proxy { name = "depth0", from = ssl { ca = pki .. "/ca.pem", verify = true, verify_depth = 0 }, to = to }
proxy { name = "depth1", from = ssl { ca = pki .. "/ca.pem", verify = true, verify_depth = 1 }, to = to }
proxy { name = "enc", from = ssl { key = more .. "/enc.key", key_password = "sekrit" }, to = to }
proxy { name = "encfile", from = ssl { SSL_key_file = more .. "/enc.key", key_password_file = more .. "/password.txt" }, to = to }
proxy { name = "encenv", from = ssl { key = more .. "/enc.key", key_password_env = "SPEC_KEY_PASSWORD" }, to = to }
]]):format(pki, more, echo.port), { "-v" })
  end)
  teardown(h.stop_all)
  before_each(function() h.test_begin(np) end)
  after_each(h.test_end)

  local function refused(name, pattern, ...)
    local line = name .. ": [^\n]* %-> %- in=0 out=0 [^\n]*end=refused: tls: handshake: " .. pattern
    local args = { ... }
    args[#args + 1] = function() return np.log():find(line) end
    local out = tls.s_client(np.ports[name], "MARK\n", unpack(args))
    assert.falsy(out:find("MARK\n", 1, true), out)
    return h.wait_log(np, line)
  end

  local function served(name, ...)
    local out = tls.s_client(np.ports[name], "MARK\n", ...)
    assert.truthy(out:find("MARK\n", 1, true), out)
    return out
  end

  it("min_version = \"TLSv1.3\" refuses a TLS 1.2 client (openssl s_client -tls1_2)", function()
    refused("v13", "unsupported protocol", "-tls1_2")
    assert.truthy(served("v13", "-tls1_3"):find("New, TLSv1.3", 1, true))
  end)

  it("max_version = \"1.2\" keeps a TLS 1.3 client to TLS 1.2", function()
    assert.truthy(served("v12"):find("New, TLSv1.2", 1, true))
    refused("v12", "unsupported protocol", "-tls1_3")
  end)

  it("ciphers restricts what a TLS 1.2 client can negotiate", function()
    assert.truthy(served("ciphers", "-tls1_2"):find("Cipher is ECDHE-ECDSA-AES256-GCM-SHA384", 1, true))
    refused("ciphers", "no shared cipher", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
  end)

  it("ciphersuites restricts what a TLS 1.3 client can negotiate", function()
    assert.truthy(served("suites", "-tls1_3"):find("Cipher is TLS_CHACHA20_POLY1305_SHA256", 1, true))
    refused("suites", "no shared cipher", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
  end)

  it("groups restricts the key exchange", function()
    assert.truthy(served("groups", "-groups", "X25519:secp384r1"):find("Server Temp Key: ECDH, secp384r1", 1, true))
    refused("groups", "no suitable key share", "-groups", "X25519")
  end)

  it("crl (as SSL_crl_file, with SSL_ca_file and SSL_verify_mode) refuses a revoked client certificate", function()
    served("crl", "-cert", pki .. "/client.pem", "-key", pki .. "/client.key")
    refused("crl", "certificate verify failed: certificate revoked", "-cert", more .. "/revoked.pem", "-key", more .. "/revoked.key")
  end)

  it("verify_depth bounds the client's chain", function()
    -- deep <- inter <- ca: one intermediate CA between the client and the trusted one
    local deep = { "-cert", more .. "/deep.pem", "-key", more .. "/deep.key", "-cert_chain", more .. "/inter.pem" }
    served("depth1", unpack(deep))
    refused("depth0", "certificate verify failed: certificate chain too long", unpack(deep))
  end)

  it("loads an encrypted key with key_password, key_password_file or key_password_env", function()
    for _, name in ipairs({ "enc", "encfile", "encenv" }) do
      assert.truthy(served(name, "-CAfile", pki .. "/ca.pem"):find("Verify return code: 0 (ok)", 1, true), name)
    end
  end)

  it("refuses at --check an encrypted key without its password or with a wrong one, and an alias beside its name", function()
    local function check(from)
      local path = h.write(h.tmpfile("opts.lua"), ("proxy { from = { type = 'ssl', port = 1, %s }, to = { type = 'tcp', host = 'h', port = 2 } }\n"):format(from))
      local _, err, rc = h.run({ h.netproxy, "--check", path })
      assert.are_not.equal(0, rc, from)
      return err
    end
    local cert = ("cert = %q, key = %q"):format(pki .. "/localhost.pem", more .. "/enc.key")
    assert.truthy(check(cert):find("(an encrypted key needs key_password)", 1, true))
    assert.truthy(check(cert .. ", key_password = 'wrong'"):find("(wrong key_password?)", 1, true))
    assert.truthy(check(cert .. ", key_password = 'a', key_password_env = 'B'"):find("give one of key_password", 1, true))
    assert.truthy(check(("cert = %q, ca = 'x', SSL_ca_file = 'y', verify = true"):format(pki .. "/localhost.pem"))
                  :find("'SSL_ca_file' and 'ca' say the same: give one", 1, true))
    assert.truthy(check(("cert = %q, key = %q, ciphers = 'NO-SUCH-CIPHER'"):format(pki .. "/localhost.pem", pki .. "/localhost.key"))
                  :find("ciphers \"NO-SUCH-CIPHER\"", 1, true))
    assert.truthy(check(("cert = %q, min_version = 'TLSv9'"):format(pki .. "/localhost.pem")):find("min_version: bad value 'TLSv9'", 1, true))
  end)
end)
