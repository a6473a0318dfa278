#!/usr/bin/env bash
# bench/tls_accept_bench.sh — TLS acceptance on 127.0.0.1: ringmaild with STARTTLS against
# Postfix with STARTTLS on the same certificate, and ringmaild's CPU per message with and
# without TLS.
#
#   bench/tls_accept_bench.sh [--build DIR] [--runs N] [--conns N] [--messages N]
#                             [--size BYTES] [--no-postfix] [--modes "reused new ..."]
#                             [--compare DIR] [--loops N] [--alt-loops M]
#                             [--client-threads N]
#
# Client: `ringload send --tls starttls` (its summary's messages_per_s), in three modes:
#   reused   --messages-per-connection 0: one handshake per connection, many messages
#   new      --messages-per-connection 1: a TCP connection and a handshake per message, so
#            messages/s is also handshakes/s
#   resumed  as `new`, with --tls-resume: each connection resumes the TLS 1.3 session of
#            its slot's last full handshake (both servers issue tickets: wolfSSL's default,
#            Postfix's smtpd_tls_session_cache_timeout), as an MTA's client session cache
#            does (a server that issued no usable ticket shows 0% resumed)
# plus `plain` (no TLS, reused connections) for ringmaild's CPU comparison. --modes runs a
# subset (default all four; a ringload older than --tls-resume needs it without `resumed`).
# Systems: `ringmaild` (the default: tls_crypto_offload on, and ringload offloads too),
# `ringmaild-sw` (a second ringmaild with tls_crypto_offload = false, driven by
# ringload --no-tls-offload: the configuration before the offload, wolfSSL's C crypto on
# both ends) and `postfix` (driven by the default ringload). --no-sw leaves ringmaild-sw out.
# --compare DIR adds `ringmaild-b`: the ringmaild and ringload of another build (e.g. the
# commit before a change), offload on, in the same interleaving, for a same-run A/B.
# Every ringmaild runs --loops event loops (default 2, licensed by the test license as in
# bench/run_matrix.sh: an operator runs it licensed for their cores; 1 is the unlicensed
# default), its ESMTP listener and its domain records (delivery_pool) in that pool (one
# SO_REUSEPORT socket per loop; the suspended domain's record on one of them). --alt-loops M
# adds `ringmaild-alt`: the same build with M loops, in the same interleaving, for a same-run
# loops A/B. ringload runs --client-threads loops (default 2: one per core; the same client
# settings drive every system of a run).
# ringmaild's CPU per message is read from /proc/PID/stat (utime + stime: the whole process,
# every loop thread and io-wq worker, exited ones too) around each run,
# the client's (ringload: its half of every handshake shares the same cores) from
# /usr/bin/time, and resumed cells print the share of handshakes that resumed. Cells are
# interleaved (for each run: every mode of every system in turn), so a ratio compares runs
# made under the same machine load. Prints one TSV line per cell and a median summary.
# The certificate is a throwaway ECDSA P-256 one made with openssl in a temporary directory.
# Everything listens on and connects to 127.0.0.1 only; every cell is bounded by timeout.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib/common.sh"
BUILD=$ROOT/build
RUNS=3
CONNS=20
MESSAGES=2000
SIZE=10240
POSTFIX=1
SW=1
MODES="reused new resumed plain"
COMPARE=""
LOOPS=2
ALT_LOOPS=""
CLIENT_THREADS=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --no-postfix) POSTFIX=0; shift ;;
    --no-sw) SW=0; shift ;;
    --modes) MODES=$2; shift 2 ;;
    --compare) COMPARE=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    --alt-loops) ALT_LOOPS=$2; shift 2 ;;
    --client-threads) CLIENT_THREADS=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--conns N] [--messages N] [--size BYTES]" \
            "[--no-postfix] [--no-sw] [--modes LIST] [--compare DIR] [--loops N]" \
            "[--alt-loops M] [--client-threads N]" >&2; exit 2 ;;
  esac
done

RINGLOAD=$BUILD/tools/ringload/ringload
RINGMAILD=$BUILD/tools/ringmaild/ringmaild
RINGCTL=$BUILD/tools/ringctl/ringctl
for b in "$RINGLOAD" "$RINGMAILD" "$RINGCTL"; do
  [[ -x $b ]] || { echo "missing $b (build ringload ringmaild ringctl)" >&2; exit 2; }
done
B_RINGLOAD=""
B_RINGMAILD=""
if [[ -n $COMPARE ]]; then
  B_RINGLOAD=$COMPARE/tools/ringload/ringload
  B_RINGMAILD=$COMPARE/tools/ringmaild/ringmaild
  for b in "$B_RINGLOAD" "$B_RINGMAILD"; do
    [[ -x $b ]] || { echo "missing $b (--compare: build ringload ringmaild)" >&2; exit 2; }
  done
