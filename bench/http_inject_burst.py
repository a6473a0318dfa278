#!/usr/bin/env python3
"""bench/http_inject_burst.py — what a burst of big templated injections costs in memory.

usage: bench/http_inject_burst.py RINGMAILD [REQUESTS] [RECIPIENTS] [BYTES] [RUNS]

Starts RINGMAILD (a binary) on the embedded defaults plus an HTTP_Listener, both on
127.0.0.1 ports of its own choosing, with a fresh spool under ./var. Then REQUESTS (16)
clients post at once, each one templated request of RECIPIENTS (75) recipients of a BYTES
(400,000) substitution (~30 MB of messages from a 400 KB request), while the daemon's RSS is
sampled every 2 ms. Prints the status codes and the peak RSS over the daemon's RSS before
the burst, per run (RUNS, 1). Each loop may hold 4 requests' worth of built messages
(listeners/http/inject_budget.h): the rest of the burst gets 503 with Retry-After.
Loopback only; every request is bounded by a 120 s timeout and the daemon is stopped.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_run(binary, requests, recipients, size):
    os.makedirs("var", exist_ok=True)
    work = tempfile.mkdtemp(prefix="inject_burst.", dir="var")
    conf = os.path.join(work, "ringmaild.conf")
    with open(conf, "w") as f:
        f.write(f'spool_dir = "{work}/spool"\nlog_dir = "{work}/log"\n'
                'ESMTP_Listener { relay_domains = ( "local.test" ) Listen "127.0.0.1:0" { } }\n'
                'HTTP_Listener { auth_token = "tok" Listen "127.0.0.1:0" { } }\n')
    daemon = subprocess.Popen([binary, "--config", conf], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        for line in daemon.stdout:
            if line.startswith("ready http=127.0.0.1:"):
                port = int(line.strip().rsplit(":", 1)[1])
                break
        if port is None:
            raise RuntimeError("ringmaild did not start")
        body = json.dumps({
            "envelope_sender": "s@x.test", "substitution_data": {"a": "a" * size},
            "recipients": [{"email": f"u{i}@local.test", "substitution_data": {}}
                           for i in range(recipients)],
            "content": {"from": "s@x.test", "subject": "s", "text_body": "{{a}}"}}).encode()
        codes = []
        start = threading.Barrier(requests)

        def post():
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/inject/v1", data=body,
                headers={"Authorization": "Bearer tok", "Content-Type": "application/json"})
            start.wait()
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    r.read()
                    codes.append(r.status)
            except urllib.error.HTTPError as e:
                codes.append(e.code)

        base = rss_kb(daemon.pid)
        clients = [threading.Thread(target=post) for _ in range(requests)]
        for c in clients:
            c.start()
        peak = base
        while any(c.is_alive() for c in clients):
            peak = max(peak, rss_kb(daemon.pid))
            time.sleep(0.002)
        for c in clients:
            c.join()
        summary = ", ".join(f"{codes.count(c)} x {c}" for c in sorted(set(codes)))
        print(f"{summary}; RSS {base // 1024} MB before, peak {peak // 1024} MB")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = argv[1]
    requests = int(argv[2]) if len(argv) > 2 else 16
    recipients = int(argv[3]) if len(argv) > 3 else 75
    size = int(argv[4]) if len(argv) > 4 else 400_000
    runs = int(argv[5]) if len(argv) > 5 else 1
    for _ in range(runs):
        one_run(binary, requests, recipients, size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
