#!/usr/bin/env bash
# Strata's main job: install dependencies, build, and plan GPT-3 175B on 1024 A100s.
# Prints the plan summary and writes the full Plan to out/plan.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target strata
mkdir -p out
./build/release/cli/strata plan --model gpt3-175b --cluster dgx-a100-128n \
  --strategy gpt3-175b-tp8-pp8-dp16 --out out/plan.json
echo "wrote out/plan.json"
