#!/usr/bin/env bash
# bench/run_matrix.sh — end-to-end SMTP throughput matrix on 127.0.0.1.
#
#   bench/run_matrix.sh [--build DIR] [--runs N] [--sizes "1024 10240 102400"]
#                       [--conns "1 10 100 1000"] [--systems "tools ringmaild relay postfix"]
#                       [--scale F] [--loops N] [--section NAME] [--no-write]
#                       [--smtp-source-only] [--new-connections]
#
# Systems (each cell: one client run against one server, a fixed message count sized so a
# cell takes a few seconds; several runs; median and min–max):
#   tools     the load tools themselves, to show ringload is never the bottleneck:
#             smtp-source → smtp-sink (Postfix's pair), ringload send → smtp-sink (with and
#             without pipelining), smtp-source → ringload sink, ringload → ringload sink
#   ringmaild ringmaild acceptance (build/tools/ringmaild/ringmaild; skipped with a note
#             when the binary is missing or does not start), --loops event loops (default_loops:
#             75% of the CPUs, 1 on this machine; more than one are licensed by the test
#             license in tests/testdata/license as the integration tests do). The recipients'
#             domain (bench.test) is suspended with ringctl, so accepted mail stays queued
#             like Postfix's hold queue instead of being tried and bounced for want of a
#             route (which would add delivery work to the acceptance figures).
#   relay     ringmaild relaying to ringload sink: measured by bench/relay_bench.sh, side by
#             side with Postfix relaying to the same sink
#   postfix   Postfix acceptance into its hold queue (bench/postfix_setup.sh)
#   ringmaild-zeros  ringmaild with spool_segment_fill = "zeros" (every new segment zero-filled,
#             the default of sessions 4-6), smtp-source cells only: the A/B of "auto" (the
#             default since session 7: zeros only while batches are small) in the same run
#   ringmaild-allocate  ringmaild with spool_segment_fill = "allocate" (fallocate only, the
#             default before session 4), smtp-source cells only: the A/B of zero-filled
#             segments in the same run
#   ringmaild-unpinned  ringmaild with pin_event_loops = false, smtp-source cells only: the
#             A/B of pinned loops (whose io-wq workers share their one CPU) in the same run
#   ringmaild-percpu  ringmaild with one pinned event loop per CPU (the test license),
#             smtp-source cells only: the A/B of the default loop count in the same run. On
#             this 2-CPU machine the client then always shares a CPU with a loop and its io-wq
#             worker, and each loop, half as busy, sleeps and wakes more per message
#   ringmaild-tmpfs  ringmaild with its spool on /dev/shm (tmpfs: NOT durable — a sync there
#             writes nothing to a device), smtp-source cells only: a diagnostic, never a result.
#             Everything else is the same as `ringmaild`, so ringmaild-tmpfs / ringmaild is what
#             the device's durable writes cost, and ringmaild-tmpfs / smtp-sink compares the
#             daemon's own path (sessions, parsing, spool records, ring I/O) with smtp-sink's.
#   ringmaild-drain, ringmaild-drain-allocate, ringmaild-drain-norecycle  smtp-source cells
#             only: ringmaild with bench.test routed to an smtp-sink on 127.0.0.1 instead of
#             suspended, so accepted mail is delivered and segments drain during the cell —
#             the only way drained segments can be recycled (spool_segment_recycle). Zeros
#             with recycling (the defaults), fallocate only, and zeros without recycling.
#             Still counted at the client: acceptance while the daemon also delivers.
# --smtp-source-only runs only the smtp-source cells (issue #3's measure), not ringload's.
# --new-connections: smtp-source opens a new connection for every message (no -d), issue #3's
# first measure ("per new connection"); without it sessions are reused (-d). With it the
# ringload cells use --messages-per-connection 1, so both clients connect per message.
# Messages/s are counted by the client over its wall-clock time (process start to exit),
# the same way for smtp-source and ringload. Results go to bench/RESULTS.md between the
# ringload markers (the rest of the file is kept), the raw runs to
# bench/results/ringload_matrix.tsv and a chart to bench/ringload_matrix.png.
# --section NAME writes another section instead (markers NAME:begin/end, files
# bench/results/NAME.tsv and bench/NAME.png): for a run of some systems only, which would
# otherwise replace the full matrix with a partial one.
# Installs postfix (smtp-source, smtp-sink) and gnuplot with apt-get when missing.
# Everything listens on and connects to 127.0.0.1 only; every cell is bounded by timeout.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=3
SIZES="1024 10240 102400"
CONNS="1 10 100 1000"
SYSTEMS="tools ringmaild relay postfix"
SCALE=1
LOOPS=$(default_loops)
WRITE=1
SECTION=ringload-matrix
SOURCE_ONLY=0
NEWCONN=0
FILL=auto  # the daemon's default
RECYCLE=true
PIN=true
DRAIN=0
DRAIN_PID=""
CELL_TIMEOUT=180
SPOOL_ROOT=""  # set: the spool goes there (ringmaild-tmpfs) instead of under $WORK

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    --section) SECTION=$2; shift 2 ;;
    --no-write) WRITE=0; shift ;;
    --smtp-source-only) SOURCE_ONLY=1; shift ;;
    --new-connections) NEWCONN=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--sizes LIST] [--conns LIST]" \
            "[--systems LIST] [--scale F] [--loops N] [--section NAME] [--no-write]" \
            "[--smtp-source-only] [--new-connections]" >&2; exit 2 ;;
  esac
