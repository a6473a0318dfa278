#!/usr/bin/env bash
# bench/sync_trace.sh — where a spool batch's durable write spends its time: the disk, or the
# hand-offs between the loop, its io-wq worker and the block layer.
#
#   bench/sync_trace.sh [--build DIR] [--sessions 1] [--messages 20000] [--size 1024]
#                       [--new-connections] [--seconds 1]
#
# Why: ringmail_spool_sync_seconds times a batch from its submission to its completion on the
# loop, which is more than the disk's own time. Kernel tracepoints split it (bench/lib/
# sync_phases.py): the io-wq hand-off, the buffered write, the device's write, the worker's
# wake-up, the cache flush, the device's flush and the way back to the loop. The device's
# two requests are the floor no change to ringmaild can go under on this machine (the
# virtual disk has a write-back cache and no FUA, so a durable write is a write then a
# flush); the rest is scheduling, which depends on how busy the loop's CPU is.
# One ringmaild loop (the block events carry no ring, so two loops' batches would mix), its
# spool under var/ (disk), the recipients' domain suspended as in run_matrix.sh; smtp-source
# sends --messages over --sessions connections (-d unless --new-connections) and, after one
# second, `perf record -a` takes --seconds of io_uring, block and sched events. Tracing costs
# time of its own: the phases are for comparing with each other, not absolute figures.
# Needs root and perf (linux-perf); smtp-source (postfix). Loopback only; the client is
# bounded by timeout and the daemon stopped.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
SESSIONS=1
N=20000
SIZE=1024
REUSE=-d
SECONDS_TRACED=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --messages) N=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --new-connections) REUSE=""; shift ;;
    --seconds) SECONDS_TRACED=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--sessions N] [--messages N] [--size B]" \
            "[--new-connections] [--seconds S]" >&2; exit 2 ;;
  esac
done
need_ringmaild "$BUILD"
command -v smtp-source >/dev/null || { echo "needs smtp-source (postfix)" >&2; exit 2; }
command -v perf >/dev/null || { echo "needs perf (linux-perf)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/sync_trace.XXXXXX)
mkdir -p "$ROOT/var"
SPOOL_DIR=$(mktemp -d "$ROOT/var/sync_trace.XXXXXX")
DAEMON_PID=""
CLIENT_PID=""
cleanup() {
  [[ -z $CLIENT_PID ]] || kill "$CLIENT_PID" 2>/dev/null
  stop_pid "$DAEMON_PID" 30
  rm -rf "$WORK" "$SPOOL_DIR"
}
trap cleanup EXIT

PORT=$(free_port)
start_bench_ringmaild "$BUILD" "$WORK/d" "$SPOOL_DIR" 1 "$PORT" || exit 1
DAEMON_PID=$BENCH_DAEMON_PID
echo "ringmaild (1 loop), smtp-source -s $SESSIONS -m $N -l $SIZE${REUSE:+ -d}, spool on disk;" \
  "$SECONDS_TRACED s traced after 1 s"
# shellcheck disable=SC2086  # $REUSE: -d or nothing
timeout 300 smtp-source -s "$SESSIONS" -m "$N" -l "$SIZE" $REUSE -M bench.test \
  -f bench@ringload.test -t rcpt@bench.test "127.0.0.1:$PORT" >/dev/null 2>&1 &
CLIENT_PID=$!
sleep 1  # past the start: the first segment's creation is not what is measured
kill -0 "$CLIENT_PID" 2>/dev/null || { echo "the load ended before the trace: raise --messages" >&2
  exit 1; }
perf record -q -a -o "$WORK/perf.data" \
  -e io_uring:io_uring_queue_async_work,io_uring:io_uring_complete \
  -e block:block_rq_issue,sched:sched_switch,sched:sched_wakeup \
  -- sleep "$SECONDS_TRACED" 2>/dev/null || { echo "perf record failed" >&2; exit 1; }
kill -0 "$CLIENT_PID" 2>/dev/null ||
  echo "note: the load ended during the trace (raise --messages for a whole window)" >&2
kill "$CLIENT_PID" 2>/dev/null  # the rest of the load is not needed
wait "$CLIENT_PID" 2>/dev/null
CLIENT_PID=""
perf script -i "$WORK/perf.data" > "$WORK/perf.txt" 2>/dev/null
python3 "$ROOT/bench/lib/sync_phases.py" "$WORK/perf.txt"
