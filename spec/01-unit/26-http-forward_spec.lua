-- netproxy.http's helpers for the HTTP proxy's plain http:// requests: absolute URIs and the
-- header lines a proxy passes on (http_forward; the proxy itself is 02-integration/78).
require "spec.helpers"
package.preload["netproxy.core"] = package.preload["netproxy.core"] or function() return {} end
local http = require "netproxy.http"

describe("http.parse_url", function()
  it("splits an absolute URI into scheme, host, port, origin-form path and authority", function()
    local cases = {
      { "http://www.example.com/a/b?c=d", "http", "www.example.com", 80, "/a/b?c=d", "www.example.com" },
      { "http://legacy.example", "http", "legacy.example", 80, "/", "legacy.example" },
      { "HTTP://Host.Example:8080?q", "http", "Host.Example", 8080, "/?q", "Host.Example:8080" },
      { "http://127.0.0.1:3000/x#frag", "http", "127.0.0.1", 3000, "/x", "127.0.0.1:3000" },
      { "http://[::1]/", "http", "::1", 80, "/", "[::1]" },
      { "http://[2001:db8::1]:8443/p", "http", "2001:db8::1", 8443, "/p", "[2001:db8::1]:8443" },
      { "http://h:/x", "http", "h", 80, "/x", "h" },
      { "http://h:#x", "http", "h", 80, "/", "h" },
      { "https://secure.example/", "https", "secure.example", 443, "/", "secure.example" },
    }
    for _, c in ipairs(cases) do
      assert.are.same({ c[2], c[3], c[4], c[5], c[6] }, { http.parse_url(c[1]) }, c[1])
    end
  end)

  it("refuses what is not an absolute URI with a host, saying why", function()
    for _, bad in ipairs({ "/path", "*", "example.com:80", "http:///x", "http://u:p@h/", "http://h:99999/",
                           "http://::1/", "http://bad host/", "http://h..x/", "gopher://h/" }) do
      local scheme, why = http.parse_url(bad)
      assert.is_nil(scheme, bad)
      assert.is_string(why, bad)
    end
  end)
end)

describe("http.fields", function()
  it("lists the header lines in order, repeats kept, names in lower case", function()
    local block = "GET http://h/ HTTP/1.1\r\nHost: h\r\nX-A:  1 \r\nx-a: 2\r\nConnection: close, X-A\r\n\r\n"
    assert.are.same({
      { name = "host", value = "h", line = "Host: h" },
      { name = "x-a", value = "1", line = "X-A:  1 " },
      { name = "x-a", value = "2", line = "x-a: 2" },
      { name = "connection", value = "close, X-A", line = "Connection: close, X-A" },
    }, http.fields(block))
  end)
end)