done

RINGLOAD=${RINGLOAD:-$BUILD/tools/ringload/ringload}
RINGMAILD=$BUILD/tools/ringmaild/ringmaild
RINGCTL=$BUILD/tools/ringctl/ringctl
if [[ ! -x $RINGLOAD ]]; then
  echo "missing $RINGLOAD: build it first (cmake --build $BUILD --target ringload)" >&2
  exit 2
fi

WORK=$(mktemp -d /tmp/ringload_matrix.XXXXXX)
chmod 755 "$WORK"
TSV=$WORK/runs.tsv
NOTES=$WORK/notes.txt
: > "$TSV"
: > "$NOTES"
SERVER_PID=""
POSTFIX_DIR=""
POSTFIX_PORT=""

cleanup() {
  stop_server
  [[ -n $POSTFIX_DIR ]] && "$ROOT/bench/postfix_setup.sh" stop "$POSTFIX_DIR"
  rm -rf "$WORK" "$SHM_DIR"
}
SHM_DIR=""
trap cleanup EXIT

ensure_packages() {
  local need=()
  command -v smtp-source >/dev/null || need+=(postfix)
  command -v gnuplot >/dev/null || need+=(gnuplot-nox)
  [[ ${#need[@]} -eq 0 ]] && return
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

now_ns() { date +%s%N; }

# Messages per cell: a few seconds of steady state for each system on these machines. Session
# 10's cells were 0.1-0.5 s long on its faster CPUs (10 sessions of 1 KiB: 10,000 messages for
# ringmaild in 0.54 s, 1,000 for Postfix in 0.4 s), so the start-up, the ramp of the
# connections and the first segment's creation weighed as much as the rate. Several sessions
# go 3-10 times faster than one and get five times the messages; the MTAs are slower than the
# tools and get fewer (each cell's count is in the TSV).
count_for() {
  local system=$1 size=$2 conns=$3 base
  case $size in
    1024) base=20000 ;;
    10240) base=12000 ;;
    *) base=3000 ;;
  esac
  [[ $conns -gt 1 ]] && base=$((base * 5))
  case $system in
    *postfix) base=$((base / 10)) ;;
    *ringmaild*) [[ $size -gt 10240 ]] || base=$((base / 2)) ;;
  esac
  base=$(awk -v b="$base" -v s="$SCALE" 'BEGIN { printf "%d", b * s }')
  local floor=$((conns * 3))
  echo $((base > floor ? base : floor))
}

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
  fi
  if [[ -n $DRAIN_PID ]]; then
    kill "$DRAIN_PID" 2>/dev/null
    wait "$DRAIN_PID" 2>/dev/null
    DRAIN_PID=""
  fi
}

# Servers: each sets PORT and SERVER_PID.
start_smtp_sink() {
  PORT=$(free_port)
  smtp-sink -u nobody -m 1100 "127.0.0.1:$PORT" 2048 >/dev/null 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT" 100
}

start_ringload_sink() {
  ringload_sink_start "$WORK/sink.out" --quiet
  local rc=$?
  SERVER_PID=$SINK_PID
  PORT=$SINK_PORT
  return $rc
}

