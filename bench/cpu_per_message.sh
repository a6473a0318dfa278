#!/usr/bin/env bash
# bench/cpu_per_message.sh — CPU time per accepted message, ringmaild vs Postfix (and
# smtp-sink, which keeps nothing: the floor of an SMTP server's cost), counted by the kernel
# for every thread and process of each (a cpuacct cgroup each, so Postfix's
# smtpd/cleanup/... processes are all counted, also those that exit during the run).
#
#   bench/cpu_per_message.sh [--build DIR] [--runs N] [--sizes "1024 102400"]
#                            [--conns "10 100"] [--loops N] [--new-connections]
#
# Why: on this shared 2-CPU machine the other engineers' builds take most of the CPU, and a
# throughput ratio then mostly measures how the scheduler shares the CPUs (Postfix's many
# processes get more shares than ringmaild's two loop threads). CPU time per message is what
# decides throughput once the CPUs are ours; it does not depend on the load the way wall
# time does. Each run: `smtp-source -d` sends N messages over C connections into the MTA
# (ringmaild: --loops loops, default_loops, recipients' domain suspended; Postfix: hold
# queue, as in bench/run_matrix.sh), the cgroup's cpuacct.usage before and after, divided
# by N.
# --new-connections: smtp-source without -d, a new connection per message, so the difference
# to a run without it is what a connection costs each server.
# Needs root and the cgroup v1 cpuacct hierarchy at /sys/fs/cgroup/cpuacct. Loopback only.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=3
SIZES="1024 102400"
CONNS="10 100"
LOOPS=$(default_loops)
REUSE=-d
CG=/sys/fs/cgroup/cpuacct

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    --new-connections) REUSE=""; shift ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--sizes LIST] [--conns LIST] [--loops N]" \
            "[--new-connections]" >&2
       exit 2 ;;
  esac
done
need_ringmaild "$BUILD"
[[ -d $CG ]] || { echo "no cpuacct cgroup hierarchy at $CG" >&2; exit 2; }

WORK=$(mktemp -d /tmp/cpu_per_message.XXXXXX)
chmod 755 "$WORK"
NAME=$(basename "$WORK")
CG_R=$CG/$NAME-ringmaild
CG_P=$CG/$NAME-postfix
CG_S=$CG/$NAME-smtp-sink
mkdir "$CG_R" "$CG_P" "$CG_S"
DAEMON_PID=""
SINK_PID=""
POSTFIX_DIR=""

cleanup() {
  stop_pid "$DAEMON_PID" 30
  stop_pid "$SINK_PID" 30
  [[ -n $POSTFIX_DIR ]] && "$ROOT/bench/postfix_setup.sh" stop "$POSTFIX_DIR"
  # The cgroups can go once their processes have (Postfix's exit shortly after the stop).
  for _ in $(seq 50); do
    rmdir "$CG_R" "$CG_P" "$CG_S" 2>/dev/null
    [[ -d $CG_R || -d $CG_P || -d $CG_S ]] || break
    sleep 0.2
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Postfix, started from a shell inside its cgroup: master and every child it forks stay in it.
POSTFIX_DIR=$WORK/postfix
P_PORT=$(free_port)
sh -c "echo \$\$ > $CG_P/cgroup.procs && exec $ROOT/bench/postfix_setup.sh start $POSTFIX_DIR $P_PORT" \
  || { echo "postfix did not start" >&2; POSTFIX_DIR=""; exit 1; }

R_PORT=$(free_port)
mkdir -p "$WORK/r/spool" "$WORK/r/log"
cat > "$WORK/r/ringmaild.conf" <<CONF
spool_dir = "$WORK/r/spool"
log_dir = "$WORK/r/log"
$(loops_conf "$LOOPS" esmtp delivery)
$(esmtp_listener_conf "$LOOPS" "$R_PORT" 4000)
Control_Listener { Listen "$WORK/r/control.sock" { } }
CONF
sh -c "echo \$\$ > $CG_R/cgroup.procs && exec $RINGMAILD --config $WORK/r/ringmaild.conf" \
  > "$WORK/r/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_port "$R_PORT" || { echo "ringmaild did not start" >&2; cat "$WORK/r/daemon.log" >&2; exit 1; }
wait_socket "$WORK/r/control.sock"
"$RINGCTL" --socket "$WORK/r/control.sock" domain suspend bench.test >/dev/null

# smtp-sink in its own cgroup (it runs as nobody: the work directory must be readable).
S_PORT=$(free_port)
sh -c "echo \$\$ > $CG_S/cgroup.procs && exec smtp-sink -u nobody 127.0.0.1:$S_PORT 4000" \
  > "$WORK/sink.log" 2>&1 &
SINK_PID=$!
wait_port "$S_PORT" || { echo "smtp-sink did not start" >&2; exit 1; }

count_for() {  # SIZE
  case $1 in 1024) echo 4000 ;; 10240) echo 2000 ;; *) echo 600 ;; esac
}

