#!/usr/bin/env bash
# bench/one_session_placement.sh — issue #3 at 1 session: how much of a message's time is the
# placement of client and server on the CPUs, and how much is the spool's durable write.
#
#   bench/one_session_placement.sh [--build DIR] [--runs N] [--messages N]
#
# One session (`smtp-source -s 1 -d`, 1 KiB) against smtp-sink pinned to CPU 0 and against
# ringmaild on one loop (pinned to CPU 0 by pin_event_loops), its spool on disk (under
# var/) or on tmpfs (/dev/shm: NOT durable, a diagnostic), with smtp-source pinned to CPU 0
# (the server's), to CPU 1, or left to the scheduler. Cells are interleaved per run. For
# ringmaild it also prints the means of the spool latency histograms from its metrics page
# (ringmail_spool_sync_seconds: the disk's part; ringmail_spool_commit_seconds: what each
# 250 waited for the spool). Everything listens on 127.0.0.1; every client is bounded by
# timeout; every server started is stopped.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=3
N=10000
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --messages) N=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--messages N]" >&2; exit 2 ;;
  esac
done
need_ringmaild "$BUILD"
command -v smtp-source >/dev/null || { echo "needs smtp-source (postfix)" >&2; exit 2; }
[[ $(nproc) -ge 2 ]] || { echo "needs 2 CPUs" >&2; exit 2; }

mkdir -p "$ROOT/var"
WORK=$(mktemp -d /tmp/one_session_placement.XXXXXX)
DISK=$(mktemp -d "$ROOT/var/one_session_placement.XXXXXX")
SHM=$(mktemp -d /dev/shm/one_session_placement.XXXXXX)
SERVER_PID=""
cleanup() {
  stop_pid "$SERVER_PID"
  rm -rf "$WORK" "$DISK" "$SHM"
}
trap cleanup EXIT

# client PLACEMENT PORT: prints msg/s (PLACEMENT: a CPU number, or "free").
client() {
  local pre=() t0 t1
  [[ $1 != free ]] && pre=(taskset -c "$1")
  t0=$(date +%s%N)
  timeout 300 "${pre[@]}" smtp-source -s 1 -m "$N" -l 1024 -d -M bench.test -f a@b.test \
    -t rcpt@bench.test "127.0.0.1:$2" >/dev/null 2>&1 || { echo "failed"; return; }
  t1=$(date +%s%N)
  awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / ((b - a) / 1e9) }'
}

sink_cell() {
  local port
  port=$(free_port)
  taskset -c 0 smtp-sink -u nobody -m 1100 "127.0.0.1:$port" 2048 >/dev/null 2>&1 &
  SERVER_PID=$!
  wait_port "$port" 100 || { echo "smtp-sink did not start"; exit 1; }
  echo "$(client "$1" "$port")"
  stop_pid "$SERVER_PID"; SERVER_PID=""
}

# rm_cell SPOOLROOT PLACEMENT: "msg/s sync_mean_us commit_mean_us"
rm_cell() {
  local port dir=$WORK/rm started
  port=$(free_port)
  rm -rf "$dir" "$1/spool"
  start_bench_ringmaild "$BUILD" "$dir" "$1" 1 "$port"
  started=$?
  SERVER_PID=$BENCH_DAEMON_PID
  [[ $started -eq 0 ]] || exit 1
  local rate
  rate=$(client "$2" "$port")
  "$RINGCTL" --socket "$dir/control.sock" metrics |
    awk -v r="$rate" '/^ringmail_spool_(sync|commit)_seconds_(sum|count)/ {
        split($1, a, "{"); v[a[1]] += $2 }
      END { s = v["ringmail_spool_sync_seconds_count"]; c = v["ringmail_spool_commit_seconds_count"]
        printf "%s %.0f %.0f", r, s ? v["ringmail_spool_sync_seconds_sum"] / s * 1e6 : 0,
               c ? v["ringmail_spool_commit_seconds_sum"] / c * 1e6 : 0 }'
  echo
  stop_pid "$SERVER_PID"; SERVER_PID=""
}

declare -A R
for _ in $(seq "$RUNS"); do
  for pl in 0 1 free; do
    R[sink,$pl]+="$(sink_cell "$pl")|"
    R[tmpfs,$pl]+="$(rm_cell "$SHM" "$pl")|"
    R[disk,$pl]+="$(rm_cell "$DISK" "$pl")|"
  done
done
echo "one session, 1 KiB, $N messages a cell, $RUNS runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| server | client | msg/s per run | spool sync/commit mean µs, per run |"
echo "| --- | --- | --- | --- |"
for srv in sink tmpfs disk; do
  for pl in 0 1 free; do
    IFS='|' read -r -a cells <<< "${R[$srv,$pl]}"
    rates="" lat=""
    for c in "${cells[@]}"; do
      read -r r s m <<< "$c"
      rates+="${rates:+ / }$r"
      [[ -n ${s:-} ]] && lat+="${lat:+ · }$s/$m"
    done
    name=$srv; [[ $srv == sink ]] && name="smtp-sink (CPU 0)"
    [[ $srv == tmpfs ]] && name="ringmaild, tmpfs spool (not durable)"
    [[ $srv == disk ]] && name="ringmaild, disk spool"
    echo "| $name | ${pl/free/free} | $rates | ${lat:--} |"
  done
done
