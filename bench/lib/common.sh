# bench/lib/common.sh — shell functions the bench/*.sh scripts share (ports, readiness,
# stopping processes, CPU from /proc, medians). Sourced, never run:
#   . "$ROOT/bench/lib/common.sh"
# It defines functions only: no variables, traps or processes of its own. What a script
# starts stays that script's to stop (stop_pid, or its own cleanup trap).

# An unused 127.0.0.1 TCP port (bound and released again: another process could take it
# before the caller does, which a benchmark on an otherwise quiet loopback accepts).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT [TRIES]: until 127.0.0.1:PORT accepts a connection, polling every 0.1 s
# at most TRIES times (default 300: 30 s). Fails when it never did.
wait_port() {
  local port=$1 tries=${2:-300}
  for _ in $(seq "$tries"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# wait_socket PATH [TRIES]: until the Unix socket PATH exists (ringmaild's control socket,
# made a moment after its listeners), polling every 0.05 s at most TRIES times (default 200:
# 10 s). Fails when it never appeared.
wait_socket() {
  local path=$1 tries=${2:-200}
  for _ in $(seq "$tries"); do
    [[ -S $path ]] && return 0
    sleep 0.05
  done
  return 1
}

# wait_line FILE PREFIX [TRIES] [PID]: prints what follows PREFIX on the first line of FILE
# that starts with it ("ready esmtp=", "listening 127.0.0.1:"), polling every 0.1 s at most
# TRIES times (default 200: 20 s). Fails at once when PID is given and that process is gone.
wait_line() {
  local file=$1 prefix=$2 tries=${3:-200} pid=${4:-} line
  for _ in $(seq "$tries"); do
    line=$(grep -m1 "^$prefix" "$file" 2>/dev/null) && { echo "${line#"$prefix"}"; return 0; }
    [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ringload_sink_start OUT [ARGS...]: `$RINGLOAD sink --listen 127.0.0.1:0 ARGS...` in the
# background, its output to OUT; sets SINK_PID at once and SINK_PORT once it listens (within
# 10 s, else fails). Not for a subshell: the caller keeps the PID and stops the sink.
ringload_sink_start() {
  local out=$1
  shift
  "$RINGLOAD" sink --listen 127.0.0.1:0 "$@" > "$out" 2>&1 &
  SINK_PID=$!
  SINK_PORT=$(wait_line "$out" "listening 127.0.0.1:" 100 "$SINK_PID")
}

# default_loops: the event loops a bench gives ringmaild when --loops is not given: the sizing
# of DESIGN.md's example configuration, concurrency = "75%" of the CPUs (at least one) — one
# loop on a 2-CPU machine. Why not one per CPU: the load generator runs on the same machine
# and needs a CPU as well; with a pinned loop on every CPU the client always shares one with
# a loop and its io-wq worker, and every cell of #3's matrix was slower for it (bench/
# RESULTS.md, "Session 9"; run_matrix.sh's ringmaild-percpu system measures it again).
default_loops() {
  local n=$(( $(nproc) * 75 / 100 ))
  echo $(( n < 1 ? 1 : n ))
}

# loops_conf LOOPS POOL [delivery]: ringmaild config lines for an event-loop pool POOL of
# LOOPS loops, licensed by the test license (tests/testdata/license, as the integration
# tests do; needs ROOT), with "delivery" also delivering on it; nothing for one loop (the
# default needs no license). A listener joins the pool with `event_loop = "POOL"`.
loops_conf() {
  [[ $1 -gt 1 ]] || return 0
  echo "license = \"$ROOT/tests/testdata/license/valid.license\""
  echo "eventloop \"$2\" { concurrency = $1 }"
  [[ ${3:-} != delivery ]] || echo "delivery_pool = \"$2\""
}

# esmtp_listener_conf LOOPS PORT [MAX_CONNECTIONS]: the benches' ESMTP_Listener block: on the
# pool "esmtp" of `loops_conf LOOPS esmtp` when LOOPS > 1, relaying for 127.0.0.0/8, listening
# on 127.0.0.1:PORT (0: a free port, which the daemon prints), MAX_CONNECTIONS (default 2000) in
# all and per client IP (every bench client is 127.0.0.1).
esmtp_listener_conf() {
  local max=${3:-2000}
  echo "ESMTP_Listener {"
  if [[ $1 -gt 1 ]]; then echo '  event_loop = "esmtp"'; fi
  echo "  max_connections = $max"
  echo "  max_connections_per_ip = $max"
  echo '  relay_hosts = ( "127.0.0.0/8" )'
  echo "  Listen \"127.0.0.1:$2\" { }"
  echo "}"
}

# need_ringmaild BUILD: sets RINGMAILD and RINGCTL to BUILD's binaries, or exits 2 naming the
# one that is missing.
need_ringmaild() {
  RINGMAILD=$1/tools/ringmaild/ringmaild
  RINGCTL=$1/tools/ringctl/ringctl
  local b
  for b in "$RINGMAILD" "$RINGCTL"; do
    [[ -x $b ]] || { echo "missing $b (build ringmaild ringctl)" >&2; exit 2; }
  done
}

# start_bench_ringmaild BUILD DIR SPOOL LOOPS PORT [EXTRA]: a ringmaild of BUILD (a build directory)
# accepting on 127.0.0.1:PORT with its spool in SPOOL, its config, log and control socket in
# DIR (DIR/control.sock), LOOPS loops, and the recipients' domain bench.test suspended so that
# accepted mail stays queued (as bench/run_matrix.sh does). EXTRA (optional): more global config
# lines, e.g. 'spool_segment_fill = "zeros"'. Sets BENCH_DAEMON_PID at once (the caller stops
# it); fails, with the daemon's output on stderr, when it does not come up.
start_bench_ringmaild() {
  local build=$1 dir=$2 spool=$3 loops=$4 port=$5 extra=${6:-}
  mkdir -p "$dir"
  cat > "$dir/ringmaild.conf" <<CONF
spool_dir = "$spool/spool"
log_dir = "$dir/log"
$extra
$(loops_conf "$loops" esmtp delivery)
$(esmtp_listener_conf "$loops" "$port")
Control_Listener { Listen "$dir/control.sock" { } }
CONF
  "$build/tools/ringmaild/ringmaild" --config "$dir/ringmaild.conf" > "$dir/daemon.log" 2>&1 &
  BENCH_DAEMON_PID=$!
  if ! wait_port "$port" 100 || ! wait_socket "$dir/control.sock"; then
    echo "ringmaild did not start:" >&2
    cat "$dir/daemon.log" >&2
    return 1
  fi
  "$build/tools/ringctl/ringctl" --socket "$dir/control.sock" domain suspend bench.test >/dev/null
}

# stop_pid PID [SECONDS]: SIGTERM, wait for the exit (at most SECONDS, default 60), then
# SIGKILL; reaps it when it is this shell's child. An empty PID is nothing to do.
stop_pid() {
  local pid=$1 secs=${2:-60}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  timeout "$secs" tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null ||
    true  # gone meanwhile (and `set -e` callers must not stop in their cleanup)
  wait "$pid" 2>/dev/null || true
}

# proc_cpu_ticks PID: user + system CPU time of PID so far, in clock ticks (0 once gone).
proc_cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# median: the median of the numbers on stdin, one a line (the mean of the middle two for
# an even count); prints nothing for no numbers.
median() {
  sort -n | awk '{ a[NR] = $1 }
    END { if (NR) print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# replace_section FILE NAME SECTION: FILE's lines from "<!-- NAME:begin -->" to
# "<!-- NAME:end -->" become SECTION's (a file that carries those two markers itself); a FILE
# without the markers gets SECTION appended after a blank line. The rest of FILE is kept.
replace_section() {
  local file=$1 section=$3 begin="<!-- $2:begin -->" end="<!-- $2:end -->"
  if grep -qF "$begin" "$file"; then
    awk -v b="$begin" -v e="$end" -v f="$section" '
      $0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
      $0 == e { skip = 0; next }
      !skip { print }' "$file" > "$section.new"
  else
    { cat "$file"; echo; cat "$section"; } > "$section.new"
  fi
  cp "$section.new" "$file"
}
