#!/usr/bin/env python3
"""Regenerates the sample licenses in this folder from the TEST keys.

Deliberately a second, independent implementation of the canonical text in config/license.h
(signing with the Python `cryptography` package, not wolfSSL), so license_test.cc checks that
the C++ verifier agrees with the documented format rather than only with itself. Ed25519 is
deterministic: re-running this script reproduces the committed files byte for byte.
Not run by the build; needs python3-cryptography.  Usage: ./make_samples.py
"""
import os
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = os.path.dirname(os.path.abspath(__file__))


def read_key(name):
    with open(os.path.join(HERE, name)) as f:
        lines = [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]
    assert len(lines) == 1
    return bytes.fromhex(lines[0])


def canonical(licensee, issued, expires, loops):
    return (f"ringmail license v1\nlicensee={licensee}\nissued={issued}\n"
            f"expires={expires}\nmax_event_loops={loops}\n").encode("utf-8")


def sign(key_file, licensee, issued, expires, loops):
    key = Ed25519PrivateKey.from_private_bytes(read_key(key_file))
    return key.sign(canonical(licensee, issued, expires, loops)).hex()


def standard(licensee, issued, expires, loops, signature):
    return (f"# ringmail license\nlicensee = \"{licensee}\"\nissued = {issued}\n"
            f"expires = {expires}\nmax_event_loops = {loops}\nsignature = {signature}\n")


def write(name, text, newline="\n"):
    with open(os.path.join(HERE, name), "w", encoding="utf-8", newline=newline) as f:
        f.write(text)


def main():
    fields = ("Example Corp", "2026-01-01", "2036-01-01", 8)
    good = sign("test_key.private", *fields)
    write("valid.license", standard(*fields, good))
    # Same signature, one value changed after signing.
    write("tampered.license", standard("Example Corp", "2026-01-01", "2036-01-01", 64, good))
    write("wrong_key.license", standard(*fields, sign("other_key.private", *fields)))
    old = ("Example Corp", "2025-01-01", "2026-01-01", 4)
    write("expired.license", standard(*old, sign("test_key.private", *old)))
    uni = ("Société Générale Ωmega 東京", "2026-01-01", "2036-01-01", 16)
    write("unicode.license", standard(*uni, sign("test_key.private", *uni)))
    # Comments, blank lines, field order, tabs, spaces and CRLF are outside the signature.
    write("reformatted.license",
          "# a reformatted license\n\n\tmax_event_loops=8   \nexpires\t=\t2036-01-01\n"
          f"signature = {good.upper()}\n# the name:\n  licensee   =   \"Example Corp\"\n"
          "issued = 2026-01-01", newline="\r\n")


if __name__ == "__main__":
    main()
