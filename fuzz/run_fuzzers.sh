#!/usr/bin/env bash
# fuzz/run_fuzzers.sh BUILD_DIR [TARGET...] — runs the libFuzzer targets built in BUILD_DIR
# (scripts/fuzz.sh builds them) for a bounded time each and prints one line per target:
#
#   fuzz: smtp_parser        ok     runs=1234567  exec/s=61728  cov=812  corpus=96  20s
#
# FUZZ_SECONDS (default 20) is each target's -max_total_time (0: only replay the corpora).
# A target's working corpus lives in BUILD_DIR/fuzz-work/<name> (seeded from
# fuzz/corpus/<name>, which is never written), so local runs keep what earlier runs found. A crash, a timeout (-timeout=10), an
# out-of-memory (-rss_limit_mb=2048) or a leak leaves the input in
# BUILD_DIR/fuzz-artifacts/ and its log tail on stderr; the script then exits 1.
# With no TARGET every *_fuzz binary in BUILD_DIR/fuzz runs, in name order.
# FUZZ_JOBS (default: the number of cores) targets run at once, each single-threaded, so
# each still gets FUZZ_SECONDS of one core; the lines are printed in name order at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: fuzz/run_fuzzers.sh BUILD_DIR [TARGET...]}
shift
build=$(cd "$build" && pwd)
seconds=${FUZZ_SECONDS:-20}
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "fuzz: FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2
  exit 2
fi

# Our own sanitizer settings, whatever the caller exported for its test runs.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:symbolize=1
if command -v llvm-symbolizer >/dev/null 2>&1; then
  export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$build"/fuzz/*_fuzz; do
    [ -x "$bin" ] && targets+=("$(basename "$bin" _fuzz)")
  done
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets in $build/fuzz (build them with scripts/fuzz.sh)" >&2
  exit 1
fi

jobs=${FUZZ_JOBS:-$(nproc)}
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: FUZZ_JOBS must be a positive whole number, not '$jobs'" >&2
  exit 2
fi
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"

# run_target NAME: runs one target and writes its summary line to fuzz-logs/NAME.result
# (first word: ok or FAILED, then the exit code, then the line to print).
run_target() {
  local name=$1
  local bin="$build/fuzz/${name}_fuzz"
  local work="$build/fuzz-work/$name"
  local log="$build/fuzz-logs/$name.log"
  mkdir -p "$work"
  rm -f "$build"/fuzz-artifacts/"$name"-*
  local args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1
              -artifact_prefix="$build/fuzz-artifacts/$name-")
  # -max_total_time=0 would mean "forever": FUZZ_SECONDS=0 replays the corpus only.
  if [ "$seconds" -gt 0 ]; then args+=(-max_total_time="$seconds"); else args+=(-runs=0); fi
  [ -f "$here/dicts/$name.dict" ] && args+=(-dict="$here/dicts/$name.dict")
  local seeds=()
  [ -d "$here/corpus/$name" ] && seeds+=("$here/corpus/$name")
  local start rc elapsed runs status cov corpus verdict rate
  start=$(date +%s)
  "$bin" "${args[@]}" "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  status=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
  verdict=ok
  if [ $rc -ne 0 ] || [ -z "$runs" ]; then verdict=FAILED; fi
  rate=$(( ${runs:-0} / (elapsed > 0 ? elapsed : 1) ))
  printf '%s %s fuzz: %-18s %-6s runs=%-10s exec/s=%-8s cov=%-6s corpus=%-6s %ss\n' \
    "$verdict" "$rc" "$name" "$verdict" "${runs:-?}" "$rate" "${cov:-?}" "${corpus:-?}" \
    "$elapsed" >"$build/fuzz-logs/$name.result"
}

for name in "${targets[@]}"; do
  rm -f "$build/fuzz-logs/$name.result"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_target "$name" &
done
wait

failed=()
for name in "${targets[@]}"; do
  result="$build/fuzz-logs/$name.result"
  log="$build/fuzz-logs/$name.log"
  if [ ! -s "$result" ]; then
    echo "FAILED ? fuzz: $name FAILED (no result)" >"$result"
  fi
  read -r verdict rc line <"$result"
  echo "$line"
  if [ "$verdict" != ok ]; then
    failed+=("$name")
    echo "fuzz: $name exited $rc; log $log; last lines:" >&2
    grep -vE '^#[0-9]+' "$log" 2>/dev/null | tail -n 40 >&2
    ls -1 "$build"/fuzz-artifacts/"$name"-* 2>/dev/null | sed 's/^/fuzz: artifact /' >&2
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
if [ "$seconds" -gt 0 ]; then
  echo "fuzz: all ${#targets[@]} targets ran ${seconds}s each without a crash"
else
  echo "fuzz: all ${#targets[@]} targets replayed their corpora without a crash"
fi
