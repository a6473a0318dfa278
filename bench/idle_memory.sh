#!/usr/bin/env bash
# bench/idle_memory.sh — issue #3's memory figure: ringmaild's resident memory while it holds
# N idle ESMTP connections (each greeted, then silent), for the whole daemon.
#
#   bench/idle_memory.sh [--build DIR] [--connections 10000] [--loops 2]
#
# Starts ringmaild on a fresh spool (--loops event loops, licensed by the test license as the
# integration tests are, when more than one), reads VmRSS before any connection, then opens
# N connections from one Python process (non-blocking sockets, each waits for its 220
# greeting), reads VmRSS again while all are open and idle, and closes them. Prints one
# line: connections held, RSS before, RSS with them, and KiB per connection.
# Everything listens on and connects to 127.0.0.1; the client gives up after 120 s.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
CONNS=10000
LOOPS=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--connections N] [--loops N]" >&2; exit 2 ;;
  esac
done
RINGMAILD=$BUILD/tools/ringmaild/ringmaild
[[ -x $RINGMAILD ]] || { echo "missing $RINGMAILD: build ringmaild first" >&2; exit 2; }

WORK=$(mktemp -d /tmp/idle_memory.XXXXXX)
DAEMON_PID=""
cleanup() { stop_pid "$DAEMON_PID" 30; rm -rf "$WORK"; }
trap cleanup EXIT

# The client needs a descriptor per connection too.
ulimit -n "$(ulimit -Hn)"
mkdir -p "$WORK/spool" "$WORK/log"
cat > "$WORK/ringmaild.conf" <<CONF
spool_dir = "$WORK/spool"
log_dir = "$WORK/log"
$(loops_conf "$LOOPS" esmtp delivery)
$(esmtp_listener_conf "$LOOPS" 0 $((CONNS * 2)))
CONF
"$RINGMAILD" --config "$WORK/ringmaild.conf" > "$WORK/daemon.out" 2> "$WORK/daemon.err" &
DAEMON_PID=$!
ADDR=$(wait_line "$WORK/daemon.out" "ready esmtp=" 200 "$DAEMON_PID") ||
  { cat "$WORK/daemon.err" >&2; exit 1; }
PORT=${ADDR##*:}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status"; }
BEFORE=$(rss_kib)

python3 - "$PORT" "$CONNS" "$DAEMON_PID" "$BEFORE" <<'PY'
import selectors, socket, sys, time
port, n, pid, before = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + 120
sel = selectors.DefaultSelector()
socks, greeted, opened = [], 0, 0
def rss():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
# Open in waves of 500 so the listen backlog never overflows; each waits for its greeting.
while greeted < n and time.monotonic() < deadline:
    while opened < n and opened - greeted < 500:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        opened += 1
    for key, _ in sel.select(timeout=1):
        data = key.fileobj.recv(512)
        sel.unregister(key.fileobj)
        if not data.startswith(b"220"):
            sys.exit(f"connection {greeted}: {data!r} instead of a greeting")
        greeted += 1
if greeted < n:
    sys.exit(f"only {greeted} of {n} connections greeted in 120 s")
held = rss()
print(f"{n} idle connections: RSS {before} KiB before, {held} KiB with them "
      f"({held / 1024:.1f} MiB), {(held - before) / n:.2f} KiB per connection")
for s in socks:
    s.close()
PY
