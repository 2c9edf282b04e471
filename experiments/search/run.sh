#!/usr/bin/env bash
# Strategy search on A100 clusters, and the search against the authors' choices of Megatron-LM's
# SC'21 Table 1: one command.
#
#   bash experiments/search/run.sh [path/to/strata]
#
# Writes results/search.csv, results/sc21_comparison.csv, results/summary.txt, results/plot.png
# and results/runs/ (each search's output folder and log). Environment: SEARCH_JOBS (simulations
# at a time per search; default: the cores).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh" "$@"
exec "$py" "$here/search.py" --strata "$strata" --jobs "${SEARCH_JOBS:-}"
