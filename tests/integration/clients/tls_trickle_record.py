#!/usr/bin/env python3
"""Completes a TLS handshake with an HTTPS listener, then trickles a record that never ends.

usage: tls_trickle_record.py HOST PORT CAFILE SERVER_NAME INTERVAL_S MAX_BYTES

Implicit TLS from the first byte (the certificate verified against CAFILE and SERVER_NAME),
then, on the bare TCP socket under the TLS session, the header of an application-data record
announcing 16 KiB, one byte every INTERVAL_S seconds, at most MAX_BYTES bytes: the daemon
gets ciphertext that never decrypts to a request. Prints "CLOSED <seconds>" when the daemon
closes the connection (EOF, reset or a refused write), "OPEN <seconds>" when MAX_BYTES were
sent and it is still open; exits 0 either way; 1 when the TLS session cannot be set up; 2 on
a usage error.
"""
import select
import socket
import ssl
import sys
import time


def closed_within(sock, seconds):
    """True when the peer closed (or reset) the connection within `seconds`."""
    ready, _, _ = select.select([sock], [], [], seconds)
    if not ready:
        return False
    try:
        return sock.recv(4096) == b""
    except OSError:
        return True


def main(argv):
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, cafile, name = argv[1], int(argv[2]), argv[3], argv[4]
    interval, max_bytes = float(argv[5]), int(argv[6])
    context = ssl.create_default_context(cafile=cafile)
    try:
        raw = socket.create_connection((host, port), timeout=10)
        tls = context.wrap_socket(raw, server_hostname=name)
    except (OSError, ssl.SSLError) as e:
        print(f"TLS setup failed: {e}", file=sys.stderr)
        return 1
    # The TLS object keeps the socket; bytes written to the same fd go under it, unencrypted.
    bare = socket.socket(fileno=tls.fileno())
    record = b"\x17\x03\x03\x40\x00" + b"\x00" * 64
    start = time.monotonic()
    try:
        for i in range(min(max_bytes, len(record))):
            try:
                bare.send(record[i:i + 1])
            except OSError:
                print(f"CLOSED {time.monotonic() - start:.1f}")
                return 0
            if closed_within(bare, interval):
                print(f"CLOSED {time.monotonic() - start:.1f}")
                return 0
        print(f"OPEN {time.monotonic() - start:.1f}")
        return 0
    finally:
        bare.detach()
        tls.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