start_ringmaild() {
  PORT=$(free_port)
  local spool=${SPOOL_ROOT:-$WORK/ringmaild}/spool
  rm -rf "$spool"  # each run starts on an empty spool: no recovery time
  # The blocks the last run's spool held are discarded at the next journal commit (these
  # machines mount ext4 with online discard): done now, not in this run's first syncs.
  sync -f "$WORK"
  mkdir -p "$spool" "$WORK/ringmaild/logs"
  local loops
  loops=$(loops_conf "$LOOPS" esmtp delivery)
  local drain_conf=""
  if [[ $DRAIN == 1 ]]; then
    local drain_port
    drain_port=$(free_port)
    smtp-sink -u nobody -m 1100 "127.0.0.1:$drain_port" 2048 >/dev/null 2>&1 &
    DRAIN_PID=$!
    wait_port "$drain_port" 100 || return 1
    drain_conf="outbound_tls = off
Domain \"bench.test\" { routes = \"[127.0.0.1]:$drain_port\" }"
  fi
  cat > "$WORK/ringmaild/ringmaild.conf" <<CONF
spool_dir = "$spool"
spool_segment_fill = "$FILL"
spool_segment_recycle = $RECYCLE
pin_event_loops = $PIN
log_dir = "$WORK/ringmaild/logs"
$drain_conf
$loops
$(esmtp_listener_conf "$LOOPS" "$PORT")
Control_Listener { Listen "$WORK/ringmaild/control.sock" { } }
CONF
  "$RINGMAILD" --config "$WORK/ringmaild/ringmaild.conf" > "$WORK/ringmaild/log" 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT" 100 || return 1
  # Hold what is accepted (see the header): the domain every client here sends to.
  wait_socket "$WORK/ringmaild/control.sock"
  [[ $DRAIN == 1 ]] && return 0  # delivered to the smtp-sink: segments drain
  "$RINGCTL" --socket "$WORK/ringmaild/control.sock" domain suspend bench.test >/dev/null
}

start_ringmaild_allocate() { FILL=allocate start_ringmaild; }
start_ringmaild_zeros() { FILL=zeros start_ringmaild; }
start_ringmaild_drain() { DRAIN=1 start_ringmaild; }
start_ringmaild_drain_allocate() { DRAIN=1 FILL=allocate start_ringmaild; }
start_ringmaild_drain_norecycle() { DRAIN=1 RECYCLE=false start_ringmaild; }
start_ringmaild_unpinned() { PIN=false start_ringmaild; }
start_ringmaild_percpu() { LOOPS=$(nproc) start_ringmaild; }
start_ringmaild_tmpfs() {
  [[ -n $SHM_DIR ]] || SHM_DIR=$(mktemp -d /dev/shm/run_matrix.XXXXXX) || return 1
  SPOOL_ROOT=$SHM_DIR start_ringmaild
}

# Clients: print "seconds" (wall clock) or nothing on failure.
client_smtp_source() {
  local port=$1 n=$2 size=$3 conns=$4 reuse=-d t0 t1
  [[ $NEWCONN -eq 0 ]] || reuse=""
  t0=$(now_ns)
  # shellcheck disable=SC2086  # $reuse: -d or nothing
  timeout "$CELL_TIMEOUT" smtp-source -s "$conns" -m "$n" -l "$size" $reuse -M bench.test \
    -f bench@ringload.test -t rcpt@bench.test "127.0.0.1:$port" >/dev/null 2>&1 || return 1
  t1=$(now_ns)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }'
}

# --io-timeout 300 matches smtp-source's 300 s reply timeout: with 1000 connections Postfix
# leaves those over its process limit waiting in the listen queue for a greeting.
client_ringload() {
  local port=$1 n=$2 size=$3 conns=$4 extra=${5:-} t0 t1
  # smtp-source -l L sends L payload bytes plus ~112 bytes of headers; ringload's --size
  # counts the whole message, so ask for the same total.
  size=$((size + 112))
  [[ $NEWCONN -eq 0 ]] || extra+=" --messages-per-connection 1"
  t0=$(now_ns)
  # shellcheck disable=SC2086
  timeout "$CELL_TIMEOUT" "$RINGLOAD" send --target "127.0.0.1:$port" --messages "$n" \
    --size "$size" --connections "$conns" --rcpt-template 'user{n}@bench.test' --quiet --json --timeout "$CELL_TIMEOUT" \
    --io-timeout 300 $extra \
    > "$WORK/send.json" 2>&1 || return 1
  t1=$(now_ns)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }'
}

