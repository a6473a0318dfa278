#!/usr/bin/env bash
# bench/tool_cpu.sh — CPU cost per message of the load tools themselves.
#
#   bench/tool_cpu.sh [--build DIR] [--runs N] [--messages N] [--size BYTES] [--conns N]
#
# Throughput on a shared 2-CPU machine moves with whatever else runs; CPU time per message
# does not. For the same workload this measures user+system CPU seconds of
#   - the generator: smtp-source vs ringload send (plain and --pipelining), into smtp-sink;
#   - the sink: smtp-sink vs ringload sink, both fed by the same generator (ringload send
#     --pipelining, the cheapest one, so the sink's share of the machine is the largest).
# Prints a markdown table of medians (µs of CPU per message) over --runs runs.
# Everything runs on 127.0.0.1; every process is bounded by timeout.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=5
MESSAGES=20000
SIZE=1024
CONNS=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--messages N] [--size B] [--conns N]" >&2
       exit 2 ;;
  esac
done
RINGLOAD=$BUILD/tools/ringload/ringload
WORK=$(mktemp -d /tmp/ringload_cpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# cpu_us_per_msg FILE: "%U %S" from /usr/bin/time → µs per message.
cpu_us_per_msg() {
  tail -1 "$1" | awk -v n="$MESSAGES" '{ printf "%.2f", ($1 + $2) * 1e6 / n }'
}

start_server() {  # smtp_sink | ringload_sink → PORT, SERVER_PID (under /usr/bin/time)
  if [[ $1 == smtp_sink ]]; then
    PORT=$(free_port)
    /usr/bin/time -o "$WORK/server.time" -f "%U %S" \
      smtp-sink -u nobody -m 1100 "127.0.0.1:$PORT" 2048 >/dev/null 2>&1 &
    SERVER_PID=$!
    wait_port "$PORT" 50
  else
    /usr/bin/time -o "$WORK/server.time" -f "%U %S" \
      "$RINGLOAD" sink --quiet --listen 127.0.0.1:0 > "$WORK/sink.out" 2>&1 &
    SERVER_PID=$!
    PORT=$(wait_line "$WORK/sink.out" "listening 127.0.0.1:" 50)
  fi
}

stop_server() {
  # /usr/bin/time's child is the server: signal it, then wait for time to write.
  local child
  child=$(pgrep -P "$SERVER_PID")
  [[ -n $child ]] && kill -TERM "$child"
  wait "$SERVER_PID" 2>/dev/null
}

client() {  # smtp_source | ringload | ringload_pipe
  local t=$WORK/client.time
  case $1 in
    smtp_source)
      timeout 300 /usr/bin/time -o "$t" -f "%U %S" smtp-source -s "$CONNS" -m "$MESSAGES" \
        -l "$SIZE" -d -M bench.test "127.0.0.1:$PORT" >/dev/null 2>&1 ;;
    ringload|ringload_pipe)
      timeout 300 /usr/bin/time -o "$t" -f "%U %S" "$RINGLOAD" send --quiet \
        --target "127.0.0.1:$PORT" --messages "$MESSAGES" --size $((SIZE + 112)) \
        --connections "$CONNS" $([[ $1 == ringload_pipe ]] && echo --pipelining) \
        >/dev/null 2>&1 ;;
  esac
}

declare -A GEN SINK
for run in $(seq "$RUNS"); do
  for gen in smtp_source ringload ringload_pipe; do
    start_server smtp_sink
    client "$gen" && GEN[$gen]+="$(cpu_us_per_msg "$WORK/client.time") "
    stop_server
  done
  for server in smtp_sink ringload_sink; do
    start_server "$server"
    client ringload_pipe
    stop_server
    SINK[$server]+="$(cpu_us_per_msg "$WORK/server.time") "
  done
done

echo "CPU per message (µs, user+system, median of $RUNS runs; $MESSAGES messages of" \
  "$SIZE B payload over $CONNS connections; \`bench/tool_cpu.sh --runs $RUNS --messages" \
  "$MESSAGES --size $SIZE --conns $CONNS\`):"
echo
echo "| role | Postfix tool | ringload | ringload --pipelining |"
echo "| --- | ---: | ---: | ---: |"
printf '| generator (into smtp-sink) | smtp-source %s | %s | %s |\n' \
  "$(tr ' ' '\n' <<< "${GEN[smtp_source]:-}" | grep . | median)" \
  "$(tr ' ' '\n' <<< "${GEN[ringload]:-}" | grep . | median)" \
  "$(tr ' ' '\n' <<< "${GEN[ringload_pipe]:-}" | grep . | median)"
printf '| sink (fed by ringload --pipelining) | smtp-sink %s | %s | – |\n' \
  "$(tr ' ' '\n' <<< "${SINK[smtp_sink]:-}" | grep . | median)" \
  "$(tr ' ' '\n' <<< "${SINK[ringload_sink]:-}" | grep . | median)"
