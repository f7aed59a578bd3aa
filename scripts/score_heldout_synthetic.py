#!/usr/bin/env python
"""Score an exported model on held-out synthetic scenes: the demo model card's held-out table.

    python scripts/score_heldout_synthetic.py [--model models/demo/icm_demo.onnx] [--scenes 200]
        [--seed 2000000] [--json OUT.json]

The scenes are those of ``training/evaluate.py ... data.val_length=200 data.val_seed=2000000`` (seeds no
training or validation scene uses), rendered at the model's input size; the model runs through the node's
own DepthPipeline with ONNX Runtime (no checkpoint or PyTorch model is needed); the figures are the
project's one metric definition (icm_depth_ros/processing/metrics.py), per image then averaged, KITTI
conventions: ground truth in (1e-3, 80) m, predictions clamped to that range. The instance / background d1
and the cluster-instance alignment use the scenes' true instance masks and the argmax of the model's
finest-scale membership, as training/evaluate.py does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icm_depth_ros.processing.metrics import (  # noqa: E402
    EXTRA_NAMES, METRIC_NAMES, MetricMeans, clamp_prediction, evaluation_mask, image_figures,
)
from icm_depth_ros.inference import contract  # noqa: E402
from icm_depth_ros.processing.pipeline import DepthPipeline, FrameInput, PipelineConfig  # noqa: E402

MIN_DEPTH, MAX_DEPTH = 1e-3, 80.0
DEFAULT_MODEL = ROOT / "models" / "demo" / "icm_demo.onnx"
HELDOUT_SEED = 2_000_000


def scene_figures(pipeline: DepthPipeline, sample: dict) -> dict[str, float | None]:
    """One rendered scene (a SyntheticRoadScenes item) -> its figures."""
    image = contract.pixels_from_unit_float(sample["image"].numpy()[None])[0]
    gt = sample["depth"].numpy()[0].astype(np.float64)
    instances = sample["instances"].numpy()[0]
    (result, maps), = pipeline.depth_batch([FrameInput(image)])
    pred = clamp_prediction(result.depth.astype(np.float64), MIN_DEPTH, MAX_DEPTH)
    # each membership cell's cluster (the finest-scale arg-max) -> each pixel's at the image size (nearest, as
    # training does)
    labels = maps.cluster
    factor_y, factor_x = gt.shape[0] // labels.shape[0], gt.shape[1] // labels.shape[1]
    labels = np.repeat(np.repeat(labels, factor_y, axis=0), factor_x, axis=1)
    mask = evaluation_mask(gt, sample["valid"].numpy()[0] if "valid" in sample else None, MIN_DEPTH, MAX_DEPTH)
    return image_figures(pred, gt, mask, instances, labels)


def score(model: Path, scenes: int, seed: int, first: int = 0) -> dict:
    from training.data.synthetic import SyntheticRoadScenes

    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(model), backend="onnxruntime",
                                                        output_resolution="model"))
    info = pipeline.backend.info
    dataset = SyntheticRoadScenes(first + scenes, size=(info.input_height, info.input_width), seed=seed)
    means, per_scene = MetricMeans(), []
    for index in range(first, first + scenes):
        figures = scene_figures(pipeline, dataset[index])
        means.add(figures)
        per_scene.append({"index": index, **figures})
    return {"model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model), "scenes": scenes,
            "seed": seed, "size": [info.input_height, info.input_width], "depth_range": [MIN_DEPTH, MAX_DEPTH],
            "metrics": {name: value for name, value in means.means().items()
                        if name in METRIC_NAMES + EXTRA_NAMES}, "per_scene": per_scene}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED)
    parser.add_argument("--json", type=Path, help="also write the result (means and per-scene figures) here")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        parser.error(f"--scenes {args.scenes}: must be >= 1")
    if not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    result = score(args.model, args.scenes, args.seed)
    names = [name for name in METRIC_NAMES + EXTRA_NAMES if name in result["metrics"]]
    print("| " + " | ".join(names) + " |")
    print("|" + "---:|" * len(names))
    print("| " + " | ".join(f"{result['metrics'][name]:.4f}" for name in names) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
