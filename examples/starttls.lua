-- examples/starttls.lua: an SMTP client that speaks only clear text reaches a mail server
-- that wants STARTTLS. netproxy speaks the clear-text part of SMTP to the server (greeting,
-- EHLO, STARTTLS), upgrades that side to TLS (checking the server's certificate), then
-- relays: the client gets the server's greeting and talks plain SMTP, over TLS beyond netproxy.
--   build/netproxy examples/starttls.lua     then: socat - TCP:127.0.0.1:2525
local stream = require "netproxy.stream"

local function line(sock)
  local l, err = stream.read_line(sock, 1024, 10)
  if not l then error("smtp: " .. err, 0) end
  return l
end

-- The clear-text part, as the SMTP client; returns the greeting for the real client.
local function smtp_starttls(server, conn)
  local greeting = line(server)
  if not greeting:match("^220") then return nil, "greeting " .. greeting end
  server:write("EHLO netproxy\r\n")
  local offered, reply = false
  repeat
    reply = line(server)
    if not reply:match("^250") then return nil, "EHLO: " .. reply end
    if reply:upper():match("^250[- ]STARTTLS") then offered = true end
  until reply:match("^250 ")
  if not offered then return nil, "the server offers no STARTTLS" end
  server:write("STARTTLS\r\n")
  reply = line(server)
  if not reply:match("^220") then return nil, "STARTTLS: " .. reply end
  conn:log("info", "smtp: STARTTLS accepted")
  return greeting          -- handed to the client first, once the tunnel is up
end

proxy {
  name = "smtp",
  from = { type = "tcp", host = "127.0.0.1", port = 2525 },
  to = { type = "ssl", host = "mail.example", port = 25,
         start_cleartext = true, starttls = smtp_starttls },
}
