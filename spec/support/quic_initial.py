#!/usr/bin/env python3
"""QUIC client Initials crafted for the specs (RFC 9000, 9001; version 2: RFC 9369), with
python3-cryptography: our own encryption, independent of netproxy's C reader (src/quic.c).

craft VERSION SNI ALPN PARTS ORDER PAD: prints one datagram per line (hex): a TLS ClientHello
  naming SNI (or "-" for none) and ALPN (comma separated, or "-") in CRYPTO frames over PARTS
  Initial packets, one per datagram, sent in ORDER "forward" or "reverse" (a later part of the
  hello first), each datagram padded to 1200 bytes. VERSION: 1 or 2. PAD: bytes of a padding
  extension inside the hello (a large, post-quantum-sized hello).
rfc9001: prints the client Initial of RFC 9001 Appendix A.2 (its DCID, its ClientHello, packet
  number 2 on 4 bytes, padded to 1162 bytes of payload) protected here, in hex, then the
  ClientHello's hex on a second line.
send HOST PORT VERSION SNI ALPN PARTS ORDER PAD: sends those datagrams from one socket and
  waits for the echo of each (the server is an echo peer); prints "ok=N same=S" (S: replies
  identical to what was sent, in order).
flood HOST PORT N: N datagrams that are not a whole client Initial, each from its own socket
  (a flow each): random bytes, a version other than 1 and 2, a short header, an Initial
  that does not decrypt, an Initial whose CRYPTO frame is cut short, half a ClientHello
  (which never completes). Then one real hello (from a new socket) and its echo's delay:
  prints "sent=N ok=0|1 ms=T".
"""
import hashlib
import hmac
import os
import random
import socket
import struct
import sys
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

