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

# The Python package as a user installs it (README "Python", docs/python.md): `pip install .`
# into a venv that sees Debian's packages (PEP 668 refuses system installs), reusing the ci
# build, then the package's tests against the installed copy (its own `strata` and specs).
if grep -q '^STRATA_WITH_PYTHON:BOOL=ON' build/ci/CMakeCache.txt; then
  python=$(grep '^Python_EXECUTABLE:' build/ci/CMakeCache.txt | cut -d= -f2)
  "$python" -m venv --system-site-packages build/venv
  build/venv/bin/pip install --quiet --no-index --config-settings build-dir=build/ci .
  (cd build && PYTHONDONTWRITEBYTECODE=1 venv/bin/python -m pytest -q -p no:cacheprovider ../tests/python)
fi

# The CUDA-only build the GPU machines use (the gpu preset: no MPI, SimGrid or Qt, no
# -march=native; DESIGN "The GPU machine"): configured and built wherever nvcc is, so that a
# build without those dependencies cannot break unseen. Its tests are the ci preset's.
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cmake --preset gpu -DSTRATA_WERROR=ON >/dev/null
  cmake --build --preset gpu -j "$jobs"
fi

if [ "${1:-}" != "--no-sanitize" ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
  # The fuzz targets (tests/fuzz/, ctest label "fuzz") run here for STRATA_FUZZ_RUNS (5,000)
  # mutated inputs each (plan.json 100) under both sanitizers: every parser of specs and files.
  # Every test, except that of the executor's per-strategy equivalence runs (each is two mpirun
  # jobs of up to 8 ranks, ten times slower under the sanitizers) only five run: together
  # they cover dp, tp, pp (1F1B and interleaved), sequence parallelism, ZeRO-3, recompute,
  # context parallelism's ring with fused attention and tensor-parallel communication overlap's
  # rings (rotated views, in-place shifts).
  ctest --preset asan -j "$jobs" -E 'Tiny/Equivalence'
  ctest --preset asan -j "$jobs" \
    -R 'Tiny/Equivalence.*/(tiny_dp2_tp2_pp2_sp|tiny_dp2_tp2_zero3|tiny_pp2_interleaved|tiny_dp2_tp2_cp2|tiny_tp4_pp2_overlap_recompute)( |$)'
fi
