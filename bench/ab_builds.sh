#!/usr/bin/env bash
# bench/ab_builds.sh — two builds of ringmaild side by side on one smtp-source load: interleaved
# pairs, each run's msg/s, the daemon's CPU per message, its spool batches and sync latency.
#
#   bench/ab_builds.sh --a DIR --b DIR [--pairs 5] [--sessions 10] [--messages 20000]
#                      [--size 1024] [--spool disk|tmpfs] [--new-connections] [--loops N]
#                      [--a-loops N] [--b-loops N] [--a-conf LINES] [--b-conf LINES]
#
# Why: a change to the data path is judged against the build before it, on the same machine
# minutes apart, since this machine's absolute rates move by 30% within an hour. Each pair
# runs A then B with a fresh spool and daemon each, so neither inherits the other's page
# cache or segments. Per run it prints what the load gives (msg/s at the client) and what the
# daemon paid (user+system CPU of all its threads, io-wq workers included, per message; from
# its metrics page: messages per spool batch and the mean of ringmail_spool_sync_seconds),
# then the medians and the ratio B / A of the medians.
# A and B are build directories (DIR/tools/ringmaild/ringmaild and DIR/tools/ringctl/ringctl);
# each daemon runs --loops loops (default_loops; the test license when more than one;
# --a-loops and --b-loops set one side's, so one build against itself compares loop counts),
# the recipients' domain suspended as in run_matrix.sh, its spool under var/ (disk) or
# /dev/shm (tmpfs, not durable). --a-conf and --b-conf add global config lines to one side
# (e.g. --b-conf 'spool_segment_fill = "zeros"'), so one build against itself compares
# settings.
# Loopback only; every client is bounded by timeout; every daemon is stopped.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
A="" B=""
PAIRS=5
SESSIONS=10
N=20000
SIZE=1024
SPOOL=disk
REUSE=-d
LOOPS=$(default_loops)
A_LOOPS="" B_LOOPS=""
A_CONF="" B_CONF=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    --pairs) PAIRS=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --messages) N=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --spool) SPOOL=$2; shift 2 ;;
    --new-connections) REUSE=""; shift ;;
    --loops) LOOPS=$2; shift 2 ;;
    --a-loops) A_LOOPS=$2; shift 2 ;;
    --b-loops) B_LOOPS=$2; shift 2 ;;
    --a-conf) A_CONF=$2; shift 2 ;;
    --b-conf) B_CONF=$2; shift 2 ;;
    *) echo "usage: $0 --a DIR --b DIR [--pairs N] [--sessions N] [--messages N] [--size B]" \
            "[--spool disk|tmpfs] [--new-connections] [--loops N] [--a-loops N]" \
            "[--b-loops N] [--a-conf LINES] [--b-conf LINES]" >&2; exit 2 ;;
  esac
done
[[ -n $A && -n $B ]] || { echo "--a and --b (build directories) are both needed" >&2; exit 2; }
A_LOOPS=${A_LOOPS:-$LOOPS}
B_LOOPS=${B_LOOPS:-$LOOPS}
need_ringmaild "$A"
need_ringmaild "$B"
[[ $SPOOL == disk || $SPOOL == tmpfs ]] || { echo "--spool disk|tmpfs" >&2; exit 2; }
command -v smtp-source >/dev/null || { echo "needs smtp-source (postfix)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/ab_builds.XXXXXX)
DAEMON_PID=""
SPOOL_DIR=""
cleanup() {
  stop_pid "$DAEMON_PID" 30
  rm -rf "$WORK" "$SPOOL_DIR"
}
trap cleanup EXIT
TICKS=$(getconf CLK_TCK)

# run LABEL BUILD LOOPS CONF: one daemon, one smtp-source load; prints a TSV line
# "label msg/s cpu_us_per_msg msgs_per_batch sync_mean_us".
run() {
  local label=$1 build=$2 loops=$3 conf=$4 port c0 c1 t0 t1
  if [[ $SPOOL == disk ]]; then
    mkdir -p "$ROOT/var"
    SPOOL_DIR=$(mktemp -d "$ROOT/var/ab_builds.XXXXXX")
  else
    SPOOL_DIR=$(mktemp -d /dev/shm/ab_builds.XXXXXX)
  fi
  port=$(free_port)
  rm -rf "$WORK/d"
  start_bench_ringmaild "$build" "$WORK/d" "$SPOOL_DIR" "$loops" "$port" "$conf"
  local started=$?
  DAEMON_PID=$BENCH_DAEMON_PID
  [[ $started -eq 0 ]] || { echo "$label: no daemon" >&2; return 1; }
  c0=$(awk '{ print $14 + $15 }' "/proc/$DAEMON_PID/stat")
  t0=$(date +%s%N)
  # shellcheck disable=SC2086  # $REUSE: -d or nothing
  timeout 300 smtp-source -s "$SESSIONS" -m "$N" -l "$SIZE" $REUSE -M bench.test \
    -f bench@ringload.test -t rcpt@bench.test "127.0.0.1:$port" >/dev/null 2>&1 ||
    echo "$label: smtp-source failed" >&2
  t1=$(date +%s%N)
  c1=$(awk '{ print $14 + $15 }' "/proc/$DAEMON_PID/stat")
  "$build/tools/ringctl/ringctl" --socket "$WORK/d/control.sock" metrics > "$WORK/d/metrics"
  stop_pid "$DAEMON_PID" 30
  DAEMON_PID=""
  rm -rf "$SPOOL_DIR"
  # The file system is mounted with online discard on these machines: the freed blocks are
  # discarded at the next journal commit, which would otherwise be the next run's first sync.
  sync -f "$(dirname "$SPOOL_DIR")"
  SPOOL_DIR=""
  awk -v l="$label" -v n="$N" -v a="$t0" -v b="$t1" -v c="$((c1 - c0))" -v k="$TICKS" '
    /^ringmail_spool_batches_total/ { batches += $2 }
    /^ringmail_spool_sync_seconds_sum/ { sum += $2 }
    /^ringmail_spool_sync_seconds_count/ { count += $2 }
    END {
      printf "%s\t%.0f\t%.1f\t%.2f\t%.0f\n", l, n / ((b - a) / 1e9), c / k / n * 1e6,
        batches ? n / batches : 0, count ? sum / count * 1e6 : 0
    }' "$WORK/d/metrics"
}

echo "A = $A ($A_LOOPS loop(s))${A_CONF:+ [$A_CONF]}," \
  "B = $B ($B_LOOPS loop(s))${B_CONF:+ [$B_CONF]}:" \
  "smtp-source -s $SESSIONS -m $N -l $SIZE${REUSE:+ -d}," \
  "spool on $SPOOL, $PAIRS interleaved pairs"
printf 'build\tmsg/s\tcpu_us/msg\tmsgs/batch\tsync_mean_us\n'
for _ in $(seq "$PAIRS"); do
  run A "$A" "$A_LOOPS" "$A_CONF"
  run B "$B" "$B_LOOPS" "$B_CONF"
done | tee "$WORK/runs.tsv"
awk -F'\t' '
  function med(s,   a, n, i, j, t) {
    n = split(substr(s, 2), a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) {
      t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { for (f = 2; f <= 5; f++) v[$1, f] = v[$1, f] " " $f }
  END {
    split("msg/s cpu_us/msg msgs/batch sync_mean_us", name, " ")
    for (f = 2; f <= 5; f++) {
      a = med(v["A", f]); b = med(v["B", f])
      printf "median %s: A %s, B %s, B/A %.2f\n", name[f - 1], a, b, a ? b / a : 0
    }
  }' "$WORK/runs.tsv"