# run_cell RUN SYSTEM SIZE CONNS SERVER CLIENT [CLIENT_FLAGS]: one run into the TSV.
run_cell() {
  local run=$1 system=$2 size=$3 conns=$4 server=$5 client=$6 extra=${7:-} n secs
  n=$(count_for "$system" "$size" "$conns")
  if [[ $server != postfix ]]; then
    "start_$server" || { echo "$system: $server did not start" >> "$NOTES"; return; }
  else
    # Started once by main_runs (other servers' starts moved PORT). Its hold queue is not
    # emptied between runs: on these VMs (ext4 with online discard) `postsuper -d ALL` and a
    # sync made the runs after it slower (1 session, 1 KiB: ~1,260 -> 880-1,050 msg/s), the
    # new queue files landing in blocks just discarded. A growing queue is its best case.
    PORT=$POSTFIX_PORT
  fi
  secs=$("client_$client" "$PORT" "$n" "$size" "$conns" "$extra") || secs=""
  [[ $server != postfix ]] && stop_server
  if [[ -z $secs ]]; then
    printf '%s\t%s\t%s\t%s\t%s\tNA\tNA\n' "$system" "$size" "$conns" "$run" "$n" >> "$TSV"
    echo "$system size=$size conns=$conns run $run failed" >> "$NOTES"
    return
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$size" "$conns" "$run" "$n" "$secs" \
    "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')" >> "$TSV"
  printf '  run %s %-18s %7s B %5s conns: %8.1f msg/s\n' "$run" "$system" "$size" "$conns" \
    "$(awk -v n="$n" -v s="$secs" 'BEGIN { print n / s }')"
}

label() {
  case $1 in
    src_smtpsink) echo "smtp-source → smtp-sink" ;;
    rl_smtpsink) echo "ringload send → smtp-sink" ;;
    rlpipe_smtpsink) echo "ringload send --pipelining → smtp-sink" ;;
    src_rlsink) echo "smtp-source → ringload sink" ;;
    rlpipe_rlsink) echo "ringload send --pipelining → ringload sink" ;;
    src_ringmaild) echo "smtp-source → ringmaild (acceptance)" ;;
    src_ringmaild_alloc) echo "smtp-source → ringmaild, fallocate-only segments" ;;
    src_ringmaild_zeros) echo "smtp-source → ringmaild, zero-filled segments" ;;
    src_ringmaild_unpin) echo "smtp-source → ringmaild, pin_event_loops = false" ;;
    src_ringmaild_percpu) echo "smtp-source → ringmaild, a pinned loop per CPU" ;;
    src_ringmaild_tmpfs) echo "smtp-source → ringmaild, spool on tmpfs (not durable)" ;;
    src_ringmaild_drain) echo "smtp-source → ringmaild delivering (zeros, recycling)" ;;
    src_ringmaild_drain_alloc) echo "smtp-source → ringmaild delivering (fallocate only)" ;;
    src_ringmaild_drain_norec) echo "smtp-source → ringmaild delivering (zeros, no recycling)" ;;
    rl_ringmaild) echo "ringload send → ringmaild (acceptance)" ;;
    rlpipe_ringmaild) echo "ringload send --pipelining → ringmaild (acceptance)" ;;
    src_postfix) echo "smtp-source → Postfix (acceptance)" ;;
    rl_postfix) echo "ringload send → Postfix (acceptance)" ;;
    *) echo "$1" ;;
  esac
}

