#!/usr/bin/env python3
"""bench/lib/hold.py PORT N [SECONDS]: opens N TCP connections to 127.0.0.1:PORT, sends one
byte on each and reads its echo (so every connection is relayed end to end), prints "held N"
and holds them, idle, until SECONDS pass or it is sent SIGTERM. For idle-memory measurements."""
import signal, socket, sys, time

port, n = int(sys.argv[1]), int(sys.argv[2])
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 60
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x")
    socks.append(s)
for s in socks:
    s.settimeout(10)
    if s.recv(1) != b"x":
        sys.exit("no echo")
print("held", len(socks), flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
deadline = time.time() + seconds
while time.time() < deadline:
    time.sleep(0.2)
for s in socks:
    s.close()
