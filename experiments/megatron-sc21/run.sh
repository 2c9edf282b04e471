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
repo="$(cd "$here/../.." && pwd)"
strata="${1:-$repo/build/ci/cli/strata}"
if [[ ! -x "$strata" ]]; then
  echo "strata not found at $strata; build it: cmake --build --preset ci --target strata" >&2
  exit 2
fi
# Debian's python has matplotlib; a pyenv python3 on PATH may not.
py=/usr/bin/python3
if ! "$py" -c 'import matplotlib' 2>/dev/null; then
  echo "$py cannot import matplotlib (Debian: apt-get install python3-matplotlib)" >&2
  exit 2
fi
exec "$py" "$here/sc21.py" --strata "$strata" --rows "${SC21_ROWS:-}"
