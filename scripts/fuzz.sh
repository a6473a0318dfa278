#!/usr/bin/env bash
# scripts/fuzz.sh — builds the libFuzzer targets (fuzz/) in build-fuzz with clang and runs
# each for FUZZ_SECONDS (default 20) seconds; exits non-zero if any target finds a crash.
# One configure, then only the fuzz targets and the libraries they link are built. Prints
# one line per target with its execution count (fuzz/run_fuzzers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dir=build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRINGMAIL_BUILD_FUZZ=ON -DRINGMAIL_BUILD_TESTS=OFF -DRINGMAIL_BUILD_BENCH=OFF >/dev/null
fi
if ! cmake --build "$dir" --target fuzz_targets -j"$(nproc)" >"$dir/fuzz-build.log" 2>&1; then
  tail -n 60 "$dir/fuzz-build.log" >&2
  echo "fuzz: build failed (full log: $dir/fuzz-build.log)" >&2
  exit 1
fi
exec fuzz/run_fuzzers.sh "$dir" "$@"
