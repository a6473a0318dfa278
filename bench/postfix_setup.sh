#!/usr/bin/env bash
# bench/postfix_setup.sh — a throw-away Postfix for the acceptance benchmark.
#
#   bench/postfix_setup.sh start DIR PORT   configure and start Postfix with its config,
#                                           queue and data directories under DIR, smtpd on
#                                           127.0.0.1:PORT only
#   bench/postfix_setup.sh relay DIR PORT SINK_PORT
#                                           the same, but mail is relayed to an SMTP sink
#                                           on 127.0.0.1:SINK_PORT (relayhost, no DNS)
#   bench/postfix_setup.sh stop DIR         stop it (the caller removes DIR)
#
# Installs Debian's postfix package when missing ('No configuration': nothing is set up
# system-wide and no system instance is started). With `start`, accepted mail is put on
# hold (check_client_access static:HOLD), so Postfix never tries to deliver and the
# benchmark measures acceptance: smtpd → cleanup → queue file fsync → 250. With `relay`,
# every recipient (any domain: mydestination is empty and 127.0.0.0/8 may relay) goes to
# relayhost [127.0.0.1]:SINK_PORT through Postfix's smtp client, with its stock concurrency
# and connection cache (bench/relay_bench.sh). Nothing listens or connects anywhere but
# 127.0.0.1. Must run as root (Postfix's master drops privileges).
set -euo pipefail

ensure_postfix() {
  if command -v postfix >/dev/null && command -v smtp-source >/dev/null; then return; fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
}

start() {
  local dir=$1 port=$2 sink_port=${3:-}
  local restrictions="check_client_access static:HOLD, permit_mynetworks, reject"
  local relayhost=""
  if [[ -n $sink_port ]]; then
    restrictions="permit_mynetworks, reject"
    relayhost="[127.0.0.1]:$sink_port"
  fi
  ensure_postfix
  mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
  local master=/etc/postfix/master.cf
  [[ -f $master ]] || master=/usr/share/postfix/master.cf.dist
  # smtpd on our port, not chrooted (a chroot would need a copy of /etc in the spool).
  # Relaying: no service chrooted either (the smtp client would need copies of /etc files
  # inside the spool).
  awk -v port="$port" -v nochroot="${sink_port:+1}" '
    /^smtp[ \t]+inet/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
    /^#?(submission|smtps|submissions)[ \t]+inet/ { next }
    nochroot && /^[a-z]/ && NF >= 8 { $5 = "n" }
    { print }' "$master" > "$dir/etc/master.cf"
  cat > "$dir/etc/main.cf" <<CONF
# Written by bench/postfix_setup.sh: loopback-only; accept into the hold queue, or relay
# everything to the sink named by relayhost.
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = $relayhost
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_recipient_restrictions = $restrictions
smtpd_relay_restrictions = permit_mynetworks, reject
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
anvil_rate_time_unit = 60s
message_size_limit = 52428800
maillog_file_prefixes = $dir
maillog_file = $dir/maillog
biff = no
CONF
  chown root:root "$dir" "$dir/etc" "$dir/spool"
  chmod 755 "$dir" "$dir/etc" "$dir/spool"
  chown postfix "$dir/data"
  postfix -c "$dir/etc" check >/dev/null 2>&1 || true  # creates the queue directories
  postfix -c "$dir/etc" start >/dev/null 2>&1
  # Ready when smtpd answers on the port (bounded: 10 s).
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "postfix did not come up on 127.0.0.1:$port; see $dir/maillog" >&2
  return 1
}

stop() {
  local dir=$1
  postfix -c "$dir/etc" stop >/dev/null 2>&1 || postfix -c "$dir/etc" abort >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start "$2" "$3" ;;
  relay) start "$2" "$3" "$4" ;;
  stop) stop "$2" ;;
  *) echo "usage: $0 start DIR PORT | relay DIR PORT SINK_PORT | stop DIR" >&2; exit 2 ;;
esac
