#!/usr/bin/env bash
# Create or reuse the project virtual environment (.venv) with the pinned requirements.
# Idempotent: a stamp of the requirement files skips the install when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements.txt" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup_env: needs Python 3.11 (torch 2.14.1 and the ROS 2 Kilted wheels are built for it); $python_bin is $("$python_bin" --version 2>&1)" >&2
  exit 1
fi
echo "setup_env: installing pinned requirements into $venv (first run takes a few minutes)" >&2
"$python_bin" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt" -c "$root/constraints.txt"
echo "$want" > "$stamp"
