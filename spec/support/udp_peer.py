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
socks5udp PROXYPORT TARGET TARGETPORT N: a SOCKS5 client (RFC 1928 section 7) on 127.0.0.1:
  UDP ASSOCIATE over a TCP control connection, then N datagrams with the SOCKS UDP header to
  TARGET (an IP or a name) through the relay the reply named; each reply must carry the
  header naming the target's address and the datagram whole. Then closes the control
  connection and sends once more: no reply may come. Prints "ok=N failed=M relay=ADDR
  source=ADDR after_close=none|reply".
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


def socks_header(host, port):
    import ipaddress
    try:
        ip = ipaddress.ip_address(host)
        atyp = b"\x01" if ip.version == 4 else b"\x04"
        return b"\0\0\0" + atyp + ip.packed + port.to_bytes(2, "big")
    except ValueError:
        name = host.encode()
        return b"\0\0\0\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big")


def parse_header(msg):
    import ipaddress
    atyp = msg[3]
    if atyp == 1:
        return "%s:%d" % (ipaddress.ip_address(msg[4:8]), int.from_bytes(msg[8:10], "big")), msg[10:]
    if atyp == 4:
        return "[%s]:%d" % (ipaddress.ip_address(msg[4:20]), int.from_bytes(msg[20:22], "big")), msg[22:]
    return None, msg


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise EOFError("closed")
        data += more
    return data


def socks5udp(proxy_port, target, target_port, n):
    import ipaddress
    ctl = socket.create_connection(("127.0.0.1", proxy_port), timeout=3)
    ctl.sendall(b"\x05\x01\x00")
    assert recv_exact(ctl, 2) == b"\x05\x00"
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(2)
    ctl.sendall(b"\x05\x03\x00\x01" + bytes(4) + u.getsockname()[1].to_bytes(2, "big"))
    head = recv_exact(ctl, 4)
    if head[1] != 0:
        print("refused rep=%d" % head[1])
        return
    alen = {1: 4, 4: 16}[head[3]]
    rest = recv_exact(ctl, alen + 2)
    relay = (str(ipaddress.ip_address(rest[:alen])), int.from_bytes(rest[alen:], "big"))
    ok = failed = 0
    source = None
    for i in range(n):
        body = ("datagram %d " % i).encode() * (1 + i % 50)
        u.sendto(socks_header(target, target_port) + body, relay)
        try:
            src, data = parse_header(u.recv(70000))
        except socket.timeout:
            src, data = None, None
        source = source or src
        if data == body and src == source:
            ok += 1
        else:
            failed += 1
    ctl.close()
    after = "none"
    u.settimeout(0.5)
    try:
        import time
        time.sleep(0.2)                 # the control connection's end reaches netproxy
        u.sendto(socks_header(target, target_port) + b"late", relay)
        u.recv(70000)
        after = "reply"
    except (socket.timeout, ConnectionRefusedError):
        pass
    print("ok=%d failed=%d relay=%s:%d source=%s after_close=%s" % (ok, failed, relay[0], relay[1], source, after))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "echo":
        echo(args[0], args[1])
    elif mode == "sizes":
        sizes(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif mode == "many":
        many(args[0], int(args[1]), int(args[2]))
    elif mode == "socks5udp":
        socks5udp(int(args[0]), args[1], int(args[2]), int(args[3]))
