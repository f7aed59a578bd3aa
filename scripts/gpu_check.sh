#!/usr/bin/env bash
# The GPU check (under 10 minutes without TensorRT). It installs nothing and runs no setup script: it uses the
# first Python that imports torch ($GPU_CHECK_PYTHON, then .venv/bin/python, python3, python).
#   bash scripts/gpu_check.sh [--out DIR]        (default outputs/gpu_check)
# 1. PyTorch on CUDA (scripts/gpu_check_torch.py): the demo network and the paper-scale Swin-L at 352x1216, random
#    weights: fp16/bf16 autocast vs fp32 depth difference, batch-1 latency, training images/s with AMP, peak memory,
#    and a short torchrun run when there are several GPUs                                        -> pytorch.json
# 2. batch 1 vs 3 (scripts/gpu_check.py --batches-only: PyTorch CUDA, ONNX Runtime; TensorRT where it runs)
#                                                                                                -> batches.json
# 3. only where `import tensorrt, cuda.bindings` works: fp32/fp16/int8 engine builds of models/demo/icm_demo.onnx
#    compared with ONNX Runtime and timed (scripts/gpu_check.py -> gpu_check.json), the engine self-test where
#    `python -m icm_depth_ros.inference.self_test` exists, and the gpu-marked tests where pytest is installed.
# Then DIR/summary.json and DIR/summary.md gather every step (DIR/steps.tsv: step, result, note).
# Exit codes: 0 every step that could run passed (TensorRT steps missing TensorRT are "skipped", not failures);
#             1 a step failed or timed out; 3 no CUDA GPU: everything before the GPU ran, one line says so;
#             4 no Python with torch found.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/outputs/gpu_check"
if [ "${1:-}" = "--out" ] && [ -n "${2:-}" ]; then out="$2"; shift 2; fi
[ $# -eq 0 ] || { echo "usage: bash scripts/gpu_check.sh [--out DIR] (got: $*)" >&2; exit 2; }
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

python=""
for candidate in ${GPU_CHECK_PYTHON:-} "$root/.venv/bin/python" python3 python; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
    python="$(command -v "$candidate")"; break
  fi
done
[ -n "$python" ] || { echo "gpu_check: no Python with torch found (tried \$GPU_CHECK_PYTHON, .venv/bin/python, python3, python)"; exit 4; }
"$python" -c "import sys, torch; print(f'gpu_check: Python {sys.version.split()[0]} ({sys.executable}), torch {torch.__version__}')"
mkdir -p "$out"
: > "$out/steps.tsv"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$out/steps.tsv"; }
status=0
run_step() {  # run_step NAME SECONDS COMMAND...: runs it, records ran / failed / timed out
  local name="$1" seconds="$2"; shift 2
  timeout "$seconds" "$@"; local code=$?
  case $code in
    0) record "$name" ran "" ;;
    124) record "$name" "timed out" "after ${seconds} s"; status=1 ;;
    *) record "$name" failed "exit code $code"; status=1 ;;
  esac
  return $code
}

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader
timeout 360 "$python" scripts/gpu_check_torch.py --out "$out"; code=$?
case $code in
  0) record "pytorch cuda" ran "" ;;
  124) record "pytorch cuda" "timed out" "after 360 s"; status=1 ;;
  3) record "pytorch cuda" "no gpu" "torch.cuda.is_available() is False"; "$python" scripts/gpu_check_torch.py --summary --out "$out" >/dev/null; exit 3 ;;
  *) record "pytorch cuda" failed "exit code $code"; status=1 ;;
esac

if "$python" -c "import tensorrt, cuda.bindings" >/dev/null 2>&1; then
  run_step "tensorrt engines + batches" 420 "$python" scripts/gpu_check.py --out "$out"
  if "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('icm_depth_ros.inference.self_test') is None)" 2>/dev/null; then
    for precision in fp32 fp16 int8; do
      run_step "self-test tensorrt $precision" 120 "$python" -m icm_depth_ros.inference.self_test \
        "$out/model.onnx" --backend tensorrt --precision "$precision"
    done
  else
    record "self-test" skipped "python -m icm_depth_ros.inference.self_test does not exist in this checkout"
  fi
  if "$python" -c "import pytest" >/dev/null 2>&1; then
    run_step "pytest -m gpu" 300 "$python" -m pytest -m gpu -q -p no:cacheprovider
  else
    record "pytest -m gpu" skipped "pytest is not installed (nothing is installed by this script)"
  fi
else
  reason="$("$python" -c "import tensorrt, cuda.bindings" 2>&1 | tail -n 1)"
  echo "gpu_check: TensorRT steps skipped: $reason"
  record "tensorrt engines" skipped "$reason"
  record "self-test" skipped "needs TensorRT"
  run_step "batches (pytorch cuda, onnxruntime)" 150 "$python" scripts/gpu_check.py --batches-only --out "$out"
fi
"$python" scripts/gpu_check_torch.py --summary --out "$out" || status=1
exit "$status"
