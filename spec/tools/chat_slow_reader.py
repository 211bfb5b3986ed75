#!/usr/bin/env python3
"""A chat service with a slow reader: one client never reads (a tiny receive buffer), one
reads everything, one sends LINES lines of 1000 bytes. Prints what each saw:
  fast_lines=N slow_closed=0|1 after=0|1
after=1: a line sent once the slow reader was gone still reached the fast reader."""
import socket, sys, threading, time

port, lines = int(sys.argv[1]), int(sys.argv[2])
payload = b"x" * 1000

def connect(rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    return s

def read_line(s, buf):
    while b"\n" not in buf[0]:
        data = s.recv(65536)
        if not data:
            return None
        buf[0] += data
    line, buf[0] = buf[0].split(b"\n", 1)
    return line

slow = connect(4096)
fast = connect()
sender = connect()
fbuf, sbuf = [b""], [b""]
# everybody is in once the fast reader has seen the sender join
while b"joined" not in (read_line(fast, fbuf) or b"joined"):
    pass

seen = {"lines": 0, "after": 0}
def reader():
    fast.settimeout(20)
    try:
        while True:
            line = read_line(fast, fbuf)
            if line is None:
                return
            if line.endswith(payload):
                seen["lines"] += 1
            if line.endswith(b"after-the-slow-one"):
                seen["after"] = 1
                return
    except socket.timeout:
        return
t = threading.Thread(target=reader)
t.start()
for _ in range(lines):
    sender.sendall(payload + b"\n")

# the slow reader: its socket ends (EOF or reset) once netproxy has closed it
slow.settimeout(20)
closed = 0
try:
    while True:
        if not slow.recv(65536):
            closed = 1
            break
except ConnectionResetError:
    closed = 1
except socket.timeout:
    pass
sender.sendall(b"after-the-slow-one\n")
t.join()
print("fast_lines=%d slow_closed=%d after=%d" % (seen["lines"], closed, seen["after"]))
