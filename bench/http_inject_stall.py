#!/usr/bin/env python3
"""bench/http_inject_stall.py — how long big templated injections hold a loop's other clients.

usage: bench/http_inject_stall.py HTTP_PORT SMTP_PORT TOKEN [REQUESTS] [RECIPIENTS] [BYTES]

Against a running ringmaild with one event loop, an HTTP_Listener on 127.0.0.1:HTTP_PORT
(auth_token TOKEN, recipients under local.test relayed) and an ESMTP_Listener on
127.0.0.1:SMTP_PORT: one thread posts REQUESTS (6) templated injections one after the other,
each RECIPIENTS (45) recipients of a BYTES (400,000) substitution (~18 MB of messages a
request); meanwhile the main thread connects to the SMTP port and reads the greeting, over
and over, until the injections are done. Prints how many greetings were served and the
slowest. Compare with `ringctl threadpool set IO concurrency 0` (injection jobs then run
inline, on the loop). Loopback only; bounded by REQUESTS.
"""
import json
import socket
import sys
import threading
import time
import urllib.request


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    http_port, smtp_port, token = int(argv[1]), int(argv[2]), argv[3]
    requests = int(argv[4]) if len(argv) > 4 else 6
    recipients = int(argv[5]) if len(argv) > 5 else 45
    size = int(argv[6]) if len(argv) > 6 else 400_000
    body = json.dumps({
        "envelope_sender": "s@x.test", "substitution_data": {"a": "a" * size},
        "recipients": [{"email": f"u{i}@local.test", "substitution_data": {}}
                       for i in range(recipients)],
        "content": {"from": "s@x.test", "subject": "s", "text_body": "{{a}}"}}).encode()
    done = threading.Event()

    def inject():
        try:
            for _ in range(requests):
                req = urllib.request.Request(
                    f"http://127.0.0.1:{http_port}/api/inject/v1", data=body,
                    headers={"Authorization": f"Bearer {token}",
                             "Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    r.read()
        finally:
            done.set()

    t = threading.Thread(target=inject)
    t.start()
    worst, served = 0.0, 0
    while not done.is_set():
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", smtp_port), timeout=30) as c:
            c.recv(512)
        worst = max(worst, time.perf_counter() - start)
        served += 1
    t.join()
    print(f"greetings {served}, worst {worst * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
