#!/usr/bin/python3
"""A WebSocket client through an HTTP proxy, for 79-http-proxy-more.

usage: ws_client.py connect PROXY_PORT HOST PORT MESSAGE
       ws_client.py upgrade PROXY_PORT HOST PORT MESSAGE

connect: a CONNECT tunnel through the proxy on 127.0.0.1:PROXY_PORT, then python3-websockets'
own client over it (handshake, masking, framing: a real client). upgrade: the plain-http form
a proxy sees from a browser without CONNECT: `GET http://HOST:PORT/ HTTP/1.1` with Upgrade:
websocket to the proxy, its 101 and Sec-WebSocket-Accept checked, then one masked text
frame and its echo, by hand. Prints the reply message; exits 1 with the reason on failure.
"""
import asyncio
import base64
import hashlib
import os
import socket
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            raise SystemExit("the proxy closed: %r" % data)
        data += chunk
    return data.decode("latin-1")


def via_connect(proxy_port, host, port, message):
    import websockets
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    sock.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host, port, host, port)).encode())
    head = read_head(sock)
    if not head.split(" ")[1].startswith("200"):
        raise SystemExit("CONNECT refused: " + head.splitlines()[0])
    sock.setblocking(False)

    async def talk():
        async with websockets.connect("ws://%s:%d/" % (host, port), sock=sock, open_timeout=10) as ws:
            await ws.send(message)
            return await asyncio.wait_for(ws.recv(), 10)
    return asyncio.run(talk())


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit("closed in a frame")
        data += chunk
    return data


def via_upgrade(proxy_port, host, port, message):
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET http://%s:%d/ HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % (host, port, host, port, key)).encode())
    head = read_head(sock)
    if " 101 " not in head.splitlines()[0]:
        raise SystemExit("no 101: " + head.splitlines()[0])
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if ("sec-websocket-accept: " + accept.lower()) not in head.lower():
        raise SystemExit("bad Sec-WebSocket-Accept in: " + head)
    payload, mask = message.encode(), os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    if b0 != 0x81 or b1 & 0x80:
        raise SystemExit("unexpected frame header %02x %02x" % (b0, b1))
    reply = recv_exact(sock, n).decode()
    sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))    # close, masked, empty
    return reply


mode, proxy_port, host, port, message = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
print((via_connect if mode == "connect" else via_upgrade)(proxy_port, host, port, message))
