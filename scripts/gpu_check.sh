#!/usr/bin/env bash
# The TensorRT check for a machine with an NVIDIA GPU, TensorRT 10.3+ or 11.x and cuda-python (< 10 minutes):
#   bash scripts/gpu_check.sh [scripts/gpu_check.py options]
# 1. builds fp32 / fp16 / int8 engines of models/demo/icm_demo.onnx (from its fp16 and INT8 Q/DQ variants) with the
#    project's builder, runs them through the node's TensorRT backend and compares each with ONNX Runtime on rendered
#    scenes (max relative depth error, abs_rel change) and times them (scripts/gpu_check.py, outputs/gpu_check/),
#    then times batch 1 vs 3 (three cameras in one call) in PyTorch on CUDA, as a TensorRT engine with profile 1..3 and
#    in ONNX Runtime (outputs/gpu_check/batches.json); without TensorRT only that batch timing runs, then exit 2;
# 2. runs the gpu-marked tests (pytest -m gpu).
# Install TensorRT and the cuda-python line of the driver's CUDA first, e.g. on a CUDA 12 driver
#   pip install tensorrt-cu12 'cuda-python>=12,<13'     (CUDA 13 / r580+ drivers: tensorrt-cu13 'cuda-python>=13')
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -f "$root/.venv/.requirements.sha256" ] || bash "$root/scripts/setup_env.sh"
source "$root/scripts/env.sh"
cd "$root"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader || { echo "error: nvidia-smi failed: no NVIDIA GPU/driver" >&2; exit 2; }
python - <<'PY' || { timeout 300 python scripts/gpu_check.py --batches-only || true; exit 2; }
import sys
try:
    import tensorrt, cuda.bindings
except ImportError as error:
    sys.exit(f"error: {error}; install TensorRT 10.3+/11.x and cuda-python (see the top of scripts/gpu_check.sh)")
print(f"tensorrt {tensorrt.__version__}, cuda-python (cuda-bindings) {cuda.bindings.__version__}, python {sys.version.split()[0]}")
PY
status=0
timeout 420 python scripts/gpu_check.py "$@" || status=$?
timeout 300 python -m pytest -m gpu -q -p no:cacheprovider || status=$?
exit "$status"
