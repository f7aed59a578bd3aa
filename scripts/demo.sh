#!/usr/bin/env bash
# Quick start: set up (or reuse) the environment, then run the depth node on a synthetic drive (scripts/demo.py).
#   bash scripts/demo.sh [--frames N] [--rate R] [--instance-source topic|clusters] [--out DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
source "$root/scripts/env.sh"
cd "$root"
exec python scripts/demo.py "$@"
