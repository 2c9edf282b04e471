#!/usr/bin/env bash
# Renders strata-gui's views of the README's main job (GPT-3 175B, tp 8, pp 8, dp 16 on 1,024
# A100s) offscreen into docs/images/gui/: timeline.png, cluster.png, memory.png, report.png, and
# compare.png: the prediction against the measurement of v10m-dp2 on this machine's CPU
# (experiments/validate-cpu/results/runs/v10m-dp2/, committed).
#
#   bash gui/screenshots.sh [BUILD_DIR]     # default build/ci; needs strata and strata-gui built
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$repo/build/ci}"
for exe in "$build/cli/strata" "$build/gui/strata-gui"; do
  if [[ ! -x "$exe" ]]; then
    echo "$exe not found: cmake --build $build --target strata strata-gui" >&2
    exit 2
  fi
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$build/cli/strata" simulate --model gpt3-175b --cluster dgx-a100-128n \
  --strategy gpt3-175b-tp8-pp8-dp16 --json "$work/report.json" --trace "$work/trace.json" >/dev/null
runs="$repo/experiments/validate-cpu/results/runs/v10m-dp2"
QT_QPA_PLATFORM=offscreen "$build/gui/strata-gui" "$work/report.json" \
  --compare "$runs/predicted.json" "$runs/measured.json" \
  --screenshots "$repo/docs/images/gui" 2> >(grep -v -e XDG_RUNTIME_DIR -e propagateSizeHints >&2)
