-- The Debian package (scripts/package: CPack's DEB generator): built from the build under
-- test, installed with dpkg, run from its installed files, purged. Needs root (dpkg), and
-- never touches a netproxy package that was installed before the spec.
-- run-tests: alone (dpkg takes a lock: the two builds' runs of this file cannot overlap)
local h = require "spec.helpers"

local function sh(cmd)
  local out, err, rc = h.run({ "sh", "-c", cmd })
  return rc, out .. err
end

local function exists(path)
  return os.execute("test -e " .. h.quote(path)) == 0
end

local function installed()
  local _, out = sh("dpkg-query -W -f='${Status}' netproxy 2>/dev/null")
  return out:find("install ok installed", 1, true) ~= nil
end

-- The installed config (or an example) with its fixed ports replaced.
local function patched(file, peer_port)
  local text = assert(h.read(file), file)
  text = text:gsub("port = 6789", "port = 0"):gsub("port = 9876", "port = " .. peer_port)
  return h.write(h.tmpfile("deb-config.lua"), text)
end

local function start_installed(config, args)
  local saved = h.netproxy
  h.netproxy = "/usr/bin/netproxy"
  local ok, p = pcall(h.netproxy_start, config, args)
  h.netproxy = saved
  assert(ok, p)
  return p
end

local why_not
if io.popen("id -u"):read("*l") ~= "0" then
  why_not = "not root: dpkg -i needs root (run the specs as root to test the package)"
elseif installed() then
  why_not = "a netproxy package is installed on this machine already: not replacing it"
end

describe("the Debian package", function()
  if why_not then
    it("is skipped: " .. why_not, function() pending(why_not) end)
    return
  end

  local ours = false
  teardown(function()
    h.stop_all()
    if ours and installed() then sh("dpkg --purge netproxy") end
  end)

  it("is built by one command, installed, run from its files and purged cleanly", function()
    local rc, out = sh(h.quote(h.root .. "/scripts/package") .. " " .. h.quote(h.build))
    assert.are.equal(0, rc, out)
    local deb = out:match("(%S+%.deb)")
    assert.truthy(deb and exists(deb), out)

    rc, out = sh("dpkg -i " .. h.quote(deb))
    ours = true
    assert.are.equal(0, rc, out)
    assert.is_true(installed())

    -- the layout, the user, the conffile, the man pages
    for _, path in ipairs({ "/usr/bin/netproxy", "/usr/share/netproxy/connectors/tcp.lua",
                            "/usr/share/netproxy/lua/netproxy/config.lua", "/usr/share/doc/netproxy/guide.md",
                            "/usr/lib/systemd/system/netproxy.service", "/etc/netproxy/netproxy.lua" }) do
      assert.is_true(exists(path), path)
    end
    rc, out = sh("getent passwd netproxy")
    assert.are.equal(0, rc, "no netproxy user: " .. out)
    rc, out = sh("dpkg-query -W -f='${Conffiles}' netproxy")
    assert.truthy(out:find("/etc/netproxy/netproxy.lua", 1, true), out)
    rc, out = sh("man -w netproxy && man -w 5 netproxy.lua")
    assert.are.equal(0, rc, out)
    local unit = h.read("/usr/lib/systemd/system/netproxy.service")
    assert.truthy(unit:find("ExecStart=/usr/bin/netproxy --user netproxy --group netproxy /etc/netproxy/netproxy.lua", 1, true), unit)

    -- the shipped config passes --check, and runs (as the netproxy user) with its port changed
    local out2, err2, rc2 = h.run({ "/usr/bin/netproxy", "--check", "/etc/netproxy/netproxy.lua" })
    assert.are.equal(0, rc2, err2)
    assert.truthy(out2:find("/etc/netproxy/netproxy.lua: OK", 1, true), out2)
    local echo = h.peer_server("echo")
    local np = start_installed(patched("/etc/netproxy/netproxy.lua", echo.port), { "--user", "netproxy", "--group", "netproxy" })
    local r = h.client("127.0.0.1", np.ports["local"], { "--bytes", "1M", "--conns", "2" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(2 * 1024 * 1024, r.bytes_recv)
    local _, owner = sh("ps -o user= -p " .. np.pid)
    assert.truthy(owner:find("netproxy", 1, true), owner)
    -- the shipped config turns the control socket on, owned by the run user, 0600
    local info, ierr, irc = h.run({ "/usr/bin/netproxy", "ctl", "show", "info" })
    assert.are.equal(0, irc, info .. ierr)
    assert.truthy(info:find("version:", 1, true), info)
    local _, mode = sh("stat -c '%a %U' /run/netproxy/control.sock")
    assert.are.equal("600 netproxy\n", mode)
    h.stop(np)

    -- an installed example that uses the installed Lua modules (line hooks)
    np = start_installed(patched("/usr/share/netproxy/examples/rewrite.lua", echo.port))
    local said = h.talk(np.ports.rewrite, "hello world\n", { keep_open = true, want = "\n" })
    assert.are.equal("HELLO WORLD\n", said)
    h.stop(np)
    h.stop(echo)

    -- purge: every file and the config folder go; the system user stays (Debian's practice)
    rc, out = sh("dpkg --purge netproxy")
    assert.are.equal(0, rc, out)
    assert.is_false(installed())
    for _, path in ipairs({ "/usr/bin/netproxy", "/usr/share/netproxy", "/usr/share/doc/netproxy",
                            "/etc/netproxy", "/usr/lib/systemd/system/netproxy.service" }) do
      assert.is_false(exists(path), path .. " left after purge")
    end
  end)
end)

-- lintian (scripts/install-deps installs it): no error, and no warning but those
-- docs/operations.md lists as accepted (its table under "The Debian package and lintian",
-- rows at level "warning"), each with its reason.
describe("the Debian package under lintian", function()
  local has = os.execute("command -v lintian >/dev/null 2>&1") == 0
  if not has then
    it("is skipped: lintian is not installed (scripts/install-deps installs it)", function()
      pending("no lintian")
    end)
    return
  end
  teardown(h.stop_all)

  local function accepted()
    local text = assert(h.read(h.root .. "/docs/operations.md"))
    local section = assert(text:match("### The Debian package and lintian\n(.-)\n#"), "no lintian section in docs/operations.md")
    local tags = {}
    for row in section:gmatch("\n(|[^\n]+)") do
      local names, level = row:match("^| ([^|]-) | (%a+) |")
      if level == "warning" then
        for tag in names:gmatch("`([%w%-]+)") do tags[tag] = true end
      end
    end
    return tags
  end

  it("reports no error, and only accepted warnings", function()
    local rc, out = sh(h.quote(h.root .. "/scripts/package") .. " " .. h.quote(h.build))
    assert.are.equal(0, rc, out)
    local deb = assert(out:match("(%S+%.deb)"), out)
    local _, report = sh("lintian --tag-display-limit 0 " .. h.quote(deb) .. " 2>&1")
    local ok = accepted()
    for level, tag in report:gmatch("\n?([EW]): netproxy: ([%w%-]+)") do
      assert.is_true(level == "W" and ok[tag] == true, level .. ": " .. tag .. " (not accepted in docs/operations.md):\n" .. report)
    end
    -- what the fixes were for, checked in the package itself
    _, out = sh("dpkg-deb -c " .. h.quote(deb))
    for _, path in ipairs({ "usr/share/man/man1/netproxy.1.gz", "usr/share/man/man5/netproxy.lua.5.gz",
                            "usr/share/doc/netproxy/copyright", "usr/share/doc/netproxy/changelog.gz" }) do
      assert.truthy(out:find("./" .. path, 1, true), path .. " is not in the package:\n" .. out)
    end
  end)
end)
