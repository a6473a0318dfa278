#!/usr/bin/env bash
# bench/profile_accept.sh — per-message costs of ringmaild under a fixed load, measured with
# tools that do not depend on the machine's load (instructions, syscalls, context switches),
# so they can be compared before/after a change on a busy shared machine.
#
#   bench/profile_accept.sh [--build DIR] [--loops N] [--messages N] [--size BYTES]
#                           [--connections N] [--pipelining] [--relay [--domains N]]
#                           [--tool perfstat|strace|record|none] [--out DIR]
#                           [--config-extra 'global config lines']
#
# Starts ringmaild on a fresh spool in a temporary directory (licensed by the test license in
# tests/testdata/license when --loops > 1, as the integration tests do), waits for it to be
# ready, attaches the tool to the running daemon (start-up is not counted), sends N messages
# with `ringload send`, detaches and prints the cost divided by N. --relay also starts a
# `ringload sink` and routes every domain to it (default_route), waiting until the sink has
# received all N messages before detaching: the figures then cover accept + deliver.
#   perfstat   perf stat --per-thread: context switches, task-clock and ring requests (submitted,
#              handed to io-wq) of every daemon thread
#   strace     strace -c -f: syscall counts by name (ring submissions show as io_uring_enter)
#   uring      perf record of the io_uring tracepoints: ring requests per message by opcode,
#              and how many of them went to io-wq workers (queue_async_work)
#   record     perf record -g (cpu-clock sampling, user + kernel) into --out/perf.data
# No instruction counts: this VM exposes no PMU (perf's instructions event is "not
# supported"), and valgrind 3.19 cannot run the daemon (its io_uring_enter wrapper is not
# marked blocking, so a loop waiting on its ring holds valgrind's lock and start-up hangs).
# CPU time per message (task-clock) is the cost figure; it is per process, not wall clock.
# Everything listens on and connects to 127.0.0.1 only; every step is bounded by timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
LOOPS=2
MESSAGES=20000
SIZE=1024
CONNS=10
PIPELINING=""
RELAY=0
TOOL=perfstat
OUT=""
EXTRA=""
DOMAINS=1

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --pipelining) PIPELINING=--pipelining; shift ;;
    --relay) RELAY=1; shift ;;
    --domains) DOMAINS=$2; shift 2 ;;
    --tool) TOOL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --config-extra) EXTRA=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--loops N] [--messages N] [--size BYTES]" \
            "[--connections N] [--pipelining] [--relay] [--tool perfstat|strace|uring|record|none]" \
            "[--out DIR]" >&2; exit 2 ;;
  esac
done

RINGLOAD=${RINGLOAD:-$BUILD/tools/ringload/ringload}
RINGMAILD=${RINGMAILD:-$BUILD/tools/ringmaild/ringmaild}
RINGCTL=$BUILD/tools/ringctl/ringctl
for b in "$RINGLOAD" "$RINGMAILD" "$RINGCTL"; do
  [[ -x $b ]] || { echo "missing $b: build ringmaild and ringload first" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/profile_accept.XXXXXX)
[[ -n $OUT ]] || OUT=$WORK/out
mkdir -p "$OUT"
DAEMON_PID=""
SINK_PID=""
TOOL_PID=""

cleanup() {
  if [[ -n $TOOL_PID ]]; then kill -INT "$TOOL_PID" 2>/dev/null || true; fi
  stop_pid "$DAEMON_PID"
  if [[ -n $SINK_PID ]]; then kill -TERM "$SINK_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$WORK/spool"
  rm -rf "$WORK"
}
trap cleanup EXIT

# Sink (relay mode): counts what arrives.
ROUTE=""
if [[ $RELAY -eq 1 ]]; then
  ringload_sink_start "$WORK/sink.out" --expect "$MESSAGES" --quiet ||
    { echo "ringload sink did not start" >&2; exit 1; }
  ROUTE="default_route = \"[127.0.0.1]:$SINK_PORT\""
fi

PORT=$(free_port)
mkdir -p "$WORK/spool" "$WORK/log"
LOOPS_CONF=$(loops_conf "$LOOPS" esmtp delivery)
LISTENER_LOOP=""
if [[ $LOOPS -gt 1 ]]; then LISTENER_LOOP='event_loop = "esmtp"'; fi
cat > "$WORK/ringmaild.conf" <<CONF
spool_dir = "$WORK/spool"
log_dir = "$WORK/log"
$LOOPS_CONF
$ROUTE
$EXTRA
ESMTP_Listener {
  $LISTENER_LOOP
  max_connections = 4000
  max_connections_per_ip = 4000
  relay_hosts = ( "127.0.0.0/8" )
  Listen "127.0.0.1:$PORT" { }
}
Control_Listener { Listen "$WORK/control.sock" { } }
CONF

