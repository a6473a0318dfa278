#!/usr/bin/env bash
# bench/http_inject_bench.sh — injection API throughput: messages/s made durable through
# POST /api/inject/v1 on 127.0.0.1, keep-alive connections, real fsync (spool under /var/tmp).
#
#   bench/http_inject_bench.sh [--build DIR] [--conns N] [--seconds S] [--size BYTES]
#                              [--runs N] [--kinds "raw structured"] [--tool wrk|ab]
#
# Each run starts a fresh ringmaild (HTTP listener only, one loop unless a license allows
# more) and drives it with wrk (a Lua script sets the POST body and the bearer token) or,
# when wrk is missing, ab -k. Kinds: `raw` posts a ready RFC 5322 message of about SIZE
# bytes as "content"; `structured` posts from/subject/text_body of about SIZE bytes and has
# the daemon build the MIME message. Each request is one message to one recipient, answered
# only after its fdatasync (group commit), so requests/s = durable messages/s. The script
# checks the daemon's own count (/api/v1/queues messages_spooled) against the client's.
# Outbound delivery goes to a closed loopback port (refused: messages stay deferred), so no
# DNS or remote traffic happens. Installs wrk / apache2-utils with apt-get when missing.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
CONNS=100
SECONDS_PER_RUN=10
SIZE=1024
RUNS=3
KINDS="raw structured"
TOOL=""
TOKEN=bench-token-0123456789

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --kinds) KINDS=$2; shift 2 ;;
    --tool) TOOL=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--conns N] [--seconds S] [--size BYTES] [--runs N]" \
            "[--kinds LIST] [--tool wrk|ab]" >&2; exit 2 ;;
  esac
done

RINGMAILD=$BUILD/tools/ringmaild/ringmaild
[[ -x $RINGMAILD ]] || { echo "missing $RINGMAILD (build the ringmaild target)" >&2; exit 2; }

