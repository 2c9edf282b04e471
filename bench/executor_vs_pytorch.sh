#!/usr/bin/env bash
# Tokens/s of the CPU executor (`strata run`, 1 and 2 ranks) beside the PyTorch reference
# (tests/reference/gpt_reference.py --bench) on the same model and global batch, with ratios.
# A benchmark, not a test: it asserts nothing about time. It does check that every run computes
# the same losses (same weights and data), so it never compares different computations.
#
# Usage: bench/executor_vs_pytorch.sh [--steps K] [--warmup W] [--strata PATH]
#                                     [--model M] [--strategy-1 S1] [--strategy-2 S2]
#                                     [--openblas DIR] [--skip-system-blas]
#   --steps K      timed steps per run (default 3); medians are over these
#   --warmup W     untimed steps first (default 1)
#   --strata PATH  the strata executable (default build/ci/cli/strata)
#   --model M      default gpt-10m; --strategy-1/-2 default bench-10m-1rank / bench-10m-dp2
#   --openblas DIR also time PyTorch with the OpenBLAS libblas.so.3 in DIR (LD_LIBRARY_PATH),
#                  e.g. the openblas-pthread folder of an extracted libopenblas0-pthread .deb;
#                  Debian's python3-torch otherwise uses whatever libblas.so.3 the system has
#                  (on a plain Debian 12 with scripts/setup.sh: netlib's reference BLAS).
#   --skip-system-blas  with --openblas: skip the (slow) runs on the system libblas.so.3
# Run as root: the OMPI_ALLOW_RUN_AS_ROOT variables are set for mpirun.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STEPS=3
WARMUP=1
STRATA="$ROOT/build/ci/cli/strata"
MODEL=gpt-10m
S1=bench-10m-1rank
S2=bench-10m-dp2
OPENBLAS=""
SYSTEM_BLAS=1
PY=/usr/bin/python3
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --strata) STRATA="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --strategy-1) S1="$2"; shift 2 ;;
    --strategy-2) S2="$2"; shift 2 ;;
    --openblas) OPENBLAS="$2"; shift 2 ;;
    --skip-system-blas) SYSTEM_BLAS=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "executor_vs_pytorch.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$STRATA" ] || { echo "executor_vs_pytorch.sh: no strata at $STRATA (build it first)" >&2; exit 2; }
"$PY" -c "import torch" 2>/dev/null ||
  { echo "executor_vs_pytorch.sh: $PY cannot import torch: run scripts/setup.sh" >&2; exit 2; }
[ "$SYSTEM_BLAS" = 1 ] || [ -n "$OPENBLAS" ] ||
  { echo "executor_vs_pytorch.sh: --skip-system-blas needs --openblas" >&2; exit 2; }
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

OUT="$(mktemp -d /tmp/strata-bench.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
TOTAL=$((STEPS + WARMUP))
REF="$ROOT/tests/reference/gpt_reference.py"
torch_run() {  # threads json [env...]
  local threads="$1" json="$2"
  shift 2
  env OMP_NUM_THREADS="$threads" "$@" "$PY" "$REF" --model "$MODEL" --strategy "$S1" --bench \
    --steps "$STEPS" --warmup "$WARMUP" --threads "$threads" --json "$OUT/$json"
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== strata, 1 rank ($S1)"
"$STRATA" run --model "$MODEL" --strategy "$S1" --steps "$TOTAL" --json "$OUT/strata1.json"
echo "== strata, 2 ranks ($S2)"
mpirun -np 2 --oversubscribe "$STRATA" run --model "$MODEL" --strategy "$S2" --steps "$TOTAL" \
  --json "$OUT/strata2.json"
if [ "$SYSTEM_BLAS" = 1 ]; then
  for threads in 1 2; do
    echo "== pytorch reference, $threads thread(s), system libblas.so.3"
    torch_run "$threads" "torch$threads.json"
  done
fi
if [ -n "$OPENBLAS" ]; then
  for threads in 1 2; do
    echo "== pytorch reference, $threads thread(s), OpenBLAS from $OPENBLAS"
    torch_run "$threads" "torch${threads}_openblas.json" \
      LD_LIBRARY_PATH="$OPENBLAS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      OPENBLAS_NUM_THREADS="$threads"
  done
fi
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$OUT" "$WARMUP" <<'PYEOF'
import json, os, statistics, sys
out, warmup = sys.argv[1], int(sys.argv[2])
runs = [("strata run, 1 rank", "strata1.json"), ("strata run, 2 ranks (dp 2)", "strata2.json"),
        ("pytorch, 1 thread", "torch1.json"), ("pytorch, 2 threads", "torch2.json"),
        ("pytorch + OpenBLAS, 1 thread", "torch1_openblas.json"),
        ("pytorch + OpenBLAS, 2 threads", "torch2_openblas.json")]
rows = []
for label, name in runs:
    path = os.path.join(out, name)
    if not os.path.exists(path):
        continue
    with open(path) as f:
        d = json.load(f)
    tps = [s["tokens_per_s"] for s in d["steps"][warmup:]]
    rows.append((label, statistics.median(tps), min(tps), max(tps), len(tps), d["losses"]))
med = {r[0]: r[1] for r in rows}
print("\n%-32s %10s %21s %6s" % ("run", "tokens/s", "spread (min-max)", "steps"))
for label, m, lo, hi, n, _ in rows:
    print("%-32s %10.0f %10.0f-%-10.0f %6d" % (label, m, lo, hi, n))


def ratio(a, b):
    if a in med and b in med:
        print("  %-28s / %-30s = %.2f" % (a, b, med[a] / med[b]))


print("\nratios of medians:")
ratio("strata run, 1 rank", "pytorch, 1 thread")
ratio("strata run, 2 ranks (dp 2)", "pytorch, 2 threads")
ratio("strata run, 1 rank", "pytorch + OpenBLAS, 1 thread")
ratio("strata run, 2 ranks (dp 2)", "pytorch + OpenBLAS, 2 threads")
ratio("strata run, 2 ranks (dp 2)", "strata run, 1 rank")
ref = rows[0][5]
worst = max(abs(x - y) / abs(y) for r in rows for x, y in zip(r[5], ref))
print("losses of every run agree with strata's 1-rank run within %.1e relative over %d steps "
      "(same weights and data)" % (worst, len(ref)))
if worst > 1e-4:
    print("WARNING: the runs do not compute the same training; the comparison is not like for like")
    sys.exit(1)
PYEOF