V1, V2 = 0x00000001, 0x6b3343cf
SALT = {V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
        V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")}
LABELS = {V1: (b"quic key", b"quic iv", b"quic hp"), V2: (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")}


def expand_label(secret, label, length):
    full = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def keys(version, dcid):
    initial = hmac.new(SALT[version], dcid, hashlib.sha256).digest()
    client = expand_label(initial, b"client in", 32)
    k, iv, hp = LABELS[version]
    return expand_label(client, k, 16), expand_label(client, iv, 12), expand_label(client, hp, 16)


def varint(v):
    if v < 64:
        return bytes([v])
    if v < 16384:
        return struct.pack(">H", 0x4000 | v)
    return struct.pack(">I", 0x80000000 | v)


def client_hello(sni, alpn, pad):
    def ext(t, body):
        return struct.pack(">HH", t, len(body)) + body
    exts = b""
    if sni:
        name = sni.encode()
        entry = b"\x00" + struct.pack(">H", len(name)) + name
        exts += ext(0, struct.pack(">H", len(entry)) + entry)
    if alpn:
        lst = b"".join(bytes([len(p)]) + p.encode() for p in alpn)
        exts += ext(16, struct.pack(">H", len(lst)) + lst)
    exts += ext(43, b"\x02\x03\x04")                    # supported_versions: TLS 1.3
    exts += ext(0x39, b"\x01\x04\x80\x00\xff\xff")       # quic_transport_parameters (a few)
    if pad:
        exts += ext(21, b"\x00" * pad)                   # padding
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" +
            struct.pack(">H", len(exts)) + exts)
    return b"\x01" + struct.pack(">I", len(body))[1:] + body


def protect(version, dcid, scid, pn, payload, pn_len=2, token=b""):
    key, iv, hp = keys(version, dcid)
    ptype = 0 if version == V1 else 1                    # Initial: 0b00 in v1, 0b01 in v2
    first = 0xc0 | (ptype << 4) | (pn_len - 1)
    length = pn_len + len(payload) + 16
    header = (bytes([first]) + struct.pack(">I", version) + bytes([len(dcid)]) + dcid +
              bytes([len(scid)]) + scid + varint(len(token)) + token + varint(length) +
              pn.to_bytes(pn_len, "big"))
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    ct = AESGCM(key).encrypt(nonce, payload, header)
    pn_off = len(header) - pn_len
    sample = ct[4 - pn_len:4 - pn_len + 16]
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    h = bytearray(header)
    h[0] ^= mask[0] & 0x0f
    for i in range(pn_len):
        h[pn_off + i] ^= mask[1 + i]
    return bytes(h) + ct


def crypto_frame(offset, data):
    return b"\x06" + varint(offset) + varint(len(data)) + data


def datagrams(version, sni, alpn, parts, order, pad, dcid=None, cut=None):
    dcid = dcid or os.urandom(8)
    scid = os.urandom(8)
    hello = client_hello(sni, alpn, pad)
    if cut:
        hello = hello[:cut]
    size = (len(hello) + parts - 1) // parts
    pieces = [(i * size, hello[i * size:(i + 1) * size]) for i in range(parts)]
    out = []
    for pn, (off, data) in enumerate(pieces):
        payload = crypto_frame(off, data)
        packet = protect(version, dcid, scid, pn, payload)
        if len(packet) < 1200:                          # PADDING: a client's Initial datagram is 1,200 bytes at least
            packet = protect(version, dcid, scid, pn, payload + b"\x00" * (1200 - len(packet)))
        out.append(packet)
    if order == "reverse":
        out.reverse()
    return out


RFC_HELLO = bytes.fromhex(
    "010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c"
    "00000413011302010000c000000010000e00000b6578616d706c652e636f6dff01000100000a"
    "00080006001d0017001800100007000504616c706e000500050100000000003300260024001d"
    "00209370b2c9caa47fbabaf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b0003"
    "020304000d0010000e0403050306030203080408050806002d00020101001c00024001003900"
    "320408ffffffffffffffff05048000ffff07048000ffff0801100104800075300901100f0883"
    "94c8f03e51570806048000ffff")


def rfc9001():
    dcid = bytes.fromhex("8394c8f03e515708")
    payload = crypto_frame(0, RFC_HELLO)
    payload += b"\x00" * (1162 - len(payload))
    print(protect(V1, dcid, b"", 2, payload, pn_len=4).hex())
    print(RFC_HELLO.hex())


def args(a):
    version = {"1": V1, "2": V2}[a[0]]
    sni = None if a[1] == "-" else a[1]
    alpn = [] if a[2] == "-" else a[2].split(",")
    return version, sni, alpn, int(a[3]), a[4], int(a[5])


def send(host, port, rest):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    sent = datagrams(*args(rest))
    for d in sent:
        s.sendto(d, (host, port))
    got = []
    try:
        while len(got) < len(sent):
            got.append(s.recv(65536))
    except socket.timeout:
        pass
    print("ok=%d same=%d" % (len(got), sum(1 for a, b in zip(sent, got) if a == b)))


def bogus(i):
    kind = i % 6
    if kind == 0:
        return os.urandom(random.randint(1, 1400))
    if kind == 1:                                       # a version other than 1 and 2
        d = bytearray(datagrams(V1, "x.example", ["h3"], 1, "forward", 0)[0])
        d[1:5] = struct.pack(">I", 0xff00001d)
        return bytes(d)
    if kind == 2:                                       # a short header
        return bytes([0x40 | random.randint(0, 0x3f)]) + os.urandom(1199)
    if kind == 3:                                       # does not decrypt (one byte flipped)
        d = bytearray(datagrams(V1, "x.example", ["h3"], 1, "forward", 0)[0])
        d[-20] ^= 0x55
        return bytes(d)
    if kind == 4:                                       # the CRYPTO frame longer than the packet
        dcid, scid = os.urandom(8), os.urandom(8)
        payload = b"\x06\x00" + varint(3000) + client_hello("x.example", ["h3"], 0)
        return protect(V1, dcid, scid, 0, payload)
    return datagrams(V1, "x.example", ["h3"], 2, "forward", 0)[0]   # half a hello


def flood(host, port, n):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for i in range(n):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.sendto(bogus(i), (host, port))
        s.close()
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    t0 = time.monotonic()
    d = datagrams(V1, "a.example", ["h3"], 1, "forward", 0)[0]
    s.sendto(d, (host, port))
    try:
        ok = s.recv(65536) == d
    except socket.timeout:
        ok = False
    print("sent=%d ok=%d ms=%d" % (n, 1 if ok else 0, (time.monotonic() - t0) * 1000))


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "craft":
        for d in datagrams(*args(a)):
            print(d.hex())
    elif cmd == "rfc9001":
        rfc9001()
    elif cmd == "send":
        send(a[0], int(a[1]), a[2:])
    elif cmd == "flood":
        flood(a[0], int(a[1]), int(a[2]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
