#!/usr/bin/env python3
"""Per-step timing of SMTP sessions from a loopback capture (bench/step_latency.sh).

Reads `tcpdump -n -tt -r CAPTURE` output (header lines only are used) for one server port
and prints, over every client connection in it, the median of:
  - SYN -> first server data (the banner; new connections only),
  - each client data segment -> the server's next data segment, by step (HELO, MAIL, RCPT,
    DATA, end of data, QUIT with smtp-source's order; later steps numbered),
  - the server's data -> the client's next data (the client's own time),
  - a connection's span (first packet to last) and the gap from a connection's last server
    data to the next connection's SYN.
The step names assume smtp-source's sequence without pipelining (one reply per command); with
-d (reused connections) the steps after the first message repeat, so they are folded by
their position in the message (MAIL, RCPT, DATA, end of data).
Usage: smtp_steps.py PORT LABEL new|reused < tcpdump-text
"""
import re
import statistics
import sys
from collections import defaultdict

HEADER = re.compile(
    r"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): Flags \[([^\]]*)\].*length (\d+)")
NEW_CONN_STEPS = ["HELO", "MAIL", "RCPT", "DATA", "end of data", "QUIT"]
REUSED_STEPS = ["MAIL", "RCPT", "DATA", "end of data"]


def read_connections(lines, server_port):
    """{client port: [(time, 'C'|'S', flags, payload length)]} in capture order."""
    conns = defaultdict(list)
    for line in lines:
        m = HEADER.match(line)
        if not m:
            continue
        t, src, dst, flags, length = float(m[1]), int(m[2]), int(m[3]), m[4], int(m[5])
        if dst == server_port:
            conns[src].append((t, "C", flags, length))
        elif src == server_port:
            conns[dst].append((t, "S", flags, length))
    return conns


def step_name(index, reused):
    if not reused:
        return NEW_CONN_STEPS[index] if index < len(NEW_CONN_STEPS) else f"step {index + 1}"
    if index == 0:
        return "HELO/EHLO"
    return REUSED_STEPS[(index - 1) % len(REUSED_STEPS)]


def summarize(conns, reused):
    reply = defaultdict(list)
    client = []
    spans = []
    banner = []
    order = sorted(conns.values(), key=lambda ev: ev[0][0])
    for ev in order:
        data = [e for e in ev if e[3] > 0]
        if "S" in ev[0][2] and data and data[0][1] == "S":
            banner.append(data[0][0] - ev[0][0])
        step = 0
        for prev, cur in zip(data, data[1:]):
            if prev[1] == "C" and cur[1] == "S":
                reply[step_name(step, reused)].append(cur[0] - prev[0])
                step += 1
            elif prev[1] == "S" and cur[1] == "C":
                client.append(cur[0] - prev[0])
        spans.append(ev[-1][0] - ev[0][0])
    gaps = []
    for a, b in zip(order, order[1:]):
        last_server = [e[0] for e in a if e[1] == "S" and e[3] > 0]
        if last_server:
            gaps.append(b[0][0] - last_server[-1])
    return banner, reply, client, spans, gaps


def us(values):
    return f"{statistics.median(values) * 1e6:.0f}" if values else "–"


def main():
    port, label, reused = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "reused"
    conns = read_connections(sys.stdin, port)
    if not conns:
        print(f"{label}: no packets captured")
        return 1
    banner, reply, client, spans, gaps = summarize(conns, reused)
    steps = ", ".join(f"{name} {us(v)}" for name, v in reply.items())
    print(f"{label}: {len(conns)} connections; medians in µs")
    if banner:
        print(f"  SYN -> banner {us(banner)}")
    print(f"  server reply after the client's data: {steps}")
    print(f"  client's own time (server data -> its next data) {us(client)}")
    print(f"  connection span {us(spans)}" +
          (f", last server data -> next SYN {us(gaps)}" if gaps else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
