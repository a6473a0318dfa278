#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite in two builds:
#   1. build/      — gcc, optimised (RelWithDebInfo): unit, integration and tidy tests.
#   2. build-asan/ — clang, AddressSanitizer + UndefinedBehaviorSanitizer, with libFuzzer
#      coverage: every libFuzzer target runs FUZZ_SECONDS (default 5) on its corpus, then
#      the same test suite runs under the sanitizers.
# One sanitizer build serves both the fuzzers and the sanitized tests, and the test binaries
# precompile their GoogleTest/abseil headers and compile their files in batches
# (RINGMAIL_UNITY_TESTS): a cold build on 2 cores is most of CI's time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

# No debug info in CI's optimised build (a third less compile and link time); the sanitizer
# build keeps line tables (-g1) for its stack traces.
scripts/build.sh build -DRINGMAIL_PCH=ON -DRINGMAIL_UNITY_TESTS=ON \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG"
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600)

CC=clang CXX=clang++ scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug \
  "-DCMAKE_CXX_FLAGS_DEBUG=-g1 -O1" "-DCMAKE_C_FLAGS_DEBUG=-g1 -O1" \
  -DRINGMAIL_SANITIZE=ON -DRINGMAIL_BUILD_FUZZ=ON -DRINGMAIL_BUILD_BENCH=OFF -DRINGMAIL_PCH=ON \
  -DRINGMAIL_UNITY_TESTS=ON
FUZZ_SECONDS=${FUZZ_SECONDS:-5} fuzz/run_fuzzers.sh build-asan

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 900)
