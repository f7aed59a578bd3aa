#!/usr/bin/env bash
# Rebuild the shipped demo model (models/demo/): train on synthetic scenes, evaluate on held-out scenes,
# export to ONNX. About 25 minutes on an idle 2-core CPU. Then update models/demo/MODEL_CARD.md with the
# printed figures and sha256 values (test/test_demo.py checks the card against the file).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
source "$root/scripts/env.sh"
cd "$root"
config=training/configs/synthetic_mobilenetv3_demo_96x320.yaml
run="${RUN:-outputs/demo_model}"
[ -f "$run/last.pt" ] && resume=(--resume) || resume=()
python training/train.py --config "$config" train.output_dir="$run" "${resume[@]}"
# The card reports the final weights (last.pt) on a held-out set of 200 scenes with seeds no training scene uses.
python training/evaluate.py --checkpoint "$run/last.pt" --config "$config" --output "$run/heldout" \
  data.val_length=200 data.val_seed=2000000
python training/export.py --checkpoint "$run/last.pt" --out models/demo/icm_demo.onnx
sha256sum "$run/last.pt" models/demo/icm_demo.onnx
cat "$run/heldout/metrics.md"
