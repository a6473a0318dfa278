#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: unit, integration and tidy tests in an
# optimised build, a short run of every libFuzzer target (FUZZ_SECONDS each, default 10),
# then the same tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

scripts/build.sh build
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600)

FUZZ_SECONDS=${FUZZ_SECONDS:-10} scripts/fuzz.sh

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DRINGMAIL_SANITIZE=ON \
  -DRINGMAIL_BUILD_BENCH=OFF
(cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 900)
