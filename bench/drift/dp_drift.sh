#!/usr/bin/env bash
# Data-parallel drift study (docs/simulator.md, "Data-parallel scale: what the drift could be"):
# simulates a GPT-3 6.7B step (tp 8, pp 2, ZeRO-1, selective recompute, SP, 8 micro-batches of
# one sequence per replica) at dp 16 / 64 / 256 / 1024 (256 to 16,384 A100s) on variants of the
# bundled dgx-a100-128n cluster and cost table, and prints the step time of each and its change
# from the "wire" variant. It asserts nothing; it shows how each candidate mechanism moves the
# prediction as dp grows.
#
#   bench/drift/dp_drift.sh [--strata BIN]
#
# Variants (the change from the bundled cluster and cost table):
#   wire         collectives at the links' latencies only (1.0 us per NVSwitch hop, 2.0 us per
#                InfiniBand path): the table's links.software_latency model "none", as before
#                NCCL's software latency was modelled
#   bundled      as shipped: plus NCCL's software latency (its tuning model, NCCL 2.7-2.8:
#                per call and per ring step or tree level, LL or Simple; profiler/link_model.hpp)
#   oversub2     bundled on a 2:1 oversubscribed fat tree (leaf uplinks at half the NICs' rate)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
strata="$root/build/ci/cli/strata"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --strata) strata="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "dp_drift.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$root" "$tmp" <<'PY'
import json, sys
root, tmp = sys.argv[1], sys.argv[2]
base = json.load(open(f"{root}/configs/clusters/dgx-a100-128n.json"))
def variant(name, change):
    c = json.loads(json.dumps(base))
    c["name"] = name
    change(c)
    json.dump(c, open(f"{tmp}/{name}.json", "w"))
variant("bundled", lambda c: None)
variant("oversub2", lambda c: c["inter_node"].update(oversubscription=2))
table = json.load(open(f"{root}/profiler/efficiencies.json"))
table["links"]["software_latency"] = {"model": "none", "source": "dp_drift.sh: the links' latencies only"}
json.dump(table, open(f"{tmp}/wire-efficiencies.json", "w"))
spec = json.load(open(f"{root}/bench/specs/gpt3-6.7b-tp8-pp2-dp64.json"))
for dp in (16, 64, 256, 1024):
    s = dict(spec, dp=dp, global_batch_size=8 * dp, name=f"gpt3-6.7b-tp8-pp2-dp{dp}-mb8")
    json.dump(s, open(f"{tmp}/dp{dp}.json", "w"))
PY
printf '%-12s %6s %7s %12s %9s\n' variant dp gpus step_s change
for v in wire bundled oversub2; do
  for dp in 16 64 256 1024; do
    cluster="$tmp/$v.json" table=()
    if [[ $v == wire ]]; then cluster="$tmp/bundled.json" table=(--efficiencies "$tmp/wire-efficiencies.json"); fi
    "$strata" simulate --model "$root/configs/models/gpt3-6.7b.json" --cluster "$cluster" \
      "${table[@]}" --nodes $((dp * 2)) --strategy "$tmp/dp$dp.json" --json "$tmp/r-$v-$dp.json" \
      > /dev/null
    python3 - "$tmp" "$v" "$dp" <<'PY'
import json, sys
tmp, cl, dp = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = json.load(open(f"{tmp}/r-{cl}-{dp}.json"))["step_time_s"]
b = json.load(open(f"{tmp}/r-wire-{dp}.json"))["step_time_s"]
print(f"{cl:<12} {dp:>6} {dp * 16:>7} {t:>12.4f} {100 * (t / b - 1):>+8.1f}%")
PY
  done
done
