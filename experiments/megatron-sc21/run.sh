#!/usr/bin/env bash
# Megatron-LM SC'21 Table 1 simulated by Strata: one command.
#
#   bash experiments/megatron-sc21/run.sh [path/to/strata]
#
# Writes specs/ (model and strategy spec per row), results/results.csv, results/plot.png,
# results/summary.txt and results/reports/rowNN.json. The simulations run one after another
# (one SimGrid engine per process). Environment: SC21_TIMEOUT_S (seconds per simulation,
# default 900), SC21_ROWS (e.g. "1,2,3"; default all ten).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh" "$@"
exec "$py" "$here/sc21.py" --strata "$strata" --rows "${SC21_ROWS:-}"
