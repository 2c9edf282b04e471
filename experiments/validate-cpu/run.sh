#!/usr/bin/env bash
# Strata's prediction against a real run on this machine, for eleven strategies: one command.
#
#   bash experiments/validate-cpu/run.sh [path/to/strata]
#
# Runs `strata validate` (profile ops and links, simulate, run under mpirun, compare) for every
# strategy in specs/ on gpt-10m, one after another, and writes results/results.csv,
# results/breakdown.csv, results/summary.txt, results/plot.png and results/runs/<strategy>/.
# About 10 minutes on a 2-core machine; run it on an idle one. Environment: VALIDATE_ONLY
# (comma-separated strategies; default all), VALIDATE_STEPS (training steps per run, default 6).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh" "$@"
exec "$py" "$here/validate_cpu.py" --strata "$strata" --only "${VALIDATE_ONLY:-}" \
  --steps "${VALIDATE_STEPS:-6}"
