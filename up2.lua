server { workers = 2 }
proxy { name = "marker",
        from = { type = "tcp", host = "127.0.0.1", port = 47313,
                 hook = function(d) return (d:gsub("ping", "v1")) end },
        to = { type = "tcp", host = "127.0.0.1", port = 47312 } }
