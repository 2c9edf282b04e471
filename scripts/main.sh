#!/usr/bin/env bash
# Strata's main job: install dependencies, build, and simulate one training step of GPT-3 175B
# on 1024 A100 GPUs (tp 8, pp 8, dp 16, 1F1B). Prints the report and writes out/report.json and
# out/trace.json (open it in https://ui.perfetto.dev or chrome://tracing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target strata
mkdir -p out
./build/release/cli/strata simulate --model gpt3-175b --cluster dgx-a100-128n \
  --strategy gpt3-175b-tp8-pp8-dp16 --json out/report.json --trace out/trace.json
echo "wrote out/report.json and out/trace.json"
