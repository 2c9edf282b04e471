#!/usr/bin/env bash
# Data-parallel drift study (docs/simulator.md, "Data-parallel scale: what the drift could be"):
# simulates a GPT-3 6.7B step (tp 8, pp 2, ZeRO-1, selective recompute, SP, 8 micro-batches of
# one sequence per replica) at dp 16 / 64 / 256 / 1024 (256 to 16,384 A100s) on variants of the
# bundled dgx-a100-128n cluster, and prints the step time of each and its change from the
# bundled cluster. It asserts nothing; it shows how each candidate mechanism moves the
# prediction as dp grows.
#
#   bench/drift/dp_drift.sh [--strata BIN]
#
# Variants (each one change to configs/clusters/dgx-a100-128n.json):
#   bundled      as shipped: 1.0 us per NVSwitch hop, 2.0 us per InfiniBand path
#   nccl-inter   inter-node hop latency 9.6 us: NCCL's own tuning model for a ring step with
#                the Simple protocol across nodes (src/graph/tuning.cc of NCCL 2.7/2.8:
#                hwLat[NET][Ring][Simple]; the reduce-scatter and all-gather of ZeRO-1 are
#                rings in NCCL at any scale; its 1.9x "plateau effect" applies to all-reduces
#                only)
#   nccl-simple  nccl-inter and 3.4 us per NVLink hop (hwLat[NVLINK][Ring][Simple])
#   oversub2     a 2:1 oversubscribed fat tree (leaf uplinks at half the NICs' bandwidth)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
strata="$root/build/ci/cli/strata"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --strata) strata="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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
variant("nccl-inter", lambda c: c["inter_node"].update(latency_us=9.6))
variant("nccl-simple", lambda c: (c["inter_node"].update(latency_us=9.6),
                                  c["intra_node"].update(latency_us=3.4)))
variant("oversub2", lambda c: c["inter_node"].update(oversubscription=2))
spec = json.load(open(f"{root}/bench/specs/gpt3-6.7b-tp8-pp2-dp64.json"))
for dp in (16, 64, 256, 1024):
    s = dict(spec, dp=dp, global_batch_size=8 * dp, name=f"gpt3-6.7b-tp8-pp2-dp{dp}-mb8")
    json.dump(s, open(f"{tmp}/dp{dp}.json", "w"))
PY
printf '%-12s %6s %7s %12s %9s\n' variant dp gpus step_s change
for cl in bundled nccl-inter nccl-simple oversub2; do
  for dp in 16 64 256 1024; do
    "$strata" simulate --model "$root/configs/models/gpt3-6.7b.json" --cluster "$tmp/$cl.json" \
      --nodes $((dp * 2)) --strategy "$tmp/dp$dp.json" --json "$tmp/r-$cl-$dp.json" > /dev/null
    python3 - "$tmp" "$cl" "$dp" <<'PY'
import json, sys
tmp, cl, dp = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = json.load(open(f"{tmp}/r-{cl}-{dp}.json"))["step_time_s"]
b = json.load(open(f"{tmp}/r-bundled-{dp}.json"))["step_time_s"]
print(f"{cl:<12} {dp:>6} {dp * 16:>7} {t:>12.4f} {100 * (t / b - 1):>+8.1f}%")
PY
  done
done
