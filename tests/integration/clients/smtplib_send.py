#!/usr/bin/env python3
"""Sends one message with Python's smtplib to a ringmaild under test.

usage: smtplib_send.py HOST PORT FROM TO[,TO...] MESSAGE_FILE

The message file's bytes are sent as they are (smtplib dot-stuffs them and ends the data
with CRLF.CRLF). Prints the server's EHLO features and the reply to the end of data as
"DATA-REPLY <code> <text>", and exits 0 only when that reply is 250; 1 on an SMTP error,
2 on a usage error. A timeout bounds every socket operation.
"""
import smtplib
import sys


def send(smtp, sender, recipients, message):
    """EHLO, MAIL, RCPT for each recipient, DATA on an open smtplib connection; prints the
    features and the DATA reply as the usage says. Also used by smtplib_tls_send.py."""
    code, _ = smtp.ehlo()
    if code != 250:
        print(f"EHLO refused: {code}", file=sys.stderr)
        return 1
    print("FEATURES " + " ".join(sorted(smtp.esmtp_features)))
    code, text = smtp.mail(sender)
    if code != 250:
        print(f"MAIL refused: {code} {text.decode()}", file=sys.stderr)
        return 1
    for rcpt in recipients.split(","):
        code, text = smtp.rcpt(rcpt)
        if code not in (250, 251):
            print(f"RCPT refused: {code} {text.decode()}", file=sys.stderr)
            return 1
    code, text = smtp.data(message)
    print(f"DATA-REPLY {code} {text.decode()}")
    return 0 if code == 250 else 1


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, sender, recipients, path = argv[1:]
    with open(path, "rb") as f:
        message = f.read()
    try:
        with smtplib.SMTP(host, int(port), local_hostname="smtplib.test", timeout=10) as smtp:
            return send(smtp, sender, recipients, message)
    except (smtplib.SMTPException, OSError) as e:
        print(f"SMTP failure: {e!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
