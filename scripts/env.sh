# Source me: the environment the tests, demo and node use (venv, ROS 2 wheels, local-only discovery).
_icm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# ICM_VENV: another environment instead of .venv (.ci/node_stacks.sh: the vehicle stacks' environments).
export VIRTUAL_ENV="${ICM_VENV:-$_icm_root/.venv}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
# Message packages installed as wheels live in the venv's prefix, which ament's index must search (README, "Without a ROS installation").
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export PYTHONPATH="$_icm_root${PYTHONPATH:+:$PYTHONPATH}"
unset _icm_root
