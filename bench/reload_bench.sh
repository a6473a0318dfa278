#!/usr/bin/env bash
# bench/reload_bench.sh — what live reload costs while ringmaild carries mail (issue #6).
#
#   bench/reload_bench.sh [--build DIR] [--runs N] [--seconds S] [--connections C]
#                         [--size BYTES] [--reloads N]
#
# ringmaild runs licensed with the test license (tests/testdata/license/valid.license) on an
# eventloop pool of 2 loops, relaying to a `ringload sink`. Each run starts a fresh daemon on
# an empty spool and drives it with `ringload send --connections C --duration S` (closed
# loop: every connection sends its next message as soon as the last one got its 250).
# Runs alternate A (no reloads) and B (N `config reload`s spread over the run), so both see
# the same machine weather. In B, a driver (Python, one persistent control connection, no
# process start per reload) rewrites the config between two values of max_message_size, sends
# `config reload`, and measures
#   reply    command sent → the daemon's OK (new generation published on the master loop)
#   live     command sent → the first new SMTP connection whose EHLO advertises the new
#            SIZE (the listener loops run the new generation)
# In A the same driver runs at the same pace (config write, a `license show` request, EHLO
# probes) without reloading, so the ratio measures the reloads rather than the measuring.
# Output: per run messages/s and p99 latency, then medians: A vs B throughput ratio
# (target ≥ 0.95) and reload reply/live latency median and p99 over every reload.
# Everything listens on 127.0.0.1 only; every process is bounded by timeout and stopped.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=3
SECONDS_PER_RUN=10
CONNS=50
SIZE=1024
RELOADS=100

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --reloads) RELOADS=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--seconds S] [--connections C]" \
            "[--size BYTES] [--reloads N]" >&2; exit 2 ;;
  esac
done

RINGLOAD=$BUILD/tools/ringload/ringload
RINGMAILD=$BUILD/tools/ringmaild/ringmaild
LICENSE=$ROOT/tests/testdata/license/valid.license
for f in "$RINGLOAD" "$RINGMAILD"; do
  [[ -x $f ]] || { echo "missing $f: cmake --build $BUILD --target ringmaild ringload" >&2
                   exit 2; }
done
command -v python3 >/dev/null || { echo "python3 is needed for the reload driver" >&2; exit 2; }

WORK=$(mktemp -d /tmp/reload_bench.XXXXXX)
DAEMON_PID=""
SINK_PID=""
cleanup() {
  [[ -n $DAEMON_PID ]] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

start_sink() {
  ringload_sink_start "$WORK/sink.out" --quiet || { echo "sink did not start" >&2; exit 1; }
  SINK_ADDR=127.0.0.1:$SINK_PORT
}

# write_config MAX_MESSAGE_SIZE: the daemon's config (atomically replaced).
write_config() {
  cat > "$WORK/conf.tmp" <<CONF
spool_dir = "$WORK/spool"
log_dir = "$WORK/log"
license = "$LICENSE"
hostname = "mx.bench"
outbound_tls = off
default_route = "[${SINK_ADDR%:*}]:${SINK_ADDR##*:}"
eventloop "esmtp" { concurrency = 2 }
ESMTP_Listener {
  event_loop = "esmtp"
  max_connections = 2000
  max_message_size = $1
  relay_hosts = ( "127.0.0.0/8" )
  Listen "127.0.0.1:0" { }
}
Control_Listener { Listen "$WORK/control.sock" { } }
CONF
  mv "$WORK/conf.tmp" "$WORK/ringmaild.conf"
}

start_daemon() {
  rm -rf "$WORK/spool" "$WORK/log"
  write_config 20000000
  # A fresh file: the redirection below truncates only once the child runs, and the last
  # run's "ready" line names a port nobody listens on any more.
  rm -f "$WORK/daemon.out"
  "$RINGMAILD" --config "$WORK/ringmaild.conf" > "$WORK/daemon.out" 2> "$WORK/daemon.err" &
  DAEMON_PID=$!
  DAEMON_ADDR=$(wait_line "$WORK/daemon.out" "ready esmtp=") || {
    echo "ringmaild did not start:" >&2; cat "$WORK/daemon.err" >&2; exit 1; }
}

stop_daemon() {
  kill "$DAEMON_PID" 2>/dev/null
  wait "$DAEMON_PID" 2>/dev/null
  DAEMON_PID=""
}

# The reload driver: $1 = reload count, $2 = interval in seconds. Prints one line per
# reload "reply_us live_us" to stdout.
cat > "$WORK/driver.py" <<'PY'
import os, socket, sys, time

work, host, port, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), float(sys.argv[5])
reload = sys.argv[6] == "reload"  # else: the same probes and file writes, no reload
conf = os.path.join(work, "ringmaild.conf")

def control_request(sock, line):
    sock.sendall(line.encode() + b"\n")
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("control socket closed")
        buf += chunk
    head, rest = buf.split(b"\n", 1)
    status, length = head.split()
    length = int(length)
    while len(rest) < length:
        rest += sock.recv(65536)
    return status.decode(), rest[:length].decode()

def ehlo_size():
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        line = f.readline()
        if not line.startswith(b"220"):
            return None
        s.sendall(b"EHLO driver.bench\r\n")
        size = None
        while True:
            line = f.readline()
            if not line:
                return size
            if line[4:9] == b"SIZE ":
                size = int(line[9:].strip())
            if line[3:4] == b" ":
                break
        s.sendall(b"QUIT\r\n")
        return size

