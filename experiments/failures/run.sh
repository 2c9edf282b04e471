#!/usr/bin/env bash
# Goodput against failure rate for GPT-3 175B on 1024 and 8192 A100s, with Daly's and a fixed
# one-hour checkpoint interval: one command.
#
#   bash experiments/failures/run.sh [path/to/strata]
#
# Writes specs/failures.json, results/results.csv, results/summary.txt, results/plot.png and
# results/reports/gpusN.json (each run's report.json with its "failures" section, without
# its per-rank rows). Two simulations (one per GPU count), each followed by the failure
# simulation over every rate.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh" "$@"
exec "$py" "$here/failures.py" --strata "$strata"