install_if_missing() {  # package, program
  command -v "$2" >/dev/null && return 0
  local sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  echo "bench: installing $1" >&2
  "${sudo_cmd[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
if [[ -z $TOOL ]]; then
  install_if_missing wrk wrk
  if command -v wrk >/dev/null; then TOOL=wrk; else TOOL=ab; fi
fi
[[ $TOOL == ab ]] && install_if_missing apache2-utils ab
command -v "$TOOL" >/dev/null || { echo "bench: $TOOL unavailable" >&2; exit 2; }

WORK=$(mktemp -d /var/tmp/http_inject_bench.XXXXXX)
DAEMON_PID=""
cleanup() {
  if [[ -n $DAEMON_PID ]]; then kill -TERM "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A loopback port nobody listens on: deliveries are refused and retried later.
DEAD_PORT=$(free_port)

make_body() {  # kind size -> JSON on stdout
  python3 - "$1" "$2" <<'PY'
import json, sys
kind, size = sys.argv[1], int(sys.argv[2])
line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\n"
text = (line * (size // len(line) + 1))[:size]
msg = {"envelope_sender": "bench@x.test", "recipients": [{"email": "rcpt@bench.test"}]}
if kind == "raw":
    msg["content"] = "From: bench@x.test\nTo: rcpt@bench.test\nSubject: bench\n\n" + text
else:
    msg["content"] = {"from": "Bench <bench@x.test>", "subject": "bench",
                      "text_body": text}
print(json.dumps(msg))
PY
}

PORT=""
start_daemon() {  # dir; sets DAEMON_PID and PORT (not run in a subshell: the PID must stay)
  local dir=$1
  mkdir -p "$dir"
  cat > "$dir/ringmaild.conf" <<EOF
spool_dir = "$dir/spool"
log_dir = "$dir/log"
hostname = "bench.test"
default_route = "[127.0.0.1]:$DEAD_PORT"
retry_interval = 1h
ESMTP_Listener {
  relay_domains = ( "bench.test" )
}
HTTP_Listener {
  auth_token = "$TOKEN"
  max_connections = 10000
  Listen "127.0.0.1:0" { }
}
EOF
  "$RINGMAILD" --config "$dir/ringmaild.conf" > "$dir/stdout" 2> "$dir/stderr" &
  DAEMON_PID=$!
  PORT=$(wait_line "$dir/stdout" "ready http=127.0.0.1:" 100 "$DAEMON_PID") ||
    { echo "ringmaild did not start:" >&2; cat "$dir/stderr" >&2; exit 1; }
}

stop_daemon() {
  kill -TERM "$DAEMON_PID" 2>/dev/null
  wait "$DAEMON_PID"
  DAEMON_PID=""
}

spooled() {  # port
  curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/api/v1/queues" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["messages_spooled"])'
}

run_wrk() {  # port body_file -> "requests rps non2xx p50 p99"
  local lua=$WORK/post.lua
  python3 - "$2" "$TOKEN" > "$lua" <<'PY'
import json, sys
body = open(sys.argv[1]).read()
print('wrk.method = "POST"')
print('wrk.body = ' + json.dumps(body))
print('wrk.headers["Content-Type"] = "application/json"')
print('wrk.headers["Authorization"] = "Bearer %s"' % sys.argv[2])
PY
  local out
  out=$(timeout $((SECONDS_PER_RUN + 60)) wrk -t 2 -c "$CONNS" -d "${SECONDS_PER_RUN}s" \
        --latency -s "$lua" "http://127.0.0.1:$1/api/inject/v1")
  local reqs rps non2xx p50 p99
  reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<< "$out")
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<< "$out")
  non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' <<< "$out")
  p50=$(awk '$1=="50%"{print $2}' <<< "$out")
  p99=$(awk '$1=="99%"{print $2}' <<< "$out")
  echo "$reqs $rps ${non2xx:-0} $p50 $p99"
}

run_ab() {  # port body_file
  local n=$((CONNS * 200))
  local out
  out=$(timeout 600 ab -q -k -c "$CONNS" -n "$n" -p "$2" -T application/json \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/api/inject/v1" 2>&1)
  local rps failed non2xx p50 p99
  rps=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' <<< "$out")
  failed=$(sed -n 's/^Failed requests: *\([0-9]*\).*/\1/p' <<< "$out")
  non2xx=$(sed -n 's/^Non-2xx responses: *\([0-9]*\).*/\1/p' <<< "$out")
  p50=$(awk '$1=="50%"{print $2"ms"}' <<< "$out")
  p99=$(awk '$1=="99%"{print $2"ms"}' <<< "$out")
  echo "$n $rps $(( ${failed:-0} + ${non2xx:-0} )) $p50 $p99"
}

echo "# http_inject_bench: tool=$TOOL conns=$CONNS size=${SIZE}B runs=$RUNS" \
     "seconds=$SECONDS_PER_RUN cpus=$(nproc) $(uname -r)"
printf "%-11s %4s %10s %10s %8s %9s %9s %s\n" kind run requests msgs/s errors p50 p99 spooled
status=0
for kind in $KINDS; do
  body=$WORK/$kind.json
  make_body "$kind" "$SIZE" > "$body"
  for run in $(seq 1 "$RUNS"); do
    start_daemon "$WORK/$kind.$run"
    port=$PORT
    if [[ $TOOL == wrk ]]; then
      read -r reqs rps errors p50 p99 <<< "$(run_wrk "$port" "$body")"
    else
      read -r reqs rps errors p50 p99 <<< "$(run_ab "$port" "$body")"
    fi
    count=$(spooled "$port")
    stop_daemon
    printf "%-11s %4s %10s %10s %8s %9s %9s %s\n" "$kind" "$run" "$reqs" "$rps" "$errors" \
           "$p50" "$p99" "$count"
    # Every 200 is a durable message: the daemon may have more (requests cut at the end of
    # the run) but never fewer.
    if [[ -n $reqs && -n $count && $count -lt $((reqs - errors)) ]]; then
      echo "  MISMATCH: $count spooled < $((reqs - errors)) acknowledged" >&2
      status=1
    fi
    rm -rf "$WORK/$kind.$run"
  done
done
exit $status