def write_config(size):
    text = open(conf).read().split("\n")
    text = [("  max_message_size = %d" % size) if l.strip().startswith("max_message_size")
            else l for l in text]
    tmp = conf + ".driver"
    open(tmp, "w").write("\n".join(text))
    os.rename(tmp, conf)

ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ctl.connect(os.path.join(work, "control.sock"))
sizes = (20000000, 20000001)
next_at = time.monotonic()
for i in range(count):
    next_at += interval
    want = sizes[(i + 1) % 2] if reload else sizes[0]
    write_config(want)
    t0 = time.monotonic_ns()
    status, body = control_request(ctl, "config reload" if reload else "license show")
    t1 = time.monotonic_ns()
    if status != "OK":
        raise SystemExit("request failed: " + body)
    while ehlo_size() != want:
        if time.monotonic_ns() - t0 > 5e9:
            raise SystemExit("new generation not live after 5 s")
        time.sleep(0.001)  # probe at 1 ms resolution rather than spin connections
    t2 = time.monotonic_ns()
    if reload:
        print((t1 - t0) // 1000, (t2 - t0) // 1000, flush=True)
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
PY

# One run: $1 = A or B, $2 = run number. Appends "mode msgs_per_s p99_us" to runs.txt.
run_one() {
  local mode=$1 run=$2 driver_pid
  start_daemon
  local port=${DAEMON_ADDR##*:}
  "$RINGLOAD" send --target "$DAEMON_ADDR" --connections "$CONNS" --size "$SIZE" \
    --duration "$SECONDS_PER_RUN" --json --quiet --max-errors 0 \
    > "$WORK/send.$mode.$run.json" 2> "$WORK/send.err" &
  local send_pid=$!
  # The driver starts a little after the load and finishes before it ends.
  local interval
  interval=$(awk -v s="$SECONDS_PER_RUN" -v n="$RELOADS" 'BEGIN { printf "%.4f", (s - 2) / n }')
  sleep 0.5
  timeout $((SECONDS_PER_RUN + 30)) python3 "$WORK/driver.py" "$WORK" 127.0.0.1 "$port" \
    "$RELOADS" "$interval" "$([[ $mode == B ]] && echo reload || echo probe)" \
    > "$WORK/reloads.$mode.$run.txt" 2> "$WORK/driver.err" &
  driver_pid=$!
  wait "$send_pid"
  local rc=$?
  wait "$driver_pid" || { echo "reload driver failed:" >&2; cat "$WORK/driver.err" >&2; }
  cat "$WORK/reloads.$mode.$run.txt" >> "$WORK/reloads.txt"
  stop_daemon
  if [[ $rc -ne 0 ]]; then
    echo "run $mode$run: ringload exit $rc" >&2
    cat "$WORK/send.$mode.$run.json" "$WORK/send.err" >&2
    return
  fi
  python3 - "$WORK/send.$mode.$run.json" "$mode" >> "$WORK/runs.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(sys.argv[2], d["messages_per_s"], d["latency_us"]["p99"], d["messages"], d["errors"])
PY
  tail -1 "$WORK/runs.txt" | awk -v r="$run" '{ printf "run %s%s: %.0f msg/s, p99 %d us, " \
    "%d messages, %d errors\n", $1, r, $2, $3, $4, $5 }'
}

start_sink
: > "$WORK/runs.txt"
: > "$WORK/reloads.txt"
echo "reload bench: $RUNS runs each, $SECONDS_PER_RUN s, $CONNS connections, $SIZE-byte" \
     "messages, $RELOADS reloads per B run, 2 loops; $(nproc) CPUs," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 1; i <= RUNS; i++)); do
  run_one A "$i"
  run_one B "$i"
done

python3 - "$WORK/runs.txt" "$WORK/reloads.txt" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1]) if l.strip()]
a = [float(r[1]) for r in runs if r[0] == "A"]
b = [float(r[1]) for r in runs if r[0] == "B"]
ap = [int(r[2]) for r in runs if r[0] == "A"]
bp = [int(r[2]) for r in runs if r[0] == "B"]
rel = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
if a and b:
    ma, mb = statistics.median(a), statistics.median(b)
    print("throughput: without reloads %.0f msg/s (median of %d), with reloads %.0f msg/s"
          " (median of %d): ratio %.3f" % (ma, len(a), mb, len(b), mb / ma))
    pairs = sorted(y / x for x, y in zip(a, b))
    print("run pairs B/A: median %.3f, range %.3f-%.3f" %
          (statistics.median(pairs), pairs[0], pairs[-1]))
    print("p99 latency: without %d us, with %d us (medians)" %
          (statistics.median(ap), statistics.median(bp)))
if rel:
    reply = [r[0] for r in rel]
    live = [r[1] for r in rel]
    print("reloads: %d; command -> reply: median %.2f ms, p99 %.2f ms; command -> new "
          "generation live on a new connection: median %.2f ms, p99 %.2f ms" %
          (len(rel), statistics.median(reply) / 1000, pct(reply, 99) / 1000,
           statistics.median(live) / 1000, pct(live, 99) / 1000))
PY
