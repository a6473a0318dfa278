#!/usr/bin/env python3
"""Pipelines EHLO over STARTTLS to a ringmaild under test and never reads the replies.

usage: tls_unread_flood.py HOST PORT CAFILE SERVER_NAME LIMIT_BYTES

Plain connection, EHLO, STARTTLS (RFC 3207), the TLS handshake (the certificate verified
against CAFILE and SERVER_NAME), then "EHLO x" lines in 64 KiB writes, none of the replies
read, until LIMIT_BYTES are written or a write waits 2 s (the daemon stopped reading: TCP
holds us back) or the daemon cuts the connection. Prints "SENT <bytes>" and exits 0; 1 when
the TLS session cannot be set up; 2 on a usage error.
"""
import socket
import ssl
import sys


def read_reply(f):
    """The lines of one SMTP reply; the last one has a space after its code."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if line[3:4] != b"-":
            return lines


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, cafile, server_name, limit = argv[1], int(argv[2]), argv[3], argv[4], int(argv[5])
    sock = socket.create_connection((host, port), timeout=10)
    f = sock.makefile("rb")
    try:
        read_reply(f)
        sock.sendall(b"EHLO flood.test\r\n")
        read_reply(f)
        sock.sendall(b"STARTTLS\r\n")
        if not read_reply(f)[-1].startswith(b"220"):
            print("STARTTLS refused", file=sys.stderr)
            return 1
        context = ssl.create_default_context(cafile=cafile)
        tls = context.wrap_socket(sock, server_hostname=server_name)
    except (OSError, ssl.SSLError, ConnectionError) as e:
        print(f"TLS setup failed: {e}", file=sys.stderr)
        return 1
    tls.settimeout(2)
    chunk = b"EHLO x\r\n" * 8192
    sent = 0
    try:
        while sent < limit:
            tls.sendall(chunk)
            sent += len(chunk)
    except (OSError, ssl.SSLError):
        pass  # held back (timeout) or cut off: either way the daemon stopped taking input
    print(f"SENT {sent}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
