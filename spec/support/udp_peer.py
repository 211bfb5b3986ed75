#!/usr/bin/env python3
"""UDP peers for the specs.

echo HOST PORTFILE: a UDP echo server on HOST, port 0; writes its port to PORTFILE. Each
  datagram goes back whole to its sender; "whoami" is answered with the sender's
  address:port (the flow's own socket toward the server, as the server sees it).
sizes HOST PORT N MAX: one client socket sends N datagrams of mixed sizes up to MAX bytes,
  each waiting for its echo; checks each comes back whole, alone and in order. Prints
  "ok=N failed=M".
many HOST PORT N: N client sockets (N source ports) each send "whoami" once; prints
  "ok=N distinct=D" (D: distinct server-side addresses seen).
"""
import os
import random
import socket
import sys


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def echo(host, portfile):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((host, 0))
    with open(portfile + ".tmp", "w") as f:
        f.write(str(s.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    while True:
        data, peer = s.recvfrom(65536)
        if data == b"whoami":
            host_, port = peer[0], peer[1]
            data = ("[%s]:%d" % (host_, port) if ":" in host_ else "%s:%d" % (host_, port)).encode()
        s.sendto(data, peer)


def sizes(host, port, n, biggest):
    rnd = random.Random(16)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(3)
    ok = failed = 0
    wanted = [1, 64, 1400, 1472, 8192, 65000, biggest] + [rnd.randint(1, biggest) for _ in range(n)]
    for i, size in enumerate(wanted[:n]):
        head = ("%06d:" % i).encode()
        body = (head * (size // len(head) + 1))[:size]
        s.sendto(body, (host, port))
        try:
            got = s.recv(65536)
        except socket.timeout:
            got = None
        if got == body:
            ok += 1
        else:
            failed += 1
            print("datagram %d of %d bytes: got %s" % (i, size, None if got is None else len(got)),
                  file=sys.stderr)
    s.settimeout(0.2)
    try:                                # nothing more may come: each came back alone
        extra = s.recv(65536)
        failed += 1
        print("an extra datagram of %d bytes" % len(extra), file=sys.stderr)
    except socket.timeout:
        pass
    print("ok=%d failed=%d" % (ok, failed))


def many(host, port, n):
    seen, ok = set(), 0
    socks = [socket.socket(family(host), socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.settimeout(3)
        s.sendto(b"whoami", (host, port))
    for s in socks:
        try:
            seen.add(s.recv(100))
            ok += 1
        except socket.timeout:
            pass
    print("ok=%d distinct=%d" % (ok, len(seen)))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "echo":
        echo(args[0], args[1])
    elif mode == "sizes":
        sizes(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif mode == "many":
        many(args[0], int(args[1]), int(args[2]))
