#!/usr/bin/env bash
# bench/relay_bench.sh — end-to-end relay throughput (issue #5), ringmaild and Postfix side by
# side in one run: `ringload send` injects N messages over C connections, the MTA relays
# every one to the same `ringload sink`, and a run's time is from the first injection to the
# sink's N-th answered message (the sink exits on --expect N).
#
#   bench/relay_bench.sh [--build DIR] [--runs N] [--sizes "102400"] [--messages N]
#                        [--connections 100] [--domains "1"] [--loops 2] [--systems
#                        "ringmaild postfix"] [--write]
#
# ringmaild: a fresh spool per run, `--loops` event loops (licensed by the test license in
# tests/testdata/license, as the integration tests do) that both accept and deliver
# (delivery_pool), default_route to the sink. Postfix: bench/postfix_setup.sh relay (stock
# smtp client concurrency and connection cache, relayhost = the sink, no DNS), started once.
# The same sink port is used by every run so that Postfix keeps one relayhost. Runs are
# interleaved (ringmaild, Postfix, ringmaild, ...) so a change in machine load hits both.
# Per run it records: injection time (ringload send's wall clock: the MTA's acceptance),
# end-to-end time, delivered counts; for ringmaild also the spool's size after the run
# (drained segments are unlinked: a few segments at most should remain).
# --write puts the table between the relay-bench markers of bench/RESULTS.md (the rest of
# the file is kept) and the raw runs in bench/results/relay_bench.tsv.
# Everything listens on and connects to 127.0.0.1 only; every step is bounded by timeout.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=3
SIZES="102400"
MESSAGES=""
CONNS=100
DOMAINS="1"
LOOPS=2
SYSTEMS="ringmaild postfix"
WRITE=0
STEP_TIMEOUT=300

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --domains) DOMAINS=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --write) WRITE=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--sizes LIST] [--messages N]" \
            "[--connections N] [--domains LIST] [--loops N] [--systems LIST] [--write]" >&2
       exit 2 ;;
  esac
done

RINGLOAD=${RINGLOAD:-$BUILD/tools/ringload/ringload}
RINGMAILD=${RINGMAILD:-$BUILD/tools/ringmaild/ringmaild}
RINGCTL=$BUILD/tools/ringctl/ringctl
for b in "$RINGLOAD" "$RINGMAILD" "$RINGCTL"; do
  [[ -x $b ]] || { echo "missing $b: build ringmaild, ringctl and ringload first" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/relay_bench.XXXXXX)
chmod 755 "$WORK"
TSV=$WORK/runs.tsv
NOTES=$WORK/notes.txt
: > "$TSV"
: > "$NOTES"
DAEMON_PID=""
SINK_PID=""
POSTFIX_DIR=""

cleanup() {
  stop_pid "$DAEMON_PID"
  stop_pid "$SINK_PID"
  [[ -n $POSTFIX_DIR ]] && "$ROOT/bench/postfix_setup.sh" stop "$POSTFIX_DIR"
  rm -rf "$WORK"
}
trap cleanup EXIT

count_for() {  # SIZE → messages per run: a few seconds of ringmaild, ~10-20 s of Postfix
  if [[ -n $MESSAGES ]]; then echo "$MESSAGES"; return; fi
  case $1 in
    1024) echo 10000 ;;
    10240) echo 6000 ;;
    *) echo 3000 ;;
  esac
}

SINK_PORT=$(free_port)
start_sink() {  # N: a sink on SINK_PORT that exits once N messages were answered
  "$RINGLOAD" sink --listen "127.0.0.1:$SINK_PORT" --expect "$1" --quiet --json \
    > "$WORK/sink.json" 2>&1 &
  SINK_PID=$!
  wait_port "$SINK_PORT"
}

start_ringmaild() {
  PORT=$(free_port)
  rm -rf "$WORK/ringmaild"
  mkdir -p "$WORK/ringmaild/spool" "$WORK/ringmaild/log"
  local loops
  loops=$(loops_conf "$LOOPS" esmtp delivery)
  cat > "$WORK/ringmaild/ringmaild.conf" <<CONF
spool_dir = "$WORK/ringmaild/spool"
log_dir = "$WORK/ringmaild/log"
$loops
default_route = "[127.0.0.1]:$SINK_PORT"
$(esmtp_listener_conf "$LOOPS" "$PORT" 4000)
Control_Listener { Listen "$WORK/ringmaild/control.sock" { } }
CONF
  "$RINGMAILD" --config "$WORK/ringmaild/ringmaild.conf" > "$WORK/ringmaild/daemon.log" 2>&1 &
  DAEMON_PID=$!
  wait_port "$PORT"
}

