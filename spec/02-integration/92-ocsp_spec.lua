-- OCSP stapling (issue 31): `ocsp = FILE` on `from = ssl` staples a DER response made by
-- `openssl ocsp` against the spec's CA (an index file, the CA as responder) to the handshake
-- of a client that asks for it (`openssl s_client -status`); a reload reads the file again;
-- a file that is not an OCSP response, and ocsp on `to`, are refused at --check.
local h = require "spec.helpers"
local tls = require "spec.support.tls"

-- An OCSP response for localhost.pem, signed by the CA: "good", or "revoked" when revoked.
local function ocsp_response(pki, out, revoked)
  local dir = pki .. "/ocsp"
  local function sh(cmd) assert(os.execute("cd " .. dir .. " && " .. cmd .. " >/dev/null 2>&1") == 0, cmd) end
  os.execute("mkdir -p " .. dir)
  local serial = io.popen("openssl x509 -in " .. pki .. "/localhost.pem -noout -serial"):read("*l"):match("=(%x+)")
  local until_ = os.date("!%y%m%d%H%M%SZ", os.time() + 86400)
  h.write(dir .. "/index.txt", ("%s\t%s\t%s\t%s\tunknown\t/CN=localhost\n")
          :format(revoked and "R" or "V", until_, revoked and os.date("!%y%m%d%H%M%SZ") or "", serial))
  sh(("openssl ocsp -issuer %s/ca.pem -cert %s/localhost.pem -no_nonce -reqout req.der"):format(pki, pki))
  sh(("openssl ocsp -index index.txt -rsigner %s/ca.pem -rkey %s/ca.key -CA %s/ca.pem -reqin req.der -respout %s -ndays 1")
     :format(pki, pki, pki, out))
  return out
end

local function config(pki, echo_port, ocsp, port)
  return ([[
proxy { name = "ocsp", from = { type = "ssl", host = "127.0.0.1", port = %d,
                                cert = %q, key = %q, ocsp = %q },
        to = { type = "tcp", host = "127.0.0.1", port = %d } }
]]):format(port or 0, pki .. "/localhost.pem", pki .. "/localhost.key", ocsp, echo_port)
end

describe("ocsp stapling", function()
  local pki, echo

  setup(function()
    pki = h.pki()
    echo = h.peer_server("echo")
  end)
  teardown(h.stop_all)
  before_each(h.test_begin)
  after_each(h.test_end)

  local function status(np)
    local out = tls.s_client(np.ports.ocsp, "MARK\n", "-status", "-CAfile", pki .. "/ca.pem")
    assert.truthy(out:find("MARK\n", 1, true), out)
    return out
  end

  it("staples the response for a client that asks (s_client -status), and reads the file again on a reload", function()
    local file = ocsp_response(pki, h.tmpfile("resp.der"))
    local path = h.write(h.tmpfile("ocsp.lua"), config(pki, echo.port, file))
    local np = h.netproxy_start(path, { "-v" })
    h.write(path, config(pki, echo.port, file, np.ports.ocsp))
    local out = status(np)
    assert.truthy(out:find("OCSP Response Status: successful", 1, true), out)
    assert.truthy(out:find("Cert Status: good", 1, true), out)
    -- a client that does not ask gets none
    local plain = tls.s_client(np.ports.ocsp, "MARK\n", "-tlsextdebug")
    assert.falsy(plain:find("status request", 1, true), plain)
    -- the certificate revoked: the new response is stapled after a SIGHUP
    ocsp_response(pki, file, true)
    os.execute("kill -HUP " .. np.pid)
    h.wait_log(np, "reloaded [^\n]*%(config generation 1%)")
    out = status(np)
    assert.truthy(out:find("Cert Status: revoked", 1, true), out)
  end)

  it("refuses at --check a file that is not an OCSP response, and ocsp on `to`", function()
    local function check(text)
      local _, err, rc = h.run({ h.netproxy, "--check", h.write(h.tmpfile("ocsp-check.lua"), text) })
      assert.are_not.equal(0, rc, text)
      return err
    end
    local err = check(config(pki, 1, pki .. "/localhost.pem"))
    assert.truthy(err:find("ocsp " .. pki .. "/localhost.pem: not a DER OCSP response", 1, true), err)
    err = check(config(pki, 1, pki .. "/no-such.der"))
    assert.truthy(err:find("ocsp " .. pki .. "/no-such.der: No such file or directory", 1, true), err)
    err = check("proxy { from = { type = 'tcp', port = 1 }, to = { type = 'ssl', host = 'h', port = 2, ocsp = 'x' } }\n")
    assert.truthy(err:find("'ocsp' is for the other position", 1, true), err)
  end)
end)