# The cells of SYSTEM for one run, one size and one connection count.
run_system_cell() {
  local system=$1 run=$2 size=$3 conns=$4
  case $system in
    tools)
      run_cell "$run" src_smtpsink "$size" "$conns" smtp_sink smtp_source
      [[ $SOURCE_ONLY == 1 ]] && return
      run_cell "$run" rl_smtpsink "$size" "$conns" smtp_sink ringload
      run_cell "$run" rlpipe_smtpsink "$size" "$conns" smtp_sink ringload --pipelining
      run_cell "$run" src_rlsink "$size" "$conns" ringload_sink smtp_source
      run_cell "$run" rlpipe_rlsink "$size" "$conns" ringload_sink ringload --pipelining
      ;;
    ringmaild)
      run_cell "$run" src_ringmaild "$size" "$conns" ringmaild smtp_source
      [[ $SOURCE_ONLY == 1 ]] && return
      run_cell "$run" rl_ringmaild "$size" "$conns" ringmaild ringload
      run_cell "$run" rlpipe_ringmaild "$size" "$conns" ringmaild ringload --pipelining
      ;;
    ringmaild-allocate)
      run_cell "$run" src_ringmaild_alloc "$size" "$conns" ringmaild_allocate smtp_source
      ;;
    ringmaild-zeros)
      run_cell "$run" src_ringmaild_zeros "$size" "$conns" ringmaild_zeros smtp_source
      ;;
    ringmaild-unpinned)
      run_cell "$run" src_ringmaild_unpin "$size" "$conns" ringmaild_unpinned smtp_source
      ;;
    ringmaild-percpu)
      run_cell "$run" src_ringmaild_percpu "$size" "$conns" ringmaild_percpu smtp_source
      ;;
    ringmaild-tmpfs)
      run_cell "$run" src_ringmaild_tmpfs "$size" "$conns" ringmaild_tmpfs smtp_source
      ;;
    ringmaild-drain)
      run_cell "$run" src_ringmaild_drain "$size" "$conns" ringmaild_drain smtp_source
      ;;
    ringmaild-drain-allocate)
      run_cell "$run" src_ringmaild_drain_alloc "$size" "$conns" ringmaild_drain_allocate \
        smtp_source
      ;;
    ringmaild-drain-norecycle)
      run_cell "$run" src_ringmaild_drain_norec "$size" "$conns" ringmaild_drain_norecycle \
        smtp_source
      ;;
    postfix)
      run_cell "$run" src_postfix "$size" "$conns" postfix smtp_source
      [[ $SOURCE_ONLY == 1 ]] && return
      run_cell "$run" rl_postfix "$size" "$conns" postfix ringload
      ;;
  esac
}

# Every system is checked (and Postfix started) first; then the cells run interleaved: for
# each run, size and connection count, one cell of every system in turn, so that a change in
# the machine's load (other engineers' builds) hits the systems compared in a ratio alike.
main_runs() {
  local system run size conns active=()
  for system in $SYSTEMS; do
    case $system in
      ringmaild | ringmaild-allocate | ringmaild-zeros | ringmaild-unpinned | ringmaild-tmpfs | \
      ringmaild-percpu | ringmaild-drain*)
        if [[ ! -x $RINGMAILD ]]; then
          echo "ringmaild: skipped, $RINGMAILD not built yet" | tee -a "$NOTES"
          continue
        fi
        if ! start_ringmaild; then
          echo "ringmaild: skipped, it did not start (see its log)" | tee -a "$NOTES"
          stop_server
          continue
        fi
        stop_server
        ;;
      relay)
        echo "relay (ringmaild → ringload sink): see bench/relay_bench.sh" | tee -a "$NOTES"
        continue
        ;;
      postfix)
        POSTFIX_DIR=$WORK/postfix
        PORT=$(free_port)
        POSTFIX_PORT=$PORT
        if ! "$ROOT/bench/postfix_setup.sh" start "$POSTFIX_DIR" "$PORT"; then
          echo "postfix: skipped, it did not start" | tee -a "$NOTES"
          POSTFIX_DIR=""
          continue
        fi
        ;;
    esac
    active+=("$system")
  done
  echo "== ${active[*]}"
  for run in $(seq "$RUNS"); do
    for size in $SIZES; do
      for conns in $CONNS; do
        for system in "${active[@]}"; do run_system_cell "$system" "$run" "$size" "$conns"; done
      done
    done
  done
  if [[ -n $POSTFIX_DIR ]]; then
    "$ROOT/bench/postfix_setup.sh" stop "$POSTFIX_DIR"
    POSTFIX_DIR=""
  fi
}

