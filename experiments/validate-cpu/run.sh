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
repo="$(cd "$here/../.." && pwd)"
strata="${1:-$repo/build/ci/cli/strata}"
if [[ ! -x "$strata" ]]; then
  echo "strata not found at $strata; build it: cmake --build --preset ci --target strata" >&2
  exit 2
fi
py=/usr/bin/python3  # Debian's python has matplotlib; a pyenv python3 on PATH may not
if ! "$py" -c 'import matplotlib' 2>/dev/null; then
  echo "$py cannot import matplotlib (Debian: apt-get install python3-matplotlib)" >&2
  exit 2
fi
exec "$py" "$here/validate_cpu.py" --strata "$strata" --only "${VALIDATE_ONLY:-}" \
  --steps "${VALIDATE_STEPS:-6}"