"$RINGMAILD" --config "$WORK/ringmaild.conf" > "$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_port "$PORT" 600 || { echo "ringmaild did not start:"; cat "$WORK/daemon.log"; exit 1; } >&2
if [[ $RELAY -eq 0 ]]; then
  # Acceptance only: the recipients' domain is suspended, so accepted mail stays queued
  # (as Postfix's hold queue does in bench/postfix_setup.sh) instead of being tried and
  # bounced for want of a route, which would add delivery work to the figures.
  wait_socket "$WORK/control.sock"
  "$RINGCTL" --socket "$WORK/control.sock" domain suspend bench.test >/dev/null
fi

case $TOOL in
  perfstat)
    perf stat --per-thread -e context-switches,task-clock,io_uring:io_uring_submit_req,io_uring:io_uring_queue_async_work,io_uring:io_uring_poll_arm -p "$DAEMON_PID" \
      -o "$OUT/perfstat.txt" &
    TOOL_PID=$!
    ;;
  strace)
    strace -c -f -p "$DAEMON_PID" -o "$OUT/strace.txt" 2>/dev/null &
    TOOL_PID=$!
    ;;
  uring)
    perf record -e io_uring:io_uring_submit_req,io_uring:io_uring_queue_async_work \
      -p "$DAEMON_PID" -o "$OUT/uring.data" 2>/dev/null &
    TOOL_PID=$!
    ;;
  record)
    perf record -g -e cpu-clock -F 2000 -p "$DAEMON_PID" -o "$OUT/perf.data" 2>/dev/null &
    TOOL_PID=$!
    ;;
esac
sleep 1  # the tool attaches

# Acceptance: every recipient in the suspended bench.test; relay: ringload's own domains.
if [[ $RELAY -eq 0 ]]; then
  RCPT_ARGS="--rcpt-template user{n}@bench.test"
else
  RCPT_ARGS="--domains $DOMAINS"
fi
t0=$(date +%s%N)
timeout 600 "$RINGLOAD" send --target "127.0.0.1:$PORT" --messages "$MESSAGES" --size "$SIZE" \
  --connections "$CONNS" $RCPT_ARGS $PIPELINING --quiet --json --timeout 600 > "$OUT/send.json" 2>&1 \
  || { echo "ringload send failed:"; cat "$OUT/send.json"; } >&2
if [[ $RELAY -eq 1 ]]; then
  # Delivered when the sink has answered every message: --expect makes it exit then.
  timeout 600 tail --pid="$SINK_PID" -f /dev/null || echo "sink did not get every message" >&2
  SINK_PID=""
fi
t1=$(date +%s%N)

if [[ -n ${KEEP_METRICS:-} ]]; then
  "$RINGCTL" --socket "$WORK/control.sock" metrics > "$OUT/metrics.txt" 2>&1 || true
fi
case $TOOL in
  perfstat|strace|record|uring)
    kill -INT "$TOOL_PID"; wait "$TOOL_PID" 2>/dev/null || true; TOOL_PID="" ;;
esac

secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
echo "messages=$MESSAGES size=$SIZE connections=$CONNS loops=$LOOPS relay=$RELAY" \
  "pipelining=${PIPELINING:-no} wall=${secs}s ($(awk -v n="$MESSAGES" -v s="$secs" \
  'BEGIN { printf "%.0f", n / s }') msg/s, load $(cut -d' ' -f1-3 /proc/loadavg))"
case $TOOL in
  perfstat)
    # --per-thread lines: THREAD VALUE [msec] EVENT ...; summed over the threads.
    awk -v n="$MESSAGES" '$3 == "msec" && $4 == "task-clock" { gsub(",", "", $2); cpu += $2 }
      $3 ~ /^(context-switches|io_uring:)/ { gsub(",", "", $2); v[$3] += $2 }
      END {
        printf "  %-40s %12.1f ms total  %10.1f us per message\n", "task-clock", cpu, cpu * 1000 / n
        for (k in v) printf "  %-40s %14.0f total  %10.3f per message\n", k, v[k], v[k] / n
      }' \
      "$OUT/perfstat.txt"
    ;;
  strace)
    awk -v n="$MESSAGES" 'NF >= 5 && $1 ~ /^[0-9.]+$/ {
        name = $NF; calls = (NF == 6) ? $4 : $4
        printf "  %-20s %10d calls  %8.3f per message\n", name, calls, calls / n }' \
      "$OUT/strace.txt" | sort -k4 -rn
    ;;
  uring)
    # Ring requests by opcode: submitted, and those the kernel handed to an io-wq worker
    # (each such hand-off costs the worker thread a wake-up and context switches).
    perf script -i "$OUT/uring.data" -F event,trace 2>/dev/null |
      awk -v n="$MESSAGES" '{ ev = ($1 ~ /async/) ? "async" : "submit"
          op = "?"; for (i = 2; i <= NF; i++) if ($i ~ /^opcode/) { op = $i; if (op == "opcode") op = $(i + 1) }
          c[ev " " op]++ }
        END { for (k in c) printf "  %-40s %9d  %7.3f per message\n", k, c[k], c[k] / n }' | sort
    ;;
  record)
    perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
      | grep -v '^#' | grep '%' | head -40 > "$OUT/perf_top.txt" || true
    echo "  profile: $OUT/perf.data (top symbols in $OUT/perf_top.txt)"
    ;;
esac
