#!/usr/bin/env bash
# Simulator speed at scale (docs/benchmarks.md, "Speed at scale"): wall time, user CPU time, peak
# RSS, SimGrid activities and step time of `strata simulate` for a GPT-6.7B-class step (tp 8,
# pp 2) on 1,024 / 4,096 / 16,384 A100s, GPT-3 175B on 1,024 A100s (the README's main job) and
# Llama 3 405B on 16,384 H100s (Meta's tp 8, pp 16, dp 128). Several binaries are run in turn,
# case by case and repetition by repetition, so that old and new are timed in the same minutes
# on a shared machine; the script prints one line per run and the median wall time per binary
# and case. It asserts nothing.
#
#   bench/sim_scale.sh [--strata BIN]... [--reps N] [--cases LIST]
#
#   --strata BIN   a strata binary (repeatable; default build/ci/cli/strata)
#   --reps N       runs per binary and case (default 3)
#   --cases LIST   comma-separated among gpt6.7b-1k, gpt6.7b-4k, gpt6.7b-16k, gpt3-175b,
#                  llama3-405b (default: all but llama3-405b, which takes minutes before the fix)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
binaries=()
reps=3
cases="gpt6.7b-1k,gpt6.7b-4k,gpt6.7b-16k,gpt3-175b"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --strata) binaries+=("$2"); shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "sim_scale.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${#binaries[@]} -gt 0 ]] || binaries=("$root/build/ci/cli/strata")

# The arguments of `strata simulate` for each case.
case_args() {
  local specs="$root/bench/specs" models="$root/configs/models"
  case "$1" in
    gpt6.7b-1k) echo "--model $models/gpt3-6.7b.json --cluster dgx-a100-128n --nodes 128 --strategy $specs/gpt3-6.7b-tp8-pp2-dp64.json" ;;
    gpt6.7b-4k) echo "--model $models/gpt3-6.7b.json --cluster dgx-a100-128n --nodes 512 --strategy $specs/gpt3-6.7b-tp8-pp2-dp256.json" ;;
    gpt6.7b-16k) echo "--model $models/gpt3-6.7b.json --cluster dgx-a100-128n --nodes 2048 --strategy $specs/gpt3-6.7b-tp8-pp2-dp1024.json" ;;
    gpt3-175b) echo "--model gpt3-175b --cluster dgx-a100-128n --strategy gpt3-175b-tp8-pp8-dp16" ;;
    llama3-405b) echo "--model $models/llama3-405b.json --cluster dgx-h100-128n --nodes 2048 --strategy $specs/llama3-405b-tp8-pp16-dp128.json" ;;
    *) echo "sim_scale.sh: unknown case '$1'" >&2; exit 2 ;;
  esac
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%-12s %-40s %4s %9s %9s %9s %11s %14s\n' case binary rep wall_s user_s rss_MiB activities step_s
IFS=',' read -r -a case_list <<< "$cases"
for c in "${case_list[@]}"; do
  read -r -a args <<< "$(case_args "$c")"
  for ((rep = 1; rep <= reps; ++rep)); do
    for b in "${binaries[@]}"; do
      /usr/bin/time -f "%e %U %M" -o "$tmp/time" "$b" simulate "${args[@]}" --json "$tmp/r.json" \
        > /dev/null
      read -r wall user rss < "$tmp/time"
      read -r activities step < <(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(r["simulation"]["simgrid_activities"], repr(r["step_time_s"]))' "$tmp/r.json")
      printf '%-12s %-40s %4d %9.2f %9.2f %9.1f %11d %14s\n' "$c" "$b" "$rep" "$wall" "$user" \
        "$(echo "$rss / 1024" | bc -l)" "$activities" "$step" | tee -a "$tmp/all"
    done
  done
done
echo
echo "median wall time (min-max) per case and binary:"
python3 - "$tmp/all" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault((f[0], f[1]), []).append(float(f[3]))
for (c, b), walls in runs.items():
    print(f"  {c:<12} {b:<40} {statistics.median(walls):8.2f} s ({min(walls):.2f}-{max(walls):.2f}, {len(walls)} runs)")
EOF
