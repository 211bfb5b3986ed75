"""A real SOCKS5 UDP client: PySocks (Debian's python3-socks), not ours.

pysocks_udp.py PROXY_PORT TARGET_HOST TARGET_PORT N: sends N numbered datagrams to the target
through the proxy's UDP ASSOCIATE (PySocks opens the control connection and the association
itself on the first sendto) and reads each echo back; prints "ok=N failed=N source=HOST:PORT".
"""
import socket
import sys

import socks


def main():
    proxy_port, host, port, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    s.set_proxy(socks.SOCKS5, "127.0.0.1", proxy_port)
    s.settimeout(3)
    ok = failed = 0
    source = "none"
    for i in range(n):
        data = b"pysocks datagram %d " % i + b"x" * (i * 37 % 1200)
        s.sendto(data, (host, port))
        try:
            got, addr = s.recvfrom(65535)
        except socket.timeout:
            failed += 1
            continue
        source = "%s:%d" % (addr[0], addr[1])
        if got == data:
            ok += 1
        else:
            failed += 1
    s.close()
    print("ok=%d failed=%d source=%s" % (ok, failed, source))


if __name__ == "__main__":
    main()
