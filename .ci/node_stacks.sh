#!/usr/bin/env bash
# The node-side tests on the vehicles' Python stacks, each in an environment of its own:
#   humble-py310  Python 3.10, numpy 1.21.5, scipy 1.8.0, OpenCV 4.5.4 (Ubuntu 22.04: Humble, JetPack 6)
#   jazzy-py312   Python 3.12, numpy 1.26.4, scipy 1.11.4, OpenCV 4.6.0 (Ubuntu 24.04: Jazzy)
# rclpy and the messages are the Kilted wheels on both (.ci/stacks/<stack>.txt says why). No PyTorch.
#
#   bash .ci/node_stacks.sh [stack ...] [-- pytest args]      (default: both stacks)
#
# Building an environment is also the install check of requirements-node.txt: the stack's packages go in
# first (the "system"), then requirements-node.txt; if that changes any installed package (an upgraded
# numpy, say), the build fails and lists the changes. Environments are cached, keyed by the interpreter's
# version and the hash of the files they come from, under $ICM_STACK_CACHE (default
# ~/.cache/icm_depth_ros/stacks); a changed file builds a new one. The interpreter of each stack is
# $ICM_PYTHON_3_10 / $ICM_PYTHON_3_12, else python3.10 / python3.12 on PATH, else pyenv's
# (~/.pyenv/versions/3.10.*); none found is a failure, not a skip.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ICM_STACK_CACHE:-$HOME/.cache/icm_depth_ros/stacks}"
NODE_TESTS=(test/icm_depth_ros test/test_package.py)  # the node-side tests: no PyTorch, nothing of training/'s models

stacks=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do stacks+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#stacks[@]} -eq 0 ] && stacks=(humble-py310 jazzy-py312)

# Whether $1 runs and is Python $2 (a pyenv shim on PATH may exist without running).
is_python() {
  "$1" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$2')" >/dev/null 2>&1
}

# The interpreter of a Python version (3.10): explicit variable, PATH, pyenv; fails with what was tried.
find_python() {
  local version="$1" variable="ICM_PYTHON_${1/./_}" candidate
  if [ -n "${!variable:-}" ]; then
    is_python "${!variable}" "$version" && { echo "${!variable}"; return 0; }
    echo "node_stacks: $variable=${!variable} is not a Python $version interpreter" >&2
    return 1
  fi
  for candidate in "$(command -v "python$version" || true)" \
                   "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python"$version"; do
    [ -n "$candidate" ] && is_python "$candidate" "$version" && { echo "$candidate"; return 0; }
  done
  echo "node_stacks: no Python $version interpreter: set $variable, put python$version on PATH, or" \
       "'pyenv install $version' (looked in ${PYENV_ROOT:-$HOME/.pyenv}/versions/$version.*)" >&2
  return 1
}

# Build (or reuse) the stack's environment; prints its folder. Called as $(...) ||, where set -e is off:
# every step checks its own status.
stack_environment() {
  local stack="$1" python="$2" list="$root/.ci/stacks/$1.txt"
  local key venv changed
  key="$({ "$python" -c 'import sys; print(sys.version)'; cat "$list" "$root/requirements-node.txt" \
           "$root/.ci/stacks/test-tools.txt"; } | sha256sum | cut -c1-16)" || return 1
  venv="$cache/$stack-$key"
  if [ -f "$venv/.ready" ]; then echo "$venv"; return 0; fi
  rm -rf "$venv" && mkdir -p "$cache" || return 1  # an unfinished build has no .ready
  echo "node_stacks: $stack: building $venv (first run on this machine: a few minutes)" >&2
  "$python" -m venv "$venv" || return 1
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
  "${pip[@]}" install -r "$list" >&2 || return 1
  "${pip[@]}" freeze --all | sort > "$venv/system-packages.txt" || return 1
  "${pip[@]}" install -r "$root/requirements-node.txt" >&2 || return 1
  "${pip[@]}" freeze --all | sort > "$venv/after-requirements-node.txt" || return 1
  changed="$(comm -23 "$venv/system-packages.txt" "$venv/after-requirements-node.txt")"
  if [ -n "$changed" ]; then
    echo "node_stacks: $stack: pip install -r requirements-node.txt changed installed packages; before:" \
         $changed "; after:" $(comm -13 "$venv/system-packages.txt" "$venv/after-requirements-node.txt") >&2
    return 1
  fi
  "${pip[@]}" install -r "$root/.ci/stacks/test-tools.txt" -c "$venv/after-requirements-node.txt" >&2 || return 1
  # The real TensorRT / cuda-bindings wheels of the doubles, where this Python has them.
  ICM_BINDINGS_CACHE="$venv/tensorrt-test-bindings" "$venv/bin/python" \
    "$root/test/tensorrt_double/setup_bindings.py" >&2 || return 1
  touch "$venv/.ready" && echo "$venv"
}

failed=()
for stack in "${stacks[@]}"; do
  if [ ! -f "$root/.ci/stacks/$stack.txt" ]; then
    echo "node_stacks: unknown stack '$stack' (.ci/stacks/ has: $(ls "$root/.ci/stacks" | grep -v test-tools | sed 's/\.txt$//' | tr '\n' ' '))" >&2
    exit 2
  fi
  version="${stack##*-py}"; version="${version:0:1}.${version:1}"
  python="$(find_python "$version")" || { failed+=("$stack (no Python $version)"); continue; }
  venv="$(stack_environment "$stack" "$python")" || { failed+=("$stack (environment)"); continue; }
  "$venv/bin/python" "$root/.ci/check_stack.py" "$root/.ci/stacks/$stack.txt" \
    || { failed+=("$stack (not the stack's versions)"); continue; }
  # The compiled kernels for this Python, beside the 3.11 ones (each named by its ABI tag).
  (cd "$root" && "$venv/bin/python" setup.py --quiet build_ext --inplace >/dev/null) \
    || { failed+=("$stack (kernel build)"); continue; }
  if ! (cd "$root" && ICM_VENV="$venv" ICM_BINDINGS_CACHE="$venv/tensorrt-test-bindings" \
        bash -c 'source scripts/env.sh && exec python -m pytest -p no:cacheprovider "$@"' node_stacks \
        "${NODE_TESTS[@]}" "$@"); then
    failed+=("$stack (tests)")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "node_stacks: FAILED: ${failed[*]}" >&2
  exit 1
fi
