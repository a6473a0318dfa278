#!/usr/bin/env bash
# Runs one of the full campaigns of issue #9 (tests/campaigns/) and prints its figures, the
# "CAMPAIGN ..." lines that bench/RESULTS.md quotes:
#   bench/campaigns.sh crash      # 50 rounds of kill -9 under load, drain, verify
#   bench/campaigns.sh fault      # disk full, read-only spool, sink down, DNS down, slow sink
#   bench/campaigns.sh overload   # 20,000 connections vs max_connections 1,000, slowloris,
#                                 # pipelined garbage
# The short versions of the same tests run under ctest (scripts/test.sh). Environment:
# BUILD_DIR (default build-campaigns, configured and built here if needed),
# RINGMAIL_CAMPAIGN_SEED (replay a printed seed), RINGMAIL_CAMPAIGN_ROUNDS (crash rounds).
# The fault campaign mounts a tmpfs in a private mount namespace and sets the immutable
# attribute on spool directories: run as root, or those two parts are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-}
case "$which" in
  crash) filter='CrashCampaign.*' ;;
  fault) filter='FaultCampaign.*' ;;
  overload) filter='OverloadCampaign.*' ;;
  *) echo "usage: $0 crash|fault|overload" >&2; exit 2 ;;
esac
build=${BUILD_DIR:-build-campaigns}
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache >/dev/null
fi
cmake --build "$build" --target campaigns_tests -j"$(nproc)" >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
RINGMAIL_CAMPAIGN=full "$build/tests/campaigns_tests" --gtest_filter="$filter" | tee "$log" \
  || status=$?
echo
echo "== $which campaign: $(($(date +%s) - start)) s, exit $status"
grep -E '^(CAMPAIGN|.* seed )' "$log" || true
exit "$status"
