#!/usr/bin/env python3
"""Sends one message over TLS with Python's smtplib to a ringmaild under test.

usage: smtplib_tls_send.py starttls|implicit HOST PORT CAFILE FROM TO[,TO...] MESSAGE_FILE

starttls: plain connection, EHLO, smtp.starttls() (RFC 3207), EHLO again, then the mail.
implicit: smtplib.SMTP_SSL (TLS from the first byte, port-465 style).
The server certificate is verified against CAFILE and HOST (check_hostname). Prints
"TLS <version> <cipher>", the EHLO features after TLS as "FEATURES ...", and the reply to
the end of data as "DATA-REPLY <code> <text>"; exits 0 only when that reply is 250, 1 on an
SMTP or TLS error, 2 on a usage error. A timeout bounds every socket operation.
"""
import smtplib
import ssl
import sys

from smtplib_send import send  # the same transaction as the plaintext client


def main(argv):
    if len(argv) != 8 or argv[1] not in ("starttls", "implicit"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, host, port, cafile, sender, recipients, path = argv[1:]
    with open(path, "rb") as f:
        message = f.read()
    context = ssl.create_default_context(cafile=cafile)
    try:
        if mode == "implicit":
            smtp = smtplib.SMTP_SSL(host, int(port), local_hostname="smtplib.test",
                                    timeout=10, context=context)
        else:
            smtp = smtplib.SMTP(host, int(port), local_hostname="smtplib.test", timeout=10)
        with smtp:
            if mode == "starttls":
                code, _ = smtp.ehlo()
                if code != 250 or not smtp.has_extn("starttls"):
                    print("STARTTLS not offered", file=sys.stderr)
                    return 1
                code, text = smtp.starttls(context=context)
                if code != 220:
                    print(f"STARTTLS refused: {code} {text.decode()}", file=sys.stderr)
                    return 1
            print(f"TLS {smtp.sock.version()} {smtp.sock.cipher()[0]}")
            return send(smtp, sender, recipients, message)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
        print(f"SMTP/TLS failure: {e!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
