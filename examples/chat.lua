-- examples/chat.lua: Net::Server's chat example as a Net::Server::Multiplex service: every
-- client sees the lines the others type, never its own. "/nick NAME" renames, "/who" lists
-- who is here, "/quit" leaves.
--   build/netproxy examples/chat.lua
--   socat - TCP:127.0.0.1:2020        (in two or three terminals)
local function name_of(conn)
  return conn.stash.nick or conn.client
end

-- To everybody but the sender; a reader too slow for max_output is closed by netproxy.
local function broadcast(from, text)
  for c in from.service:clients() do
    if c ~= from then c:write(text) end
  end
end

local COMMANDS = {
  nick = function(conn, arg)
    if not arg:match("^[%w_%-]+$") then return conn:write("* a nick is letters, digits, _ and -\n") end
    broadcast(conn, "* " .. name_of(conn) .. " is now " .. arg .. "\n")
    conn.stash.nick = arg
  end,
  who = function(conn)
    for c in conn.service:clients() do conn:write("* " .. name_of(c) .. "\n") end
  end,
  quit = function(conn)
    conn:write("* bye\n")
    conn:close()
  end,
}

proxy {
  name = "chat",
  from = { type = "tcp", host = "127.0.0.1", port = 2020 },
  idle_timeout = 3600,
  to = {
    type = "service", input_mode = "line",
    max_output = 256 * 1024,
    on_connect = function(conn)
      conn:write("* welcome, " .. name_of(conn) .. " (/nick NAME, /who, /quit)\n")
      broadcast(conn, "* " .. name_of(conn) .. " joined\n")
    end,
    on_input = function(conn, line)
      local cmd, arg = line:match("^/(%a+)%s*(.-)%s*$")
      if cmd and COMMANDS[cmd] then return COMMANDS[cmd](conn, arg) end
      broadcast(conn, name_of(conn) .. ": " .. line .. "\n")
    end,
    on_close = function(conn)
      broadcast(conn, "* " .. name_of(conn) .. " left\n")
    end,
  },
}