metric_sum() {  # NAME: sum of a counter over loops, from ringctl metrics
  "$RINGCTL" --socket "$WORK/ringmaild/control.sock" metrics 2>/dev/null |
    awk -v m="$1" '$1 ~ "^" m "({|$)" { s += $2 } END { printf "%d", s }'
}

# one_run SYSTEM SIZE DOMAINS RUN: one injection + delivery, a line into the TSV.
one_run() {
  local system=$1 size=$2 domains=$3 run=$4 n t0 t1 t2 extra=""
  n=$(count_for "$size")
  start_sink "$n" || { echo "$system: sink did not start" >> "$NOTES"; return; }
  if [[ $system == ringmaild ]]; then
    start_ringmaild || { echo "ringmaild did not start (run $run)" >> "$NOTES"; stop_pid "$SINK_PID"; SINK_PID=""; return; }
  else
    PORT=$POSTFIX_PORT
  fi
  t0=$(date +%s%N)
  if ! timeout "$STEP_TIMEOUT" "$RINGLOAD" send --target "127.0.0.1:$PORT" --messages "$n" \
      --size "$size" --connections "$CONNS" --domains "$domains" --quiet --json \
      --timeout "$STEP_TIMEOUT" > "$WORK/send.json" 2>&1; then
    echo "$system size=$size domains=$domains run $run: ringload send failed:" \
      "$(tail -c 300 "$WORK/send.json")" >> "$NOTES"
  fi
  t1=$(date +%s%N)
  local delivered_ok=1
  timeout "$STEP_TIMEOUT" tail --pid="$SINK_PID" -f /dev/null || delivered_ok=0
  t2=$(date +%s%N)
  local sink_msgs
  sink_msgs=$(grep -o '"messages":[0-9]*' "$WORK/sink.json" | head -1 | cut -d: -f2)
  if [[ $delivered_ok -eq 0 ]]; then
    echo "$system size=$size domains=$domains run $run: the sink did not get all $n messages" \
      "in ${STEP_TIMEOUT}s" >> "$NOTES"
    stop_pid "$SINK_PID"
  fi
  wait "$SINK_PID" 2>/dev/null
  SINK_PID=""
  local spool_kib="-" deferred="-"
  if [[ $system == ringmaild ]]; then
    deferred=$(metric_sum ringmail_recipients_deferred_total)
    sleep 1  # DONE records are group-committed and drained segments unlinked just after
    spool_kib=$(du -sk "$WORK/ringmaild/spool" | cut -f1)
    stop_pid "$DAEMON_PID"
    DAEMON_PID=""
  fi
  local inject e2e
  inject=$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) }')
  e2e=$(awk -v a="$t0" -v b="$t2" -v n="$n" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) }')
  [[ $delivered_ok -eq 1 ]] || e2e=NA
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$size" "$domains" "$run" "$n" \
    "$inject" "$e2e" "${sink_msgs:-0}" "$deferred" "$spool_kib" >> "$TSV"
  printf '  run %s %-9s %7s B %3s domains: inject %8s msg/s, end-to-end %8s msg/s' \
    "$run" "$system" "$size" "$domains" "$inject" "$e2e"
  printf ' (sink %s/%s, deferred %s, spool %s KiB, load %s)\n' "${sink_msgs:-0}" "$n" \
    "$deferred" "$spool_kib" "$(cut -d' ' -f1 /proc/loadavg)"
}

# Median and min–max per (system, size, domains) of column COL of the TSV.
summarize() {  # COL
  awk -F'\t' -v c="$1" '$c != "NA" { k = $1 "\t" $2 "\t" $3; v[k] = v[k] " " $c }
    END {
      for (k in v) {
        n = split(substr(v[k], 2), a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) {
          t = a[i]; a[i] = a[j]; a[j] = t }
        med = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        printf "%s\t%.0f\t%.0f\t%.0f\t%d\n", k, med, a[1], a[n], n
      }
    }' "$TSV"
}

size_name() {
  case $1 in 1024) echo "1 KiB" ;; 10240) echo "10 KiB" ;; 102400) echo "100 KiB" ;;
    *) echo "$1 B" ;; esac
}

