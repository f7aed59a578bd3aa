#!/usr/bin/env bash
# Paper Table V on synthetic scenes (issue 15): every (method, seed) run of the study, two at a time, then
# the report. Start it in its own process group, so that others can pause it during their benchmarks:
#   mkdir -p outputs/ablation_v2
#   PGID_FILE=/tmp/icm_ablation.pgid setsid nohup nice -n 19 bash training/scripts/run_ablation.sh \
#     > outputs/ablation_v2/driver.log 2>&1 < /dev/null &
#   kill -STOP -- -$(cat /tmp/icm_ablation.pgid)   # pause (benchmarks) ... and -CONT to continue
# The driver writes its process group id to PGID_FILE itself: where the starting shell has job control,
# setsid forks, and $! is not the group's id.
# After a session ended (or the group was killed), continue the same study where it stopped:
#   PGID_FILE=/tmp/icm_ablation.pgid setsid nohup nice -n 19 bash training/scripts/run_ablation.sh --resume \
#     >> outputs/ablation_v2/driver.log 2>&1 < /dev/null &
# (Edit this file only by replacing it, e.g. write a copy and mv it over: a running bash reads it as it goes.)
# --resume skips finished runs (report.json) and continues started ones from their last.pt (train.py
# --resume); without it the driver refuses to touch a folder that already holds runs.
# Env: OUT (outputs/ablation_v2), SEEDS ("0 1 2"), METHODS (queue order, below), PARALLEL (2), STEPS
# (default: the configs' train.steps), THREADS (torch/OpenMP threads per run, 1).
# Queue: seed-major over the paper's methods I, II, III first (a study cut short stays balanced), then
# the deviations from the paper: III + ICM warm-up, then III + per-pixel ICM cost.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
out="${OUT:-outputs/ablation_v2}"
resume=false
for argument in "$@"; do
  case "$argument" in
    --resume) resume=true ;;
    *) echo "run_ablation.sh: unknown argument '$argument' (allowed: --resume)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
[ -n "${PGID_FILE:-}" ] && ps -o pgid= -p $$ | tr -d ' ' > "$PGID_FILE"
if ! $resume && compgen -G "$out/*_seed*" > /dev/null; then
  echo "run_ablation.sh: $out already holds runs; pass --resume to continue them, or set OUT" >&2
  exit 2
fi
rm -rf "$out"/*.lock  # locks of a driver that is gone (only one driver runs per folder)
# One thread per run: on a busy 2-core machine threads that wait on each other run several times slower.
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"

method_config() {  # method name -> its recipe
  case "$1" in
    method1) echo training/configs/synthetic_resnet18_method1_64x256.yaml ;;
    method2) echo training/configs/synthetic_resnet18_method2_64x256.yaml ;;
    method3) echo training/configs/synthetic_resnet18_method3_64x256.yaml ;;
    method3_warmup) echo training/configs/synthetic_resnet18_method3_icm_warmup_64x256.yaml ;;
    method3_per_pixel) echo training/configs/synthetic_resnet18_method3_icm_per_pixel_64x256.yaml ;;
    *) echo "run_ablation.sh: unknown method '$1'" >&2; return 1 ;;
  esac
}

queue=()
for seed in ${SEEDS:-0 1 2}; do
  for method in method1 method2 method3; do queue+=("${method}_seed${seed}"); done
done
for method in ${METHODS:-method3_warmup method3_per_pixel}; do
  for seed in ${SEEDS:-0 1 2}; do queue+=("${method}_seed${seed}"); done
done

run_one() {  # run_one NAME: train (or continue) one run; returns 0 when it finished
  local name="$1" run="$out/$1" method="${1%_seed*}" seed="${1##*_seed}"
  local extra=()
  [ -n "${STEPS:-}" ] && extra+=("train.steps=$STEPS")
  [ -f "$run/last.pt" ] && extra+=(--resume)
  echo "$(date +%T) start $name${extra[*]:+ (${extra[*]})}"
  if python training/train.py --config "$(method_config "$method")" train.seed="$seed" \
      train.output_dir="$run" "${extra[@]}" >> "$run.log" 2>&1; then
    echo "$(date +%T) done $name"
  else
    echo "$(date +%T) FAILED $name (exit $?): see $run.log"
  fi
}

worker() {  # takes the next run nobody has started, until the queue is empty
  local name
  for name in "${queue[@]}"; do
    [ -f "$out/$name/report.json" ] && continue
    mkdir "$out/$name.lock" 2>/dev/null || continue  # another worker has it
    run_one "$name"
    python training/scripts/ablation_report.py --runs "$out" --docs "$out/report" > /dev/null 2>&1 || true
  done
}

echo "$(date +%T) study in $out: ${queue[*]} (${PARALLEL:-2} at a time, $OMP_NUM_THREADS thread(s) each)"
for _ in $(seq "${PARALLEL:-2}"); do worker & done
wait
rm -rf "$out"/*.lock
python training/scripts/ablation_report.py --runs "$out" --docs "$out/report" --pictures > /dev/null 2>&1 || true
echo "$(date +%T) all done"
