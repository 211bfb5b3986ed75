#!/usr/bin/python3
"""A WebSocket echo server for the HTTP proxy's specs (79-http-proxy-more), on Debian's
python3-websockets (a real RFC 6455 implementation).

usage: ws_echo.py PORT_FILE

Listens on 127.0.0.1, port 0, writes the port to PORT_FILE, and echoes every message back
prefixed with "echo: ".
"""
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send("echo: " + message)


async def main(port_file):
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.rename(port_file + ".tmp", port_file)
        await asyncio.Future()


asyncio.run(main(sys.argv[1]))
