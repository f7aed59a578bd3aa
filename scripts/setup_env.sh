#!/usr/bin/env bash
# Create or reuse the project virtual environment (.venv) with the pinned requirements.
# Idempotent: a stamp of the requirement files skips the install when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements.txt" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"

# depth_node, replay_eval and replay_fleet on PATH: this package itself, editable (no copy of the sources; colcon builds
# of the same tree are unaffected), which also compiles the instance statistics kernel in place; again
# whenever the kernel's source is newer than the built module. Output only when it fails.
install_package() {
  local kernel built
  kernel="$root/icm_depth_ros/instances/_instance_kernel.cpp"
  # this Python's build: .ci/node_stacks.sh puts the 3.10 and 3.12 ones beside it
  built="$root/icm_depth_ros/instances/_instance_kernel$("$venv/bin/python" -c \
    'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
  [ -x "$venv/bin/replay_eval" ] && [ -x "$venv/bin/replay_fleet" ] && [ -x "$venv/bin/depth_node" ] && [ -f "$built" ] && [ "$built" -nt "$kernel" ] \
    && return 0
  local log
  if ! log="$("$venv/bin/python" -m pip install --no-deps --no-build-isolation -e "$root" 2>&1)"; then
    echo "$log" >&2
    echo "setup_env: installing the console scripts (pip install -e $root) failed" >&2
    return 1
  fi
}

# The real TensorRT / cuda-bindings Python wheels the test doubles are checked against (pinned in
# test/tensorrt_double/setup_bindings.py), each in a folder of its own under .venv; reused when present.
prepare_test_bindings() {
  "$venv/bin/python" "$root/test/tensorrt_double/setup_bindings.py"
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  install_package
  prepare_test_bindings
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
install_package
prepare_test_bindings
echo "$want" > "$stamp"