# one SYSTEM PORT CGROUP SIZE CONNS RUN → "cpu_us_per_msg msgs_per_s"
one() {
  local system=$1 port=$2 cg=$3 size=$4 conns=$5 run=$6 n u0 u1 t0 t1
  n=$(count_for "$size")
  u0=$(cat "$cg/cpuacct.usage")
  t0=$(date +%s%N)
  # shellcheck disable=SC2086  # $REUSE: -d or nothing
  timeout 300 smtp-source -s "$conns" -m "$n" -l "$size" $REUSE -M bench.test \
    -f bench@ringload.test -t rcpt@bench.test "127.0.0.1:$port" >/dev/null 2>&1 \
    || echo "  ($system size=$size conns=$conns run $run: smtp-source failed)"
  t1=$(date +%s%N)
  sleep 0.5  # Postfix's qmgr/cleanup finish the last messages' bookkeeping
  u1=$(cat "$cg/cpuacct.usage")
  awk -v s="$system" -v z="$size" -v c="$conns" -v r="$run" -v n="$n" -v u="$((u1 - u0))" \
    -v t="$((t1 - t0))" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "%s\t%s\t%s\t%s\t%d\t%.1f\t%.0f\t%s\n", s, z, c, r, n, u / 1000 / n, n / (t / 1e9), l }'
}

echo -e "system\tsize\tconns\trun\tmessages\tcpu_us_per_msg\tmsgs_per_s\tload"
for run in $(seq "$RUNS"); do
  for size in $SIZES; do
    for conns in $CONNS; do
      one ringmaild "$R_PORT" "$CG_R" "$size" "$conns" "$run"
      one postfix "$P_PORT" "$CG_P" "$size" "$conns" "$run"
      one smtp-sink "$S_PORT" "$CG_S" "$size" "$conns" "$run"
    done
  done
done | tee "$WORK/runs.tsv"
echo
echo "median CPU per message (µs), $([[ -n $REUSE ]] && echo "reused connections" ||
  echo "a new connection per message"), and ratios:"
echo "| size | connections | ringmaild µs/msg | Postfix µs/msg | smtp-sink µs/msg |" \
  "Postfix / ringmaild | ringmaild / smtp-sink |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
awk -F'\t' '$1 != "system" { k = $2 "\t" $3; v[$1 "\t" k] = v[$1 "\t" k] " " $6; keys[k] = 1 }
  function med(s,   a, n, i, j, t) {
    n = split(substr(s, 2), a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) {
      t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    for (k in keys) {
      split(k, p, "\t"); r = med(v["ringmaild\t" k]); q = med(v["postfix\t" k])
      z = med(v["smtp-sink\t" k])
      printf "| %s | %s | %.1f | %.1f | %.1f | %.1f× | %.2f× |\n", p[1], p[2], r, q, z, q / r,
        r / z
    }
  }' "$WORK/runs.tsv" | sort -t'|' -k2n -k3n
mkdir -p "$ROOT/bench/results"
cp "$WORK/runs.tsv" \
  "$ROOT/bench/results/cpu_per_message$([[ -n $REUSE ]] || echo _newconn).tsv"
