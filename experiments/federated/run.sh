#!/usr/bin/env bash
# FedAvg (K = 1, 10, 100; central and ring aggregation) against cross-site synchronous data
# parallelism for GPT-2 124M over 4 sites of 8 A100s at 1 and 10 Gb/s: one command.
#
#   bash experiments/federated/run.sh [path/to/strata]
#
# Writes results/results.csv, results/summary.txt and results/plot.png: 14 `strata simulate`
# runs (each a local step on one site's 8 GPUs and the WAN aggregation as SimGrid flows).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh" "$@"
exec "$py" "$here/federated.py" --strata "$strata"
