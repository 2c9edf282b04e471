#!/usr/bin/env bash
# Zero-bubble pipeline schedules against 1F1B and interleaved 1F1B in simulation, on the model
# sizes and GPU counts of Qi et al., "Zero Bubble Pipeline Parallelism" (ICLR 2024): one command.
#
#   bash experiments/zero-bubble/run.sh [path/to/strata]
#
# Writes specs/ (the model and strategy specs), results/results.csv, results/summary.txt,
# results/plot.png and results/reports/ (each simulation's report.json). Environment: ZB_JOBS
# (simulations at a time; default 2).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh" "$@"
exec "$py" "$here/zero_bubble.py" --strata "$strata" --jobs "${ZB_JOBS:-2}"
