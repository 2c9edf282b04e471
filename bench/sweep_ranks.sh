#!/usr/bin/env bash
# Distributed sweeps (docs/distributed.md, docs/benchmarks.md "Sweeps over ranks"): the same
# sweep of GPT-3 175B on 1,024 A100s (micro-batch 1, 2, 4 x dp 4, 8, 16: nine points of one to
# a few seconds each) under `mpirun -np 1` and `mpirun -np 2`, one simulation at a time per rank
# (--jobs 1), checks that the two sweep.csv files are identical, and prints the wall times, the
# speed-up and what the per-point times (timing.csv) predict for N ranks on a cluster: at best
# max(sum / N, longest), with dynamic hand-out at worst sum / N + longest. It asserts only the
# identity of the CSVs.
#
#   bench/sweep_ranks.sh [--strata BIN] [--ranks LIST]
#
#   --strata BIN   the strata binary (default build/ci/cli/strata)
#   --ranks LIST   comma-separated world sizes to run (default 1,2)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
strata="$root/build/ci/cli/strata"
ranks="1,2"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --strata) strata="$2"; shift 2 ;;
    --ranks) ranks="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "sweep_ranks.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
launcher=(mpirun --oversubscribe)
if [[ $(id -u) == 0 ]]; then launcher+=(--allow-run-as-root); fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sweep=(sweep --model gpt3-175b --cluster dgx-a100-128n --strategy gpt3-175b-tp8-pp8-dp16
       --vary strategy.micro_batch_size=1,2,4 --vary strategy.dp=4,8,16 --jobs 1)

echo "host: $(nproc) cores; $("$strata" version)"
declare -A wall
for n in ${ranks//,/ }; do
  start=$(date +%s.%N)
  "${launcher[@]}" -np "$n" "$strata" "${sweep[@]}" --out "$work/np$n" >/dev/null 2>"$work/np$n.log"
  wall[$n]=$(python3 -c "print($(date +%s.%N) - $start)")
  printf 'mpirun -np %s: %.2f s wall\n' "$n" "${wall[$n]}"
done
first=${ranks%%,*}
for n in ${ranks//,/ }; do
  cmp -s "$work/np$first/sweep.csv" "$work/np$n/sweep.csv" ||
    { echo "sweep.csv of -np $n differs from -np $first" >&2; exit 1; }
  [[ $n == "$first" ]] || printf 'speed-up -np %s over -np %s: %.2fx\n' "$n" "$first" \
    "$(python3 -c "print(${wall[$first]} / ${wall[$n]})")"
done
echo "sweep.csv identical for every world size"
python3 - "$work/np$first/timing.csv" <<'PY'
import csv, sys
t = [float(r["seconds"]) for r in csv.DictReader(open(sys.argv[1])) if r["seconds"]]
total, longest = sum(t), max(t)
print(f"per point: {len(t)} points, {total:.2f} s in all, longest {longest:.2f} s, "
      f"shortest {min(t):.2f} s")
for n in (2, 4, 8, 16, 64):
    best, worst = max(total / n, longest), total / n + longest
    print(f"  {n:3d} ranks: between {best:.2f} s and {worst:.2f} s "
          f"(speed-up {total / worst:.1f}x to {total / best:.1f}x)")
PY