# Median and min–max per (system, size, conns): "system size conns median min max runs".
summarize() {
  awk -F'\t' '$7 != "NA" { key = $1 "\t" $2 "\t" $3; v[key] = v[key] " " $7 }
    END {
      for (k in v) {
        n = split(substr(v[k], 2), a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) {
          t = a[i]; a[i] = a[j]; a[j] = t }
        med = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        printf "%s\t%.0f\t%.0f\t%.0f\t%d\n", k, med, a[1], a[n], n
      }
    }' "$TSV" | sort -t$'\t' -k1,1 -k2,2n -k3,3n
}

median_of() {  # SYSTEM SIZE CONNS → median or empty
  awk -F'\t' -v s="$1" -v z="$2" -v c="$3" '$1 == s && $2 == z && $3 == c { print $4 }' \
    "$WORK/summary.tsv"
}

ratio() {
  local a b
  a=$(median_of "$1" "$3" "$4")
  b=$(median_of "$2" "$3" "$4")
  if [[ -z $a || -z $b || $b == 0 ]]; then echo "–"; return; fi
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f×", a / b }'
}

size_name() {
  case $1 in 1024) echo "1 KiB" ;; 10240) echo "10 KiB" ;; 102400) echo "100 KiB" ;;
    *) echo "$1 B" ;; esac
}

