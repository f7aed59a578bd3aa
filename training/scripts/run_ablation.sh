#!/usr/bin/env bash
# Paper Table V on synthetic scenes: methods I, II, III x seeds, one run after another, then the report.
#   nohup nice -n 5 bash training/scripts/run_ablation.sh > outputs/ablation/driver.log 2>&1 &
# Env: SEEDS (default "0 1"), STEPS (default: the configs' train.steps), OUT (default outputs/ablation).
# Seed-major order: every method's seed 0 finishes before any seed 1, so a cut-short study stays balanced.
# On a busy 2-core machine, one single-threaded driver per seed beats one two-threaded driver (threads
# that wait on each other under contention run several times slower):
#   for s in 0 1; do SEEDS=$s OMP_NUM_THREADS=1 nohup nice -n 5 bash training/scripts/run_ablation.sh \
#     > outputs/ablation/driver_seed$s.log 2>&1 & done
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
out="${OUT:-outputs/ablation}"
mkdir -p "$out"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # see above: one thread per run on a busy CPU
for seed in ${SEEDS:-0 1}; do
  for method in 1 2 3; do
    run="$out/method${method}_seed${seed}"
    if [ -f "$run/report.json" ]; then echo "skip $run (done)"; continue; fi
    if ! mkdir "$run.lock" 2>/dev/null; then echo "skip $run (another driver runs it)"; continue; fi
    extra=()
    [ -n "${STEPS:-}" ] && extra+=("train.steps=$STEPS")
    resume=()
    [ -f "$run/last.pt" ] && resume=(--resume)
    echo "$(date +%T) start $run"
    python training/train.py --config "training/configs/synthetic_resnet18_method${method}_64x256.yaml" \
      "${resume[@]}" train.seed="$seed" train.output_dir="$run" "${extra[@]}" > "$run.log" 2>&1
    rmdir "$run.lock"
    echo "$(date +%T) done $run"
    python training/scripts/ablation_report.py --runs "$out" --docs docs
  done
done
python training/scripts/ablation_report.py --runs "$out" --docs docs --pictures
echo "$(date +%T) all done"