markdown() {
  summarize 7 > "$WORK/e2e.tsv"
  summarize 6 > "$WORK/inject.tsv"
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`bench/relay_bench.sh $ARGS\`;"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 CPUs shared with other"
  echo "engineers' builds). $(postconf -d mail_version 2>/dev/null | sed 's/mail_version = /Postfix /')."
  echo "Each run: \`ringload send\` ($CONNS connections, no pipelining, messages of SIZE bytes"
  echo "in all) into the MTA, which relays every message to one \`ringload sink\`; end-to-end ="
  echo "messages / (first injection → sink's last answered message). ringmaild: $LOOPS event"
  echo "loops (test license), accept and deliver on the same loops, fresh spool per run."
  echo "Postfix: stock smtp client (20 connections per destination, connection cache),"
  echo "relayhost = the sink. Median of $RUNS interleaved runs (min–max)."
  echo
  echo "| size | domains | ringmaild end-to-end | Postfix end-to-end | ratio | ringmaild inject | Postfix inject |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  local size d
  for size in $SIZES; do
    for d in $DOMAINS; do
      local re pe ri pi
      re=$(awk -F'\t' -v z="$size" -v d="$d" '$1 == "ringmaild" && $2 == z && $3 == d { printf "%s (%s–%s)", $4, $5, $6 }' "$WORK/e2e.tsv")
      pe=$(awk -F'\t' -v z="$size" -v d="$d" '$1 == "postfix" && $2 == z && $3 == d { printf "%s (%s–%s)", $4, $5, $6 }' "$WORK/e2e.tsv")
      ri=$(awk -F'\t' -v z="$size" -v d="$d" '$1 == "ringmaild" && $2 == z && $3 == d { print $4 }' "$WORK/inject.tsv")
      pi=$(awk -F'\t' -v z="$size" -v d="$d" '$1 == "postfix" && $2 == z && $3 == d { print $4 }' "$WORK/inject.tsv")
      local r m1 m2
      m1=$(awk -F'\t' -v z="$size" -v d="$d" '$1 == "ringmaild" && $2 == z && $3 == d { print $4 }' "$WORK/e2e.tsv")
      m2=$(awk -F'\t' -v z="$size" -v d="$d" '$1 == "postfix" && $2 == z && $3 == d { print $4 }' "$WORK/e2e.tsv")
      r="–"
      [[ -n $m1 && -n $m2 && $m2 != 0 ]] && r=$(awk -v a="$m1" -v b="$m2" 'BEGIN { printf "%.2f×", a / b }')
      echo "| $(size_name "$size") | $d | ${re:-–} | ${pe:-–} | $r | ${ri:-–} | ${pi:-–} |"
    done
  done
  echo
  echo "Per run (system, size, domains, run, messages, inject msg/s, end-to-end msg/s, received"
  echo "by the sink, ringmaild recipients deferred, ringmaild spool KiB after the run):"
  echo
  echo '```'
  cat "$TSV"
  echo '```'
  if [[ -s $NOTES ]]; then
    echo
    echo "Notes:"
    sed 's/^/- /' "$NOTES"
  fi
}

write_results() {
  local results=$ROOT/bench/RESULTS.md begin="<!-- relay-bench:begin -->"
  local end="<!-- relay-bench:end -->"
  mkdir -p "$ROOT/bench/results"
  cp "$TSV" "$ROOT/bench/results/relay_bench.tsv"
  {
    echo "$begin"
    echo "### Relay end to end, ringmaild vs Postfix (bench/relay_bench.sh)"
    echo
    markdown
    echo "$end"
  } > "$WORK/section.md"
  replace_section "$results" relay-bench "$WORK/section.md"
  echo "wrote $results and bench/results/relay_bench.tsv"
}

ARGS="--runs $RUNS --sizes \"$SIZES\" --connections $CONNS --domains \"$DOMAINS\" --loops $LOOPS"
[[ -n $MESSAGES ]] && ARGS+=" --messages $MESSAGES"
ulimit -n 65536 2>/dev/null || true

if [[ " $SYSTEMS " == *" postfix "* ]]; then
  POSTFIX_DIR=$WORK/postfix
  POSTFIX_PORT=$(free_port)
  if ! "$ROOT/bench/postfix_setup.sh" relay "$POSTFIX_DIR" "$POSTFIX_PORT" "$SINK_PORT"; then
    echo "postfix did not start; skipped" | tee -a "$NOTES"
    POSTFIX_DIR=""
    SYSTEMS=${SYSTEMS//postfix/}
  fi
fi
for run in $(seq "$RUNS"); do
  for size in $SIZES; do
    for d in $DOMAINS; do
      for system in $SYSTEMS; do one_run "$system" "$size" "$d" "$run"; done
    done
  done
done
if [[ $WRITE -eq 1 ]]; then write_results; else markdown; fi
