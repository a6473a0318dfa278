#!/usr/bin/env bash
# bench/inject_vs_smtp.sh — the same messages accepted by ringmaild through SMTP and through
# the HTTP injection API (issue #7's target: injection msgs/s ≥ SMTP acceptance), side by
# side in one run.
#
#   bench/inject_vs_smtp.sh [--build DIR] [--runs N] [--seconds S] [--conns N] [--size BYTES]
#                           [--loops N] [--out FILE] [--ringmaild PATH]
#
# One client for both: `ringload send` (SMTP, and `--http` for POST /api/inject/v1 with raw
# and with structured content), N keep-alive connections, closed loop, SIZE-byte messages
# (the same header block and body in every mode), one recipient each. ringmaild runs with
# the ESMTP and HTTP listeners on one eventloop pool of LOOPS loops (licensed with the test
# license in tests/testdata/license; without a license the daemon allows one loop), spool
# under /var/tmp (real fdatasync: a 250 or a 200 is sent only once the message is durable).
# Each cell starts a fresh daemon on an empty spool; the cells of a run are interleaved and
# their order rotates from run to run, so drift of the machine's load hits every mode alike.
# The daemon's own count (/api/v1/queues) is checked against the client's after each cell,
# and its CPU time per accepted message (/proc/PID/stat) is reported: on a shared machine
# that moves much less with the load than msgs/s does.
# Prints medians (and min–max) of msgs/s and latency per mode, and the HTTP/SMTP ratio of
# medians and the median of per-run ratios; --out also writes that table as markdown.
# Outbound delivery goes to a closed loopback port (refused: messages stay deferred).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=5
SECS=5
CONNS=100
SIZE=1024
LOOPS=2
OUT=""
RINGMAILD=""
TOKEN=bench-token-0123456789

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --ringmaild) RINGMAILD=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--seconds S] [--conns N] [--size BYTES]" \
            "[--loops N] [--out FILE] [--ringmaild PATH]" >&2; exit 2 ;;
  esac
done

RINGMAILD=${RINGMAILD:-$BUILD/tools/ringmaild/ringmaild}
RINGLOAD=$BUILD/tools/ringload/ringload
for b in "$RINGMAILD" "$RINGLOAD"; do
  [[ -x $b ]] || { echo "missing $b (build the ringmaild and ringload targets)" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "bench: curl is needed (scripts/setup.sh)" >&2; exit 2; }

WORK=$(mktemp -d /var/tmp/inject_vs_smtp.XXXXXX)
DAEMON_PID=""
cleanup() {
  if [[ -n $DAEMON_PID ]]; then kill -TERM "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID"; fi
  [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

DEAD_PORT=$(free_port)

SMTP_PORT=""
HTTP_PORT=""
start_daemon() {  # sets DAEMON_PID, SMTP_PORT, HTTP_PORT
  local dir=$WORK/daemon
  rm -rf "$dir"
  mkdir -p "$dir"
  local pool use_pool=""
  pool=$(loops_conf "$LOOPS" ingest)
  [[ $LOOPS -gt 1 ]] && use_pool="  event_loop = \"ingest\""
  cat > "$dir/ringmaild.conf" <<EOF
spool_dir = "$dir/spool"
log_dir = "$dir/log"
hostname = "bench.test"
default_route = "[127.0.0.1]:$DEAD_PORT"
retry_interval = 1h
$pool
ESMTP_Listener {
$use_pool
  relay_domains = ( "domain0.test" )
  max_connections_per_ip = 20000
  Listen "127.0.0.1:0" { }
}
HTTP_Listener {
$use_pool
  auth_token = "$TOKEN"
  max_connections = 20000
  Listen "127.0.0.1:0" { }
}
EOF
  "$RINGMAILD" --config "$dir/ringmaild.conf" > "$dir/stdout" 2> "$dir/stderr" &
  DAEMON_PID=$!
  SMTP_PORT=$(wait_line "$dir/stdout" "ready esmtp=127.0.0.1:" 150 "$DAEMON_PID") &&
    HTTP_PORT=$(wait_line "$dir/stdout" "ready http=127.0.0.1:" 150 "$DAEMON_PID") &&
    return 0
  echo "ringmaild did not start:" >&2
  cat "$dir/stderr" >&2
  exit 1
}

stop_daemon() {
  kill -TERM "$DAEMON_PID" 2>/dev/null
  wait "$DAEMON_PID"
  DAEMON_PID=""
}

daemon_cpu_ticks() {  # user + system CPU of the daemon so far, in clock ticks
  proc_cpu_ticks "$DAEMON_PID"
}

spooled() {  # the daemon's count of messages made durable
  curl -s --max-time 10 -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$HTTP_PORT/api/v1/queues" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("messages_spooled", "?"))' \
      2>/dev/null || echo "?"
}

RESULTS=$WORK/results.tsv  # run mode msgs/s p50_us p99_us spooled accepted errors cpu_us
: > "$RESULTS"
MODES=(smtp http_raw http_structured)

run_cell() {  # run mode
  local run=$1 mode=$2 flags=()
  start_daemon  # first: the ports below are this daemon's
  case $mode in
    smtp) flags=(--target "127.0.0.1:$SMTP_PORT") ;;
    http_raw) flags=(--http --token "$TOKEN" --target "127.0.0.1:$HTTP_PORT") ;;
    http_structured) flags=(--http --token "$TOKEN" --kind structured
                            --target "127.0.0.1:$HTTP_PORT") ;;
  esac
  local json cpu0 cpu1
  cpu0=$(daemon_cpu_ticks)
  json=$("$RINGLOAD" send "${flags[@]}" --connections "$CONNS" --duration "$SECS" \
           --size "$SIZE" --quiet --json --max-errors 1000000 2> "$WORK/ringload.err")
  cpu1=$(daemon_cpu_ticks)
  local count
  count=$(spooled)
  stop_daemon
  python3 - "$run" "$mode" "$count" "$json" $((cpu1 - cpu0)) "$(getconf CLK_TCK)" \
    >> "$RESULTS" <<'PY'
