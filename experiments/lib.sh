# Sourced by each study's run.sh after `set -euo pipefail`, with $here set to the study's folder
# and the study's arguments passed on: sets $strata (the first argument, else the repository's
# build/ci/cli/strata) and $py (Debian's python3, which has matplotlib; a pyenv python3 on PATH
# may not), and exits 2 with what to install or build when either is missing.
repo="$(cd "$here/../.." && pwd)"
strata="${1:-$repo/build/ci/cli/strata}"
if [[ ! -x "$strata" ]]; then
  echo "strata not found at $strata; build it: cmake --build --preset ci --target strata" >&2
  exit 2
fi
py=/usr/bin/python3
if ! "$py" -c 'import matplotlib' 2>/dev/null; then
  echo "$py cannot import matplotlib (Debian: apt-get install python3-matplotlib)" >&2
  exit 2
fi
