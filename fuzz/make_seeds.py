#!/usr/bin/env python3
"""Writes the hand-made seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Run once after changing a target's input layout (see the comment at the top of each
<name>_fuzz.cc); the files are committed, so neither CI nor scripts/fuzz.sh run this.
The binary seeds (spool records, segment files, DNS messages) are built by hand here from
the formats in spool/record.h, spool/segment_format.h and RFC 1035.
"""
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(ROOT)


def write(target, name, data):
    folder = os.path.join(ROOT, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# FuzzedDataProvider takes integers from the END of the input, the last byte first (as the
# most significant): these helpers append an integer so that it reads back as `value`.
def tail_int(value, size):
    return value.to_bytes(size, "little")


def ops_tail(ops):
    """Op bytes are consumed from the end, one at a time: store them reversed."""
    return bytes(reversed(ops))


# ---- smtp_parser: payload + cap(2) + seed(8) + mode(1) ------------------------------------
def smtp_parser():
    def seed(name, payload, mode, cap=0, slicing=0x1234567):
        write("smtp_parser", name,
              payload + tail_int(cap, 2) + tail_int(slicing, 8) + bytes([mode]))
    seed("commands", b"EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\n"
         b"RCPT TO:<x@example.com>\r\nbare lf\n" + b"L" * 600 + b"\r\nQUIT\r\n", 0)
    seed("data", b"Subject: hi\r\n\r\nbody\r\n..stuffed\r\n.\r\nQUIT\r\n", 1)
    seed("data_bare_normalize", b"a\nb\rc\r\n.x\r\n.\r\n", 1 | 4)
    seed("data_smuggle", b"x\n.\nMAIL FROM:<e@vil>\r\n\r.\r\nend\r\n.\r\n", 1)
    seed("data_cap", b"0123456789abcdefghij\r\n.\r\n", 1 | 8, cap=10)
    seed("bdat", b"line one\r\nline two\r\nnul\x00here\r", 2)
    seed("bdat_binary", bytes(range(256)), 2 | 0x10)


# ---- session_machine: front = dialogue bytes; end = ops (reversed) + setup (2 bytes) --------
def session_machine():
    def seed(name, dialogue, ops, setup):
        write("session_machine", name, dialogue + ops_tail(ops) + tail_int(setup, 2))
    feed256 = 0x0C  # feed 256 bytes; 0x9C does the same even while the machine is paused
    mail = (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\n"
            b"RCPT TO:<postmaster>\r\n")
    seed("sync_data", b"EHLO c.example\r\n" + mail + b"DATA\r\nhi\r\n..dot\r\n.\r\n"
         b"QUIT\r\n", [feed256] * 2, 0x0001)
    seed("sync_bdat_small_limits", b"EHLO c\r\n" + mail + b"BDAT 4\r\nabcdBDAT 3 LAST\r\nxyz"
         b"RSET\r\nNOOP\r\nVRFY x\r\nHELP\r\nQUIT\r\n", [0x08] * 20, 0x0021)
    # async: slot, commit and TLS complete only when an op says so
    seed("async_commit", b"EHLO c\r\n" + mail + b"DATA\r\nbody\r\n.\r\nMAIL FROM:<>\r\n"
         b"RCPT TO:<x@example.com>\r\nDATA\r\nmore\r\n.\r\nQUIT\r\n",
         [0x08, 0x08, 0xA0, 0x08, 0x0B, 0xB5, 0x0B, 0xA0, 0x0C, 0xB0, 0x0C], 0x0000)
    seed("starttls", b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\n" + mail + b"DATA\r\nx\r\n.\r\n",
         [0x06, 0x04, 0xC0, 0x0C, 0xA0, 0x0C, 0xB5], 0x0008)
    seed("timeout_shutdown", b"HELO h\r\n" + mail + b"DATA\r\npartial body",
         [0x08, 0xA0, 0x0C, 0xE0, 0xD0, 0xB5], 0x0002)
    seed("canned", b"", [0xF0, 0xF2, 0xA0, 0xF4, 0xF6, 0xF7, 0xB5, 0xF8, 0xF9, 0xB5, 0xFD],
         0x0000)
    seed("hostile", b"GET / HTTP/1.1\r\n" + b"\x00\r\r\n" * 4 + b"A" * 3000,
         [0x0E, 0x9F, 0x0E], 0x0180)


# ---- config: plain text -----------------------------------------------------------------------
def config():
    shutil.copy(os.path.join(SOURCE, "tests/config/testdata/design_example.conf"),
                os.path.join(ROOT, "corpus/config/design_example.conf"))
    write("config", "include", 'include "inc.conf"\nspool_dir = "/tmp/s"\n')
    write("config", "include_cycle", 'include "loop.conf"\n')
    write("config", "small", 'ESMTP_Listener {\n  max_message_size = 10MB\n'
          '  relay_hosts = ( "10.0.0.0/8" "::1" )\n  Listen "127.0.0.1:25" { }\n}\n'
          'Domain "example.com" { routes = "[127.0.0.1]:2526" }\n'
          'ThreadPool "Unlink" { Concurrency = 6  Backlog = 100 }\n'
          'eventloop "events_pool" { concurrency = "75%" }\n')
    write("config", "errors", 'retry_interval = 5x\nunknown_key = 1\nDomain {\n'
          '  max_outbound_connections = -3\n# comment\n"unterminated\n')


# ---- license: plain text ----------------------------------------------------------------------
def license_():
    for name in ("valid", "reformatted", "unicode", "expired", "tampered"):
        shutil.copy(os.path.join(SOURCE, f"tests/testdata/license/{name}.license"),
                    os.path.join(ROOT, f"corpus/license/{name}.license"))


# ---- spool: records and segments --------------------------------------------------------------
def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def pad8(n):
    return (n + 7) & ~7


def record(rtype, meta, content=b"", version=1):
    length = 24 + len(meta) + len(content)
    fields = struct.pack("<BBHIQ", rtype, version, 0, len(meta), length)
    body = meta + content + b"\0" * (pad8(length) - length)
    header_crc = crc32c(fields)
    crc = crc32c(struct.pack("<I", header_crc) + fields + body)
    return struct.pack("<II", crc, header_crc) + fields + body


def string(s):
    return struct.pack("<I", len(s)) + s


def message_record(version=1):
    received = b"Received: from c ([192.0.2.9]) by mx; now\r\n"
    meta = struct.pack("<QQQII", 0x1234, 0x5678, 1700000000000, len(received), 2)
    meta += string(b"a@b.example") + string(b"SIZE=10") + string(b"c.example")
    meta += string(b"192.0.2.9:4000")
    meta += struct.pack("<BBHIQ", 0, 0, 0, 0, 0) + string(b"x@example.com") + string(b"")
    meta += struct.pack("<BBHIQ", 2, 0, 0, 3, 1700000060000) + string(b"y@example.net")
    meta += string(b"NOTIFY=NEVER")
    return record(1, meta, received + b"Subject: hi\r\n\r\nbody\r\n", version)


def recipient_record(version=1):
    meta = struct.pack("<QQIBBHIQQ", 0x1234, 0x5678, 1, 1, 0, 0, 1, 0, 1700000070000)
    return record(2, meta + string(b"250 2.0.0 ok"), version=version)


def done_record(version=1):
    return record(3, struct.pack("<QQQ", 0x1234, 0x5678, 1700000080000), version=version)


def segment_header(loop=3, seq=17):
    head = b"RMSPOOL\x1a" + struct.pack("<IIIIQQQ", 1, 64, loop, 8, seq, 1700000000000, 1 << 20)
    head += b"\0" * 12
    return head + struct.pack("<I", crc32c(head))


def spool():
    for name, rec in (("message", message_record()), ("recipient", recipient_record()),
                      ("done", done_record())):
        write("spool_record", name, rec + b"\x00")
        write("spool_record", name + "_fixcrc", rec + b"\x01")
    broken = bytearray(recipient_record())
    broken[40] ^= 0xFF
    write("spool_record", "bad_meta_fixcrc", bytes(broken) + b"\x01")
    write("spool_record", "segment_header", segment_header() + b"\x00")
    records = message_record() + recipient_record() + done_record()
    write("segment_reader", "whole_file", segment_header() + records + b"\0" * 64 + b"\x00")
    write("segment_reader", "records_prepend", records + b"\x01")
    write("segment_reader", "records_fix_zero_tail", records + b"\x07")
    write("segment_reader", "torn_tail", records + message_record()[:50] + b"\x05")
    write("segment_reader", "corrupt_middle",
          recipient_record()[:30] + b"\xff" * 10 + recipient_record()[40:] + done_record()
          + b"\x01")
    write("segment_reader", "zero_header", b"\0" * 64 + done_record() + b"\x00")
    write("segment_reader", "hole", records + b"\xff" * 8 + done_record() + b"\x0b")
    # Format 2 (record version 2; the target keys the CRCs): fresh, recycled with one record
    # of this life before an earlier life's, recycled with only an earlier life's records.
    bound = message_record(2) + recipient_record(2) + done_record(2)
    write("segment_reader", "format2_fixed", bound + b"\x13")
    write("segment_reader", "recycled_one_current", bound + b"\x23")
    write("segment_reader", "recycled_all_earlier", bound + b"\x33")
    for name, rec in (("message", message_record(2)), ("done", done_record(2))):
        write("spool_record", name + "_bound_fixcrc", rec + b"\x01")


# ---- control_protocol: bytes + mode (bit 0: responses) ----------------------------------------
def control_protocol():
    write("control_protocol", "summary", b"summary --json\x00")
    write("control_protocol", "quoted", b'threadpool set "Un\\"link" concurrency 4\t\x00')
    write("control_protocol", "domain", b'domain suspend "example.com" ""\r\x00')
    write("control_protocol", "responses", b"OK 5\nhelloERR 3\nbadOK 0\n\x01")
    write("control_protocol", "response_split", b"OK 12\nline1\nline2\nERR 00\n\x37")


# ---- reply_parser: server bytes + 8-byte slicing seed -----------------------------------------
def reply_parser():
    def seed(name, stream, slicing=0x9E3779B97F4A7C15):
        write("reply_parser", name, stream + tail_int(slicing, 8))
    seed("ehlo", b"220 mx.example ESMTP\r\n250-mx.example Hello\r\n250-PIPELINING\r\n"
         b"250-SIZE 35882577\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-BINARYMIME\r\n"
         b"250-STARTTLS\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n")
    seed("enhanced", b"250 2.1.0 Ok\r\n550-5.1.1 no such user\r\n550 5.1.1 try again\r\n"
         b"451 4.3.0 later\n354 go ahead\r\n")
    seed("errors", b"250-ok\r\n251 mismatch\r\n")
    seed("bare_cr", b"220 a\rb\r\n")
    seed("long", b"250 " + b"x" * 2100 + b"\r\n")


# ---- dns_answer: selector byte + DNS message -------------------------------------------------
def dns_name(dotted):
    out = b""
    for label in dotted.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_message(qtype, answers, authority=(), rcode=0):
    header = struct.pack(">HHHHHH", 0x1234, 0x8180 | rcode, 1, len(answers), len(authority), 0)
    body = dns_name("example.com") + struct.pack(">HH", qtype, 1)
    for rtype, ttl, rdata in list(answers) + list(authority):
        body += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return header + body


def dns_answer():
    mx = [(15, 300, struct.pack(">H", 10) + dns_name("mx1.example.com")),
          (15, 60, struct.pack(">H", 5) + b"\x03mx2\xc0\x0c"),
          (15, 90, struct.pack(">H", 10) + dns_name("MX1.Example.COM"))]
    write("dns_answer", "mx", b"\x00" + dns_message(15, mx))
    write("dns_answer", "null_mx", b"\x00" + dns_message(15, [(15, 300, b"\0\0\0")]))
    write("dns_answer", "bad_host", b"\x00" + dns_message(15, [(15, 300, b"\0\1\3a b\0")]))
    write("dns_answer", "a", b"\x01" + dns_message(1, [(1, 30, bytes([192, 0, 2, 1])),
                                                       (1, 0x80000000, bytes([192, 0, 2, 2]))]))
    write("dns_answer", "aaaa", b"\x02" + dns_message(28, [(28, 30, bytes(range(16)))]))
    soa = dns_name("ns.example.com") + dns_name("host.example.com") + struct.pack(
        ">IIIII", 1, 3600, 600, 86400, 300)
    write("dns_answer", "nxdomain_soa", b"\x0c" + dns_message(15, [], [(6, 900, soa)], 3))
    write("dns_answer", "nodata_soa", b"\x08" + dns_message(1, [], [(6, 100, soa)]))


# ---- http_request: client bytes + mode (bit 0..2: tiny limits; the rest seeds slicing) -------
def http_request():
    post = (b'POST /api/inject/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n'
            b'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}')
    write("http_request", "post", post + b"\x00")
    write("http_request", "pipelined", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
          b"HEAD /api/v1/queues?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n" + post + b"\x38")
    write("http_request", "chunked", b"POST /api/inject/v1 HTTP/1.1\r\nTransfer-Encoding: chunked"
          b"\r\n\r\n5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n" + b"\x04")
    write("http_request", "limits", b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n"
          + b"X-Long: " + b"v" * 300 + b"\r\n\r\n" + b"\x07")
    write("http_request", "bad", b"GET / HTTP/2.0\r\n\r\nBAD\x00 / HTTP/1.1\r\n"
          b"Bad Name: x\r\nUpgrade: h2c\r\n\r\n\x00")


# ---- http_inject: JSON body + mode (bit 0: 3 recipients max; 1: relay host; 2: tiny caps) ----
def http_inject():
    raw = ('{"envelope_sender":"bounces@example.com","recipients":["a@example.com",'
           '{"email":"b@other.example","name":"B \\"Q\\""}],'
           '"content":"Subject: hi\\r\\n\\r\\nbody\\nline"}')
    write("http_inject", "raw", raw + "\x00")
    write("http_inject", "raw_relay_host", raw + "\x02")
    structured = ('{"envelope_sender":"","recipients":[{"email":"a@example.com","name":"Ann",'
                  '"substitution_data":{"first":"Ann","n":3,"vip":true,"x":null}},'
                  '"postmaster"],"substitution_data":{"first":"friend"},'
                  '"content":{"from":{"email":"news@example.com","name":"News \u00e9"},'
                  '"subject":"Hello {{first}}","text_body":"Hi {{ first }}\\n",'
                  '"html_body":"<p>{{{first}}} & {{first}}</p>",'
                  '"headers":{"X-Campaign":"c1"},"attachments":[{"name":"a.txt",'
                  '"type":"text/plain","data":"aGVsbG8="}]}}')
    write("http_inject", "structured", structured.encode("utf-8") + b"\x00")
    write("http_inject", "structured_caps", structured.encode("utf-8") + b"\x04")
    write("http_inject", "errors", '{"envelope_sender":"a b@x","recipients":[],"bogus":1}\x01')
    write("http_inject", "utf8", '{"envelope_sender":"j\u00f6@example.com","recipients":'
          '["\u00e9@example.com"],"content":"From: x\\n\\n\u00e9t\u00e9"}\x00')


# ---- esmtp_policy: an argument line + mode (bit 0: SMTPUTF8 for RCPT) ------------------------
def esmtp_policy():
    for name, line, mode in (
            ("mail", b"FROM:<a.b@example.com> SIZE=1000 BODY=8BITMIME", 0),
            ("mail_null", b"FROM:<>", 0),
            ("mail_utf8", "FROM:<jö@exämple.com> SMTPUTF8".encode(), 0),
            ("mail_quoted", b'FROM:<"a b\\\"c"@[IPv6:2001:db8::1]>', 0),
            ("rcpt_route", b"TO:<@a.example,@b.example:x@example.com> NOTIFY=NEVER", 0),
            ("rcpt_postmaster", b"TO:<PostMaster>", 0),
            ("rcpt_utf8", "TO:<δ@example.com>".encode(), 1),
            ("cidr4", b"192.0.2.0/24", 0),
            ("cidr6", b"2001:db8::/32", 0),
            ("mapped", b"[::ffff:192.0.2.1%eth0]", 0),
            ("helo", b"client.example", 0)):
        write("esmtp_policy", name, line + bytes([mode]))


if __name__ == "__main__":
    smtp_parser()
    session_machine()
    config()
    license_()
    spool()
    control_protocol()
    reply_parser()
    dns_answer()
    http_request()
    http_inject()
    esmtp_policy()
