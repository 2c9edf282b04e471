#!/usr/bin/env bash
# GPT-2 124M training throughput on one GPU (issue 19's speed figure): Strata's executor
# (`strata run --device cuda`, configs/strategies/gpt2-1gpu-bf16.json: bf16 with fp32 master
# weights, fused attention, batch 8 x 1,024) beside PyTorch eager, and torch.compile where it
# works, on the same model, batch and GPU (bench/gpt2_gpu_torch.py). Prints tokens/s and MFU
# (model FLOPs per token from `strata plan`, 854.4 MFLOP, over the GPU's dense bf16 peak) per
# side, and writes them to $OUT/gpt2_gpu.txt.
#
#   STRATA=gpu-bin/strata OUT=gpu-out bash bench/gpt2_gpu.sh     # as scripts/gpu-check.sh runs it
#
# Variables: STRATA (the binary; default build/release/cli/strata), OUT (default gpu-out),
# STEPS (timed steps, default 20), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
strata="${STRATA:-build/release/cli/strata}"
out="${OUT:-gpu-out}"
steps="${STEPS:-20}"
python="${PYTHON:-python3}"
mkdir -p "$out"
report="$out/gpt2_gpu.txt"

gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
case "$gpu" in
  *H100*|*H200*|*H800*|*GH200*) peak=989.4e12 ;;  # dense bf16 (H100 SXM whitepaper)
  *A100*) peak=312e12 ;;
  *) peak="" ;;
esac
# Model FLOPs per token as Strata counts them (6 N plus the attention's; no recompute here).
per_token="$("$strata" plan --model gpt2-124m --strategy gpt2-1gpu-bf16 --cluster dgx-h100-128n \
  --gpus 1 --json 2>/dev/null | grep -o '"model_per_token": *[0-9.e+]*' | grep -o '[0-9.e+]*$')"
per_token="${per_token:-854438400}"

mfu() {  # tokens/s -> "MFU x.x%" (or "" without a known peak)
  [[ -n "$peak" && -n "$1" ]] || return 0
  awk -v t="$1" -v f="$per_token" -v p="$peak" 'BEGIN { printf "MFU %.1f%%", 100 * t * f / p }'
}

{
  echo "GPT-2 124M, batch 8 x 1024 tokens, bf16, one GPU: ${gpu:-unknown GPU} (dense bf16 peak ${peak:-unknown} FLOP/s)"
  echo "model FLOPs per token: $per_token"
  date -u
} > "$report"

status=0
"$strata" run --model gpt2-124m --strategy gpt2-1gpu-bf16 --data random --device cuda \
  --steps "$steps" --json "$out/gpt2-strata.json" > "$out/gpt2-strata.txt" 2>&1 || status=$?
strata_tps="$(grep -o '"median_tokens_per_s": *[0-9.e+]*' "$out/gpt2-strata.json" 2>/dev/null |
  grep -o '[0-9.e+]*$')"
if [[ -n "$strata_tps" ]]; then
  echo "strata (--device cuda): $(printf '%.0f' "$strata_tps") tokens/s $(mfu "$strata_tps")" >> "$report"
else
  echo "strata (--device cuda): failed (exit $status): $(tail -1 "$out/gpt2-strata.txt")" >> "$report"
fi

"$python" bench/gpt2_gpu_torch.py --steps "$steps" > "$out/gpt2-torch.jsonl" 2> "$out/gpt2-torch.err" ||
  status=$?
while IFS= read -r line; do
  mode="$(grep -o '"mode": *"[a-z]*"' <<< "$line" | grep -o '[a-z]*"$' | tr -d '"')"
  tps="$(grep -o '"median_tokens_per_s": *[0-9.e+]*' <<< "$line" | grep -o '[0-9.e+]*$')"
  if [[ -n "$tps" ]]; then
    echo "pytorch $mode: $(printf '%.0f' "$tps") tokens/s $(mfu "$tps")" >> "$report"
  else
    echo "pytorch $mode: $(grep -o '"error": *".*"' <<< "$line")" >> "$report"
  fi
done < "$out/gpt2-torch.jsonl"
if [[ ! -s "$out/gpt2-torch.jsonl" ]]; then
  echo "pytorch: no result ($(tail -1 "$out/gpt2-torch.err" 2>/dev/null))" >> "$report"
fi
cat "$report"
exit "$status"
