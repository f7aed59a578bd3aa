#!/usr/bin/env bash
# The one test command: set up (or reuse) the environment, then run the whole test suite.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
source "$root/scripts/env.sh"
cd "$root"
exec python -m pytest "$@"
