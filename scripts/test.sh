#!/usr/bin/env bash
# Builds Strata with -Werror and runs the whole test suite, then the CPU parts again under
# AddressSanitizer and UndefinedBehaviorSanitizer. Exits non-zero if anything fails.
# Usage: scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake --preset ci
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs"

if [ "${1:-}" != "--no-sanitize" ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --preset asan -j "$jobs"
fi