import json, sys
run, mode, count, text, ticks, hz = sys.argv[1:7]
try:
    j = json.loads(text)
except ValueError:
    print(f"{run}\t{mode}\t0\t0\t0\t{count}\t0\terror\t0")
    sys.exit(0)
lat = j["latency_us"]
cpu_us = int(ticks) * 1e6 / int(hz) / max(1, j["messages"])
print(f"{run}\t{mode}\t{j['messages_per_s']:.0f}\t{lat['p50']}\t{lat['p99']}\t{count}\t"
      f"{j['messages']}\t{j['errors']}\t{cpu_us:.1f}")
PY
  tail -1 "$RESULTS" | awk -F'\t' '{
    printf "run %s %-16s %8s msg/s  p50 %6s us  p99 %7s us  daemon CPU %5s us/msg", \
      $1, $2, $3, $4, $5, $9
    printf "  spooled %s / accepted %s, errors %s\n", $6, $7, $8 }'
}

echo "inject_vs_smtp: $RUNS runs × ${SECS}s, $CONNS connections, $SIZE-byte messages," \
     "ringmaild with $LOOPS loop(s); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$RUNS"); do
  # Rotate the order: run 1 smtp first, run 2 http_raw first, ...
  for i in 0 1 2; do
    run_cell "$run" "${MODES[$(( (i + run - 1) % 3 ))]}"
  done
done

python3 - "$RESULTS" "$RUNS" "$SECS" "$CONNS" "$SIZE" "$LOOPS" "$OUT" <<'PY'
import statistics, sys
path, runs, secs, conns, size, loops, out = sys.argv[1:8]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
def col(mode, i):
    return [float(r[i]) for r in by.get(mode, [])]
lines = []
lines.append(f"| mode | msgs/s median (min–max) | p50 latency ms | p99 latency ms | "
             f"ringmaild CPU µs/msg | spooled = accepted |")
lines.append("|---|---:|---:|---:|---:|---|")
names = {"smtp": "SMTP (ringload send)", "http_raw": "HTTP inject, raw content",
         "http_structured": "HTTP inject, structured (MIME built)"}
for mode in ("smtp", "http_raw", "http_structured"):
    v = col(mode, 2)
    if not v:
        continue
    ok = all(r[5] == r[6] for r in by[mode])
    lines.append(f"| {names[mode]} | {statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"
                 f" | {statistics.median(col(mode, 3)) / 1000:.2f} | "
                 f"{statistics.median(col(mode, 4)) / 1000:.2f} | "
                 f"{statistics.median(col(mode, 8)):.1f} | {'yes' if ok else 'NO'} |")
smtp = {r[0]: float(r[2]) for r in by.get("smtp", [])}
for mode in ("http_raw", "http_structured"):
    per_run = [float(r[2]) / smtp[r[0]] for r in by.get(mode, []) if smtp.get(r[0])]
    if per_run and smtp:
        med = statistics.median(col(mode, 2)) / statistics.median(smtp.values())
        lines.append("")
        lines.append(f"{names[mode]} / SMTP: ratio of medians {med:.2f}, median of per-run "
                     f"ratios {statistics.median(per_run):.2f} (per run: "
                     + ", ".join(f"{x:.2f}" for x in per_run) + ")")
text = "\n".join(lines)
print()
print(text)
if out:
    with open(out, "w") as f:
        f.write(text + "\n")
PY