fi

WORK=$(mktemp -d /tmp/tls_accept_bench.XXXXXX)
chmod 755 "$WORK"
RM_PID=""
SW_PID=""
B_PID=""
ALT_PID=""
PF_DIR=""
cleanup() {
  if [[ -n $RM_PID ]]; then kill "$RM_PID" 2>/dev/null; wait "$RM_PID" 2>/dev/null; fi
  if [[ -n $SW_PID ]]; then kill "$SW_PID" 2>/dev/null; wait "$SW_PID" 2>/dev/null; fi
  if [[ -n $B_PID ]]; then kill "$B_PID" 2>/dev/null; wait "$B_PID" 2>/dev/null; fi
  if [[ -n $ALT_PID ]]; then kill "$ALT_PID" 2>/dev/null; wait "$ALT_PID" 2>/dev/null; fi
  [[ -n $PF_DIR ]] && "$ROOT/bench/postfix_setup.sh" stop "$PF_DIR" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.localdomain -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 644 "$WORK/cert.pem" "$WORK/key.pem"

# ringmaild on LOOPS loops, TLS offered; the recipients' domain is suspended so accepted
# mail stays queued (acceptance only, like Postfix's hold queue; still spooled durably).
# start_ringmaild DIR PORT EXTRA_GLOBAL [BINARY] [LOOPS]: starts one in the background, its
# PID in LAST_PID (not through $(...): the daemon must stay this shell's child, for `wait`)
start_ringmaild() {
  local dir=$1 port=$2 extra=$3 binary=${4:-$RINGMAILD} loops=${5:-$LOOPS} listener_loop=""
  mkdir -p "$dir/spool" "$dir/logs"
  [[ $loops -gt 1 ]] && listener_loop='event_loop = "esmtp"'
  cat > "$dir/ringmaild.conf" <<CONF
spool_dir = "$dir/spool"
log_dir = "$dir/logs"
$extra
$(loops_conf "$loops" esmtp delivery)
ESMTP_Listener {
  $listener_loop
  max_connections = 2000
  max_connections_per_ip = 2000
  relay_hosts = ( "127.0.0.0/8" )
  tls_certificate = "$WORK/cert.pem"
  tls_key = "$WORK/key.pem"
  Listen "127.0.0.1:$port" { }
}
Control_Listener { Listen "$dir/control.sock" { } }
CONF
  "$binary" --config "$dir/ringmaild.conf" > "$dir/log" 2>&1 &
  LAST_PID=$!
}
wait_ringmaild() {
  local dir=$1 port=$2
  wait_port "$port" 100 || { echo "ringmaild did not start:"; cat "$dir/log"; exit 1; }
  wait_socket "$dir/control.sock"
  "$RINGCTL" --socket "$dir/control.sock" domain suspend bench.test >/dev/null
}
RM_PORT=$(free_port)
start_ringmaild "$WORK/rm" "$RM_PORT" ""
RM_PID=$LAST_PID
wait_ringmaild "$WORK/rm" "$RM_PORT"
SW_PORT=""
if [[ $SW -eq 1 ]]; then
  SW_PORT=$(free_port)
  start_ringmaild "$WORK/sw" "$SW_PORT" "tls_crypto_offload = false"
  SW_PID=$LAST_PID
  wait_ringmaild "$WORK/sw" "$SW_PORT"
fi
B_PORT=""
if [[ -n $COMPARE ]]; then
  B_PORT=$(free_port)
  start_ringmaild "$WORK/b" "$B_PORT" "" "$B_RINGMAILD"
  B_PID=$LAST_PID
  wait_ringmaild "$WORK/b" "$B_PORT"
fi

ALT_PORT=""
if [[ -n $ALT_LOOPS ]]; then
  ALT_PORT=$(free_port)
  start_ringmaild "$WORK/alt" "$ALT_PORT" "" "$RINGMAILD" "$ALT_LOOPS"
  ALT_PID=$LAST_PID
  wait_ringmaild "$WORK/alt" "$ALT_PORT"
fi

PF_PORT=""
if [[ $POSTFIX -eq 1 ]]; then
  PF_DIR=$WORK/postfix
  PF_PORT=$(free_port)
  "$ROOT/bench/postfix_setup.sh" start "$PF_DIR" "$PF_PORT" >/dev/null
  postconf -c "$PF_DIR/etc" -e "smtpd_tls_cert_file=$WORK/cert.pem" \
    "smtpd_tls_key_file=$WORK/key.pem" "smtpd_tls_security_level=may" \
    "smtpd_tls_loglevel=0"
  postfix -c "$PF_DIR/etc" reload >/dev/null 2>&1
  wait_port "$PF_PORT" 100 || { echo "postfix did not start"; exit 1; }
fi

# cell SYSTEM PORT MODE -> "msgs_per_s cpu_us_per_msg resumed_pct client_cpu_us_per_msg" (cpu
# only for ringmaild, resumed share only for the resumed mode)
cell() {
  local system=$1 port=$2 mode=$3 extra=() before after out pid="" load=$RINGLOAD
  case $mode in
    reused) extra=(--tls starttls --messages-per-connection 0) ;;
    new) extra=(--tls starttls --messages-per-connection 1) ;;
    resumed) extra=(--tls starttls --messages-per-connection 1 --tls-resume) ;;
    plain) extra=(--messages-per-connection 0) ;;
  esac
  [[ $system == ringmaild ]] && pid=$RM_PID
  [[ $system == ringmaild-alt ]] && pid=$ALT_PID
  if [[ $system == ringmaild-b ]]; then
    pid=$B_PID
    load=$B_RINGLOAD
  fi
  if [[ $system == ringmaild-sw ]]; then
    pid=$SW_PID
    [[ $mode != plain ]] && extra+=(--no-tls-offload)
  fi
  [[ -n $pid ]] && before=$(proc_cpu_ticks "$pid")
  out=$(/usr/bin/time -f "%U %S" -o "$WORK/client.time" \
    timeout 300 "$load" send --target "127.0.0.1:$port" --connections "$CONNS" \
    --messages "$MESSAGES" --size "$SIZE" --threads "$CLIENT_THREADS" \
    --rcpt-template "rcpt{n}@bench.test" --io-timeout 120 --json --quiet "${extra[@]}" \
    2>/dev/null)
  local mps
  mps=$(sed -n 's/.*"messages_per_s":\([0-9.]*\).*/\1/p' <<<"$out")
  local errors
  errors=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$out")
  [[ -z $mps || ${errors:-1} != 0 ]] && { echo "- - - -"; return; }
  local ccpu
  ccpu=$(awk -v n="$MESSAGES" 'NF == 2 && $1 ~ /^[0-9.]+$/ { c = ($1 + $2) * 1e6 / n }
                               END { if (c != "") printf "%.1f", c; else print "-" }' \
         "$WORK/client.time")
  local cpu=- resumed=-
  if [[ -n $pid ]]; then
    after=$(proc_cpu_ticks "$pid")
    local hz
    hz=$(getconf CLK_TCK)
    cpu=$(awk -v t=$((after - before)) -v n="$MESSAGES" -v hz="$hz" \
      'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
  fi
  if [[ $mode == resumed ]]; then
    resumed=$(awk -v h="$(sed -n 's/.*"tls_handshakes":\([0-9]*\).*/\1/p' <<<"$out")" \
      -v r="$(sed -n 's/.*"tls_resumed":\([0-9]*\).*/\1/p' <<<"$out")" \
      'BEGIN { printf "%.0f", (h > 0 ? 100 * r / h : 0) }')
  fi
  echo "$mps $cpu $resumed $ccpu"
}

echo -e "run\tsystem\tmode\tmsgs_per_s\tcpu_us_per_msg\tresumed_pct\tclient_cpu_us_per_msg"
TSV=$WORK/cells.tsv
for run in $(seq "$RUNS"); do
  for mode in $MODES; do
    for system in ringmaild ringmaild-alt ringmaild-b ringmaild-sw postfix; do
      [[ $system == postfix && ( $POSTFIX -eq 0 || $mode == plain ) ]] && continue
      [[ $system == ringmaild-sw && $SW -eq 0 ]] && continue
      [[ $system == ringmaild-b && -z $COMPARE ]] && continue
      [[ $system == ringmaild-alt && -z $ALT_LOOPS ]] && continue
      port=$RM_PORT
      [[ $system == postfix ]] && port=$PF_PORT
      [[ $system == ringmaild-sw ]] && port=$SW_PORT
      [[ $system == ringmaild-b ]] && port=$B_PORT
      [[ $system == ringmaild-alt ]] && port=$ALT_PORT
      read -r mps cpu resumed ccpu < <(cell "$system" "$port" "$mode")
      echo -e "$run\t$system\t$mode\t$mps\t$cpu\t$resumed\t$ccpu" | tee -a "$TSV"
    done
  done
done

echo
echo "median over $RUNS runs: $CONNS connections, $MESSAGES messages of $SIZE bytes," \
  "ringmaild $LOOPS loops${ALT_LOOPS:+ (ringmaild-alt $ALT_LOOPS)}," \
  "ringload $CLIENT_THREADS threads"
for key in "ringmaild reused" "ringmaild new" "ringmaild resumed" "ringmaild plain" \
           "ringmaild-sw reused" "ringmaild-sw new" "ringmaild-sw resumed" "ringmaild-sw plain" \
           "ringmaild-b reused" "ringmaild-b new" "ringmaild-b resumed" "ringmaild-b plain" \
           "ringmaild-alt reused" "ringmaild-alt new" "ringmaild-alt resumed" \
           "ringmaild-alt plain" \
           "postfix reused" "postfix new" "postfix resumed"; do
  set -- $key
  mps=$(awk -F'\t' -v s="$1" -v m="$2" '$2 == s && $3 == m && $4 != "-" { print $4 }' "$TSV" |
        median)
  cpu=$(awk -F'\t' -v s="$1" -v m="$2" '$2 == s && $3 == m && $5 != "-" { print $5 }' "$TSV" |
        median)
  resumed=$(awk -F'\t' -v s="$1" -v m="$2" '$2 == s && $3 == m && $6 != "-" { print $6 }' \
            "$TSV" | median)
  ccpu=$(awk -F'\t' -v s="$1" -v m="$2" '$2 == s && $3 == m && $7 != "-" { print $7 }' "$TSV" |
         median)
  if [[ -n $mps ]]; then  # (not `&&`: a skipped last row would be the script's status)
    printf "%-12s %-8s %10s msg/s   ringmaild cpu %s us/msg   client cpu %s us/msg%s\n" \
      "$1" "$2" "$mps" "${cpu:--}" "${ccpu:--}" \
      "${resumed:+   resumed ${resumed}% of handshakes}"
  fi
done

# Ratios of the medians: against Postfix (issue #8: >= 3x), offload on against off, and
# ringmaild's CPU per message with TLS against plaintext (issue #8: <= 2x at 10 KiB).
med() {  # med SYSTEM MODE COLUMN
  awk -F'\t' -v s="$1" -v m="$2" -v c="$3" '$2 == s && $3 == m && $c != "-" { print $c }' \
    "$TSV" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else printf "-" }'; }
echo
for mode in reused new resumed; do
  printf "%-8s ringmaild/postfix %s   ringmaild/ringmaild-sw %s   cpu ringmaild/ringmaild-sw %s\n" \
    "$mode" "$(ratio "$(med ringmaild "$mode" 4)" "$(med postfix "$mode" 4)")" \
    "$(ratio "$(med ringmaild "$mode" 4)" "$(med ringmaild-sw "$mode" 4)")" \
    "$(ratio "$(med ringmaild "$mode" 5)" "$(med ringmaild-sw "$mode" 5)")"
  if [[ -n $COMPARE ]]; then
    printf "%-8s ringmaild/ringmaild-b %s   ringmaild-b/postfix %s   %s %s\n" \
      "$mode" "$(ratio "$(med ringmaild "$mode" 4)" "$(med ringmaild-b "$mode" 4)")" \
      "$(ratio "$(med ringmaild-b "$mode" 4)" "$(med postfix "$mode" 4)")" \
      "cpu ringmaild/ringmaild-b" \
      "$(ratio "$(med ringmaild "$mode" 5)" "$(med ringmaild-b "$mode" 5)")"
    printf "%-8s client cpu ringmaild/ringmaild-b %s\n" "$mode" \
      "$(ratio "$(med ringmaild "$mode" 7)" "$(med ringmaild-b "$mode" 7)")"
  fi
  if [[ -n $ALT_LOOPS ]]; then
    printf "%-8s ringmaild/ringmaild-alt (%s/%s loops) %s   ringmaild-alt/postfix %s   %s %s\n" \
      "$mode" "$LOOPS" "$ALT_LOOPS" \
      "$(ratio "$(med ringmaild "$mode" 4)" "$(med ringmaild-alt "$mode" 4)")" \
      "$(ratio "$(med ringmaild-alt "$mode" 4)" "$(med postfix "$mode" 4)")" \
      "cpu ringmaild/ringmaild-alt" \
      "$(ratio "$(med ringmaild "$mode" 5)" "$(med ringmaild-alt "$mode" 5)")"
  fi
done
printf "cpu per message, TLS reused / plain: ringmaild %s   ringmaild-sw %s   ringmaild-alt %s\n" \
  "$(ratio "$(med ringmaild reused 5)" "$(med ringmaild plain 5)")" \
  "$(ratio "$(med ringmaild-sw reused 5)" "$(med ringmaild-sw plain 5)")" \
  "$(ratio "$(med ringmaild-alt reused 5)" "$(med ringmaild-alt plain 5)")"
