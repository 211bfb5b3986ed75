-- examples/rewrite.lua: rewrite a word in both directions. The client's "hello" reaches the
-- server as "HELLO"; the server's "world" reaches the client as "WORLD". Line mode holds back
-- an unfinished line, so a word cut across two TCP segments is still rewritten.
-- Try: build/np-peer echo --listen 127.0.0.1:9876 & build/netproxy examples/rewrite.lua
--      then: echo "hello world" | socat - TCP:127.0.0.1:6789   ->  HELLO WORLD
proxy {
  name = "rewrite",
  from = {
    type = "tcp", host = "127.0.0.1", port = 6789,
    hook_mode = "line",
    hook = function(line, conn)
      conn.stash.lines_up = (conn.stash.lines_up or 0) + 1
      return (line:gsub("hello", "HELLO"))
    end,
  },
  to = {
    type = "tcp", host = "127.0.0.1", port = 9876,
    hook_mode = "line",
    hook = function(line, conn)
      return (line:gsub("world", "WORLD"))
    end,
  },
}
