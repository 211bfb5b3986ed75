#!/usr/bin/env python3
"""A fast line client for echo services: sends BYTES (rounded up to whole 64 KiB blocks of
lines of 0 to LONGEST bytes, LF-terminated, no CR) to 127.0.0.1:PORT while it reads the echo,
half-closes, reads to EOF and checks every byte returned against what was sent.
  usage: line_stream.py PORT BYTES [LONGEST]      (LONGEST: the longest line, default 300)
Prints "streaming" once the first MiB is back (the stream is under way), then
  sent=N recv=N ok=1|0 [mismatch_at=N] seconds=S
and exits 0 iff every byte came back, in order."""
import socket, sys, threading, time

port, want = int(sys.argv[1]), int(sys.argv[2])
longest = int(sys.argv[3]) if len(sys.argv) > 3 else 300

lines, size, i = [], 0, 0
while size < 65536:
    n = (i * 7919) % (longest + 1)            # lengths spread over 0..longest
    line = bytes((97 + (i + k) % 26) for k in range(n)) + b"\n"
    lines.append(line)
    size += len(line)
    i += 1
block = b"".join(lines)
blocks = -(-want // len(block))
total = blocks * len(block)
expected = block * (2 + (1 << 20) // len(block))   # any window up to 1 MiB, from any offset

s = socket.create_connection(("127.0.0.1", port))
s.settimeout(60)
start = time.monotonic()

def send():
    try:
        for _ in range(blocks):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass                                   # the reader sees the end and reports it

threading.Thread(target=send, daemon=True).start()
buf = bytearray(1 << 20)
got, told, bad = 0, False, -1
try:
    while got < total + 1:
        n = s.recv_into(buf)
        if n == 0:
            break
        o = got % len(block)
        if buf[:n] != expected[o:o + n]:
            bad = got + next(k for k in range(n) if buf[k] != expected[o + k])
            break
        got += n
        if not told and got >= 1 << 20:
            print("streaming", flush=True)
            told = True
except (OSError, socket.timeout) as e:
    print("error=%s" % e, file=sys.stderr)
ok = bad < 0 and got == total
print("sent=%d recv=%d ok=%d%s seconds=%.3f" % (total, got, ok, " mismatch_at=%d" % bad if bad >= 0 else "",
                                                  time.monotonic() - start), flush=True)
sys.exit(0 if ok else 1)
