#!/usr/bin/env python3
"""A small SMTP sink with STARTTLS (Python's ssl module), for the outbound TLS tests.

Listens on 127.0.0.1:0, prints "port N" once listening, then one line per accepted message:
"MSG tls=<0|1> version=<TLS1.3|-> rcpt=<addr,...> bytes=<n>". Options:
  --cert CHAIN --key KEY   the server certificate (required unless --no-starttls)
  --no-starttls            never offer STARTTLS
  --break-tls              answer STARTTLS with 220, read the client's hello, send bytes that
                           are no TLS record, hang up (a broken handshake)
Runs until SIGTERM (or SIGKILL). Test code: loopback only, bounded line lengths.
"""
import argparse
import socket
import socketserver
import ssl
import sys
import threading

MAX_LINE = 4096
MAX_MESSAGE = 64 << 20
print_lock = threading.Lock()


def say(line):
    with print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Handler(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        opts = self.server.opts
        tls_version = None
        self.reply("220 sink.test ESMTP")
        rcpts = []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            verb = line.decode("latin-1").strip()
            upper = verb.upper()
            if upper.startswith("EHLO"):
                caps = ["250-sink.test", "250-PIPELINING", "250-8BITMIME"]
                if not opts.no_starttls and tls_version is None:
                    caps.append("250-STARTTLS")
                caps.append("250 SIZE 100000000")
                self.wfile.write(("\r\n".join(caps) + "\r\n").encode())
                self.wfile.flush()
            elif upper.startswith("HELO"):
                self.reply("250 sink.test")
            elif upper == "STARTTLS" and not opts.no_starttls and tls_version is None:
                self.reply("220 2.0.0 go ahead")
                if opts.break_tls:
                    self.connection.recv(4096)
                    self.connection.sendall(b"this is not a TLS record\r\n")
                    return
                try:
                    conn = self.server.tls.wrap_socket(self.connection, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                self.connection = conn
                self.rfile = conn.makefile("rb")
                self.wfile = conn.makefile("wb")
                tls_version = conn.version()
                rcpts = []
            elif upper.startswith("MAIL FROM:"):
                rcpts = []
                self.reply("250 2.1.0 ok")
            elif upper.startswith("RCPT TO:"):
                rcpts.append(verb[8:].strip().split(" ")[0].strip("<>"))
                self.reply("250 2.1.5 ok")
            elif upper == "DATA":
                self.reply("354 go ahead")
                size = 0
                while True:
                    data = self.rfile.readline(MAX_LINE)
                    if not data:
                        return
                    if data == b".\r\n":
                        break
                    size += len(data)
                    if size > MAX_MESSAGE:
                        return
                say("MSG tls=%d version=%s rcpt=%s bytes=%d" %
                    (tls_version is not None, tls_version or "-", ",".join(rcpts), size))
                self.reply("250 2.0.0 queued")
            elif upper == "RSET":
                rcpts = []
                self.reply("250 2.0.0 ok")
            elif upper == "QUIT":
                self.reply("221 2.0.0 bye")
                return
            else:
                self.reply("502 5.5.2 unknown")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--break-tls", action="store_true")
    opts = p.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.opts = opts
    if not opts.no_starttls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.cert, opts.key)
        server.tls = ctx
    say("port %d" % server.server_address[1])
    server.serve_forever()  # until SIGTERM/SIGKILL from the test


if __name__ == "__main__":
    main()
