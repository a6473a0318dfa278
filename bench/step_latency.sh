#!/usr/bin/env bash
# bench/step_latency.sh — where an SMTP session's time goes, step by step, ringmaild beside
# smtp-sink: a loopback packet capture of one smtp-source session, and the median time each
# server takes to answer each step (SYN → banner, HELO, MAIL, RCPT, DATA, end of data, QUIT).
#
#   bench/step_latency.sh [--build DIR] [--messages N] [--spool disk|tmpfs] [--reused]
#                         [--loops N]
#
# Why: a throughput ratio says how far apart two servers are, not at which step. Timing the
# packets on the wire (tcpdump on lo, headers only) measures each reply from outside the
# servers, the same way for both, without tracing either process. Session 8 used it to
# find that ringmaild answers every step of a new connection as fast as smtp-sink except the
# end of data (the spool write), so the rest of the new-connection gap is not in the
# protocol path (bench/RESULTS.md, "Session 8").
# One session, 1 KiB, a new connection per message (default) or one reused connection
# (--reused, smtp-source -d). ringmaild: --loops event loops (default_loops),
# its spool under var/ (disk, default) or on /dev/shm (tmpfs: not durable, a diagnostic),
# the recipients' domain suspended as in run_matrix.sh. The capture costs both servers the
# same; absolute times are higher than without it.
# Needs root (tcpdump), smtp-source and smtp-sink (postfix), python3; installs tcpdump with
# apt-get when missing. Listens on 127.0.0.1 only; every client is bounded by timeout and
# every process started is stopped.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
N=2000
SPOOL=disk
REUSE=""
LOOPS=$(default_loops)
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --messages) N=$2; shift 2 ;;
    --spool) SPOOL=$2; shift 2 ;;
    --reused) REUSE=-d; shift ;;
    --loops) LOOPS=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--messages N] [--spool disk|tmpfs] [--reused]" \
            "[--loops N]" >&2; exit 2 ;;
  esac
done
[[ $SPOOL == disk || $SPOOL == tmpfs ]] || { echo "--spool disk|tmpfs" >&2; exit 2; }
need_ringmaild "$BUILD"
command -v smtp-source >/dev/null || { echo "needs smtp-source (postfix)" >&2; exit 2; }
if ! command -v tcpdump >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null ||
    { echo "needs tcpdump" >&2; exit 2; }
fi

WORK=$(mktemp -d /tmp/step_latency.XXXXXX)
chmod 755 "$WORK"  # smtp-sink runs as nobody
if [[ $SPOOL == disk ]]; then
  mkdir -p "$ROOT/var"
  SPOOL_DIR=$(mktemp -d "$ROOT/var/step_latency.XXXXXX")
else
  SPOOL_DIR=$(mktemp -d /dev/shm/step_latency.XXXXXX)
fi
SERVER_PID=""
DUMP_PID=""
cleanup() {
  stop_pid "$DUMP_PID" 10
  stop_pid "$SERVER_PID" 30
  rm -rf "$WORK" "$SPOOL_DIR"
}
trap cleanup EXIT

MODE=new
[[ -z $REUSE ]] || MODE=reused

# capture LABEL PORT: one smtp-source session against 127.0.0.1:PORT under tcpdump, then the
# per-step medians.
capture() {
  local label=$1 port=$2
  tcpdump -i lo -n -s 128 -U -w "$WORK/$label.pcap" "tcp port $port" 2>"$WORK/tcpdump.err" &
  DUMP_PID=$!
  wait_line "$WORK/tcpdump.err" "tcpdump: listening on" 100 "$DUMP_PID" >/dev/null ||
    { echo "tcpdump did not start" >&2; return 1; }
  # shellcheck disable=SC2086  # $REUSE: -d or nothing
  timeout 300 smtp-source -s 1 -m "$N" -l 1024 $REUSE -M bench.test -f bench@ringload.test \
    -t rcpt@bench.test "127.0.0.1:$port" >/dev/null 2>&1 || echo "$label: smtp-source failed" >&2
  stop_pid "$DUMP_PID" 10
  DUMP_PID=""
  tcpdump -n -tt -r "$WORK/$label.pcap" 2>/dev/null |
    python3 "$ROOT/bench/lib/smtp_steps.py" "$port" "$label" "$MODE"
}

echo "One smtp-source session, $N messages of 1 KiB, $MODE connections; ringmaild on" \
  "$LOOPS loop(s), spool on $SPOOL."

PORT=$(free_port)
smtp-sink -u nobody "127.0.0.1:$PORT" 100 > "$WORK/sink.log" 2>&1 &
SERVER_PID=$!
wait_port "$PORT" 100 || { echo "smtp-sink did not start" >&2; exit 1; }
capture smtp-sink "$PORT"
stop_pid "$SERVER_PID" 30
SERVER_PID=""

PORT=$(free_port)
start_bench_ringmaild "$BUILD" "$WORK/ringmaild" "$SPOOL_DIR" "$LOOPS" "$PORT"
started=$?
SERVER_PID=$BENCH_DAEMON_PID
[[ $started -eq 0 ]] || exit 1
capture ringmaild "$PORT"
