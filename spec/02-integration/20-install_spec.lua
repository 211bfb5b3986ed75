-- `cmake --install`: a clone of the repository is built and installed to a temporary prefix,
-- then deleted; the installed tree (and the same tree moved elsewhere) runs on its own files.
local h = require "spec.helpers"

local function sh(cmd)
  local out, err, rc = h.run({ "sh", "-c", cmd })
  assert.are.equal(0, rc, cmd .. "\n" .. out .. err)
  return out
end

local function exists(path)
  return os.execute("test -e " .. h.quote(path)) == 0
end

-- Starts the installed binary through helpers.netproxy_start (which runs h.netproxy).
local function start_installed(bin, config)
  local saved = h.netproxy
  h.netproxy = bin
  local ok, p = pcall(h.netproxy_start, config)
  h.netproxy = saved
  assert(ok, p)
  return p
end

-- An installed example with its fixed ports replaced (listen on 0, reach the peer).
local function patched(example, listen_port, peer_port)
  local text = assert(h.read(example), example)
  text = text:gsub("port = " .. listen_port, "port = 0")
  if peer_port then text = text:gsub("port = 9876", "port = " .. peer_port) end
  return h.write(h.tmpfile("installed-example.lua"), text)
end

describe("cmake --install", function()
  local prefix, bin
  teardown(h.stop_all)

  setup(function()
    local dir = h.tmp() .. "/install"
    local clone, build = dir .. "/clone", dir .. "/clone/build"
    prefix = dir .. "/prefix"
    sh("rm -rf " .. h.quote(dir) .. " && mkdir -p " .. h.quote(dir))
    sh(("git clone -q %s %s"):format(h.quote(h.root), h.quote(clone)))
    sh(("cmake -S %s -B %s %s >/dev/null && cmake --build %s -j2 >/dev/null")
       :format(h.quote(clone), h.quote(build), h.sanitized and "-DNP_SANITIZE=ON" or "", h.quote(build)))
    sh(("cmake --install %s --prefix %s >/dev/null"):format(h.quote(build), h.quote(prefix)))
    sh("rm -rf " .. h.quote(clone))        -- nothing may come from the source tree any more
    bin = prefix .. "/bin/netproxy"
  end)

  it("installs the layout: binary, lua/, connectors/, examples, docs, man pages, units, config", function()
    for _, path in ipairs({
      "bin/netproxy", "share/netproxy/lua/netproxy/config.lua", "share/netproxy/lua/netproxy/session.lua",
      "share/netproxy/connectors/tcp.lua", "share/netproxy/connectors/dual.lua",
      "share/netproxy/examples/tcp.lua", "share/doc/netproxy/guide.md", "share/doc/netproxy/README.md",
      "lib/systemd/system/netproxy.service", "lib/systemd/system/netproxy.socket",
      "etc/netproxy/netproxy.lua", "share/man/man1/netproxy.1.gz", "share/man/man5/netproxy.lua.5.gz",
    }) do
      assert.is_true(exists(prefix .. "/" .. path), path)
    end
  end)

  it("installs man pages that man reads without a warning", function()
    for _, page in ipairs({ "man1/netproxy.1.gz", "man5/netproxy.lua.5.gz" }) do
      local out, err, rc = h.run({ "man", "--warnings", "-l", prefix .. "/share/man/" .. page })
      assert.are.equal(0, rc, err)
      assert.are.equal("", err)
      assert.truthy(out:find("SEE ALSO", 1, true), page)
    end
  end)

  it("writes the units for the prefix installed to, with a doc path that exists", function()
    local unit = h.read(prefix .. "/lib/systemd/system/netproxy.service")
    assert.truthy(unit:find("ExecStart=" .. prefix .. "/bin/netproxy --user netproxy --group netproxy " ..
                            prefix .. "/etc/netproxy/netproxy.lua", 1, true), unit)
    local doc = unit:match("file://(%S+)")
    assert.is_true(exists(doc), doc)
    assert.falsy(unit:find("@NP_", 1, true), unit)
  end)

  it("passes --check on every installed example and the default config", function()
    local files = { prefix .. "/etc/netproxy/netproxy.lua" }
    for file in io.popen("ls " .. h.quote(prefix) .. "/share/netproxy/examples/*.lua"):lines() do
      files[#files + 1] = file
    end
    assert.is_true(#files >= 9, #files .. " files")
    for _, file in ipairs(files) do
      local out, err, rc = h.run({ bin, "--check", file })
      assert.are.equal(0, rc, file .. ": " .. err)
      assert.truthy(out:find(file .. ": OK", 1, true), out)
    end
  end)

  it("relays bytes exactly through a proxy run by the installed binary", function()
    local echo = h.peer_server("echo")
    local np = start_installed(bin, patched(prefix .. "/share/netproxy/examples/tcp.lua", 6789, echo.port))
    local r = h.client("127.0.0.1", np.ports.web, { "--bytes", "4M", "--conns", "3" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(3, r.ok)
    assert.are.equal(3 * 4 * 1024 * 1024, r.bytes_recv)
    h.stop(np)
    h.stop(echo)
  end)

  it("runs an installed example that needs the installed Lua modules (line hooks)", function()
    local echo = h.peer_server("echo")
    local np = start_installed(bin, patched(prefix .. "/share/netproxy/examples/rewrite.lua", 6789, echo.port))
    local out = h.talk(np.ports.rewrite, "hello world\n", { keep_open = true, want = "\n" })
    assert.are.equal("HELLO WORLD\n", out)
    h.stop(np)
    h.stop(echo)
  end)

  it("still works once the installed tree is moved elsewhere", function()
    local moved = prefix .. "-moved"
    sh(("rm -rf %s && cp -a %s %s"):format(h.quote(moved), h.quote(prefix), h.quote(moved)))
    local example = moved .. "/share/netproxy/examples/sslh.lua"
    -- the original tree hidden: the moved binary must find its own lua/ and connectors/
    sh(("mv %s %s.hidden"):format(h.quote(prefix), h.quote(prefix)))
    local out, err, rc = h.run({ moved .. "/bin/netproxy", "--check", example })
    sh(("mv %s.hidden %s"):format(h.quote(prefix), h.quote(prefix)))
    assert.are.equal(0, rc, err)
    assert.truthy(out:find(": OK", 1, true), out)
  end)
end)
