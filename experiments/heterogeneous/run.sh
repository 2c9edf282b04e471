#!/usr/bin/env bash
# Per-group strategies on a mixed A100 + H100 cluster: one command.
#
#   bash experiments/heterogeneous/run.sh [path/to/strata]
#
# Writes specs/*.json (the strategies), results/results.csv, results/summary.txt and
# results/plot.png: Llama 2 7B and GPT-3 6.7B on hetero-a100-h100 (32 A100s + 32 H100s) with
# each group alone, both groups under a uniform pipeline, and both under per-group strategies
# (stages placed on their groups; layers even, or proposed from the groups' speeds; tp per
# stage). Fourteen simulations of about a second each.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh" "$@"
exec "$py" "$here/heterogeneous.py" --strata "$strata"
