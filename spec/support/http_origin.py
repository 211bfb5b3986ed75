#!/usr/bin/env python3
"""A small HTTP/1.1 origin server for the HTTP proxy's specs (78-http-forward).

usage: http_origin.py PORT_FILE NAME

Listens on 127.0.0.1, port 0, and writes the port to PORT_FILE. Paths:
  /hello          "hello from NAME", Content-Length
  /headers        the request line and headers as received, as the body
  /conn           "conn N": the number of the TCP connection it came on (1, 2, ...)
  /drop           "conn N dropped", then the connection closed without a word of it
  /big?n=BYTES    BYTES of a fixed pattern, Content-Length, sent 64 KiB at a time
  /chunked        a chunked body of several chunks
  /close          a body with no length: the close ends it
  /204, /304      no body
  /echo           (POST, PUT) the request body back (Content-Length or chunked);
  /echo?chunked=N the same as a chunked body, in chunks of N bytes
  /never          no answer at all (the connection held open)
  /ws             with Upgrade: websocket, 101 then an echo of the raw bytes
"""
import http.server
import itertools
import socketserver
import sys
import threading
import time

PATTERN = bytes(range(256)) * 256          # 64 KiB
counter = itertools.count(1)
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            self.conn_no = next(counter)

    def log_message(self, *args):
        pass

    def send_body(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self):
        path, _, query = self.path.partition("?")
        name = sys.argv[2]
        if path == "/hello":
            self.send_body(("hello from %s\n" % name).encode())
        elif path == "/headers":
            head = self.requestline + "\n" + "".join("%s: %s\n" % kv for kv in self.headers.items())
            self.send_body(head.encode())
        elif path == "/conn":
            self.send_body(("conn %d\n" % self.conn_no).encode())
        elif path == "/big":
            n = int(query.partition("=")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command != "HEAD":
                while n > 0:
                    piece = PATTERN[: min(n, len(PATTERN))]
                    self.wfile.write(piece)
                    n -= len(piece)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                data = ("chunk %d of %s\n" % (i, name)).encode() * (i + 1)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the close\n" * 1000)
            self.close_connection = True
        elif path == "/drop":
            # says nothing of closing, then closes: the proxy's kept connection goes stale
            self.send_body(("conn %d dropped\n" % self.conn_no).encode())
            self.close_connection = True
        elif path in ("/204", "/304"):
            self.send_response(int(path[1:]))
            self.end_headers()
        elif path == "/never":
            time.sleep(30)
            self.close_connection = True
        elif path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(65536)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
        else:
            self.send_error(404)

    do_HEAD = do_GET

    def do_POST(self):
        body = self.read_body()
        query = self.path.partition("?")[2]
        if not query.startswith("chunked="):
            self.send_body(body, "application/octet-stream")
            return
        size = int(query.partition("=")[2])
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for at in range(0, len(body), size):
            piece = body[at:at + size]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    do_PUT = do_POST


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    server = Server(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