markdown() {
  local systems size conns sys cell
  systems=$(cut -f1 "$WORK/summary.tsv" | awk '!seen[$0]++')
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`bench/run_matrix.sh $ARGS\`."
  local cpu
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
  echo "Machine: $(nproc) CPUs ($cpu), kernel $(uname -r),"
  echo "$(postconf -d mail_version 2>/dev/null | sed 's/mail_version = /Postfix /')."
  echo "Each cell: median msg/s of $RUNS runs (min–max), counted by the client over its"
  echo "wall-clock time; message counts per cell are in bench/results/$(file_base).tsv."
  echo "Sizes are smtp-source's \`-l SIZE\` (payload; its messages are SIZE + ~112 header bytes);"
  echo "ringload is given \`--size SIZE+112\` so both send messages of the same total size."
  echo "smtp-source never pipelines; compare it with plain \`ringload send\`."
  if [[ $NEWCONN -eq 1 ]]; then
    echo "**A new connection for every message** (smtp-source without \`-d\`)."
  else
    echo "Connections are reused (smtp-source \`-d\`)."
  fi
  for size in $SIZES; do
    echo
    echo "#### $(size_name "$size") messages"
    echo
    printf '| system |'; for conns in $CONNS; do printf ' %s conn |' "$conns"; done; echo
    printf '| --- |'; for conns in $CONNS; do printf ' ---: |'; done; echo
    for sys in $systems; do
      printf '| %s |' "$(label "$sys")"
      for conns in $CONNS; do
        cell=$(awk -F'\t' -v s="$sys" -v z="$size" -v c="$conns" \
          '$1 == s && $2 == z && $3 == c { printf "%s (%s–%s)", $4, $5, $6 }' \
          "$WORK/summary.tsv")
        printf ' %s |' "${cell:-–}"
      done
      echo
    done
  done
  echo
  echo "#### Ratios of medians"
  echo
  printf '| ratio | size |'; for conns in $CONNS; do printf ' %s conn |' "$conns"; done; echo
  printf '| --- | --- |'; for conns in $CONNS; do printf ' ---: |'; done; echo
  local pair a b name
  for pair in "rl_smtpsink src_smtpsink ringload send / smtp-source (into smtp-sink)" \
              "src_rlsink src_smtpsink ringload sink / smtp-sink (fed by smtp-source)" \
              "src_ringmaild src_postfix ringmaild / Postfix acceptance (smtp-source)" \
              "src_ringmaild src_smtpsink ringmaild / smtp-sink (smtp-source)" \
              "src_ringmaild src_ringmaild_alloc ringmaild / fallocate-only segments" \
              "src_ringmaild src_ringmaild_zeros ringmaild (auto fill) / zero-filled segments" \
              "src_ringmaild_unpin src_ringmaild ringmaild unpinned / pinned loops" \
              "src_ringmaild_unpin src_postfix ringmaild unpinned / Postfix (smtp-source)" \
              "src_ringmaild_unpin src_smtpsink ringmaild unpinned / smtp-sink (smtp-source)" \
              "src_ringmaild src_ringmaild_percpu ringmaild --loops loops / a loop per CPU" \
              "src_ringmaild_percpu src_postfix ringmaild a loop per CPU / Postfix (smtp-source)" \
              "src_ringmaild_percpu src_smtpsink ringmaild a loop per CPU / smtp-sink" \
              "src_ringmaild_tmpfs src_ringmaild ringmaild tmpfs spool / disk spool" \
              "src_ringmaild_tmpfs src_smtpsink ringmaild tmpfs spool / smtp-sink (smtp-source)" \
              "src_ringmaild_drain src_ringmaild_drain_alloc delivering: recycling / fallocate" \
              "src_ringmaild_drain src_ringmaild_drain_norec delivering: recycling / none"; do
    read -r a b name <<< "$pair"
    grep -q "^$a	" "$WORK/summary.tsv" && grep -q "^$b	" "$WORK/summary.tsv" || continue
    for size in $SIZES; do
      printf '| %s | %s |' "$name" "$(size_name "$size")"
      for conns in $CONNS; do printf ' %s |' "$(ratio "$a" "$b" "$size" "$conns")"; done
      echo
    done
  done
  if [[ -s $NOTES ]]; then
    echo
    echo "Notes:"
    sed 's/^/- /' "$NOTES"
  fi
  echo
  echo "![messages/s vs connections]($(file_base).png)"
}

chart() {
  local png=$1 size sys plots col=0
  command -v gnuplot >/dev/null || return
  local systems
  systems=$(cut -f1 "$WORK/summary.tsv" | awk '!seen[$0]++')
  {
    echo "set terminal pngcairo size 1500,520 font 'sans,9'"
    echo "set output '$png'"
    echo "set multiplot layout 1,$(echo "$SIZES" | wc -w) title" \
      "'messages/s vs connections (median of $RUNS runs, 127.0.0.1, $(nproc) CPUs)'"
    echo "set logscale x; set logscale y; set grid; set key top left font ',7'"
    echo "set xlabel 'connections'; set ylabel 'messages/s'"
    for size in $SIZES; do
      echo "set title '$(size_name "$size")'"
      plots=""
      for sys in $systems; do
        awk -F'\t' -v s="$sys" -v z="$size" '$1 == s && $2 == z { print $3, $4 }' \
          "$WORK/summary.tsv" > "$WORK/plot_${sys}_$size.dat"
        [[ -s $WORK/plot_${sys}_$size.dat ]] || continue
        plots+="${plots:+, }'$WORK/plot_${sys}_$size.dat' using 1:2"
        plots+=" with linespoints title '$(label "$sys")'"
      done
      echo "plot $plots"
    done
    echo "unset multiplot"
  } > "$WORK/chart.gp"
  gnuplot "$WORK/chart.gp"
}

file_base() { echo "${SECTION//-/_}"; }

write_results() {
  local results=$ROOT/bench/RESULTS.md begin="<!-- $SECTION:begin -->"
  local end="<!-- $SECTION:end -->" base
  base=$(file_base)
  mkdir -p "$ROOT/bench/results"
  cp "$TSV" "$ROOT/bench/results/$base.tsv"
  chart "$ROOT/bench/$base.png"
  {
    echo "$begin"
    if [[ $SECTION == ringload-matrix ]]; then
      echo "### End-to-end SMTP matrix (bench/run_matrix.sh)"
    else
      echo "### SMTP matrix: $SYSTEMS (bench/run_matrix.sh --section $SECTION)"
    fi
    echo
    markdown
    echo "$end"
  } > "$WORK/section.md"
  [[ -f $results ]] || printf '# ringmail benchmark results\n' > "$results"
  replace_section "$results" "$SECTION" "$WORK/section.md"
  echo "wrote $results, bench/results/$base.tsv, bench/$base.png"
}

ARGS="--runs $RUNS --sizes \"$SIZES\" --conns \"$CONNS\" --systems \"$SYSTEMS\" --scale $SCALE"
ARGS+=" --loops $LOOPS"
[[ $SOURCE_ONLY -eq 0 ]] || ARGS+=" --smtp-source-only"
[[ $NEWCONN -eq 0 ]] || ARGS+=" --new-connections"
[[ $SECTION == ringload-matrix ]] || ARGS+=" --section $SECTION"
ulimit -n 65536 2>/dev/null || true
ensure_packages
main_runs
summarize > "$WORK/summary.tsv"
if [[ $WRITE -eq 1 ]]; then
  write_results
else
  markdown
fi
