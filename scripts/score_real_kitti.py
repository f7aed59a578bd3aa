#!/usr/bin/env python
"""Score an exported model on real KITTI frames with annotated depth (the synthetic-to-real gap in numbers).

    python scripts/score_real_kitti.py [--model models/demo/icm_demo.onnx] \\
        [--frames ../shared/real-samples/kitti/metric3d_kitti_demo] [--json]

FRAMES holds rgb/NAME.png (KITTI raw image_02, 1242 x 375) and depth/NAME.png (KITTI's annotated depth,
uint16 / 256 m, 0 = none). Each image goes through the node's DepthPipeline (ONNX Runtime, the default
resize_policy crop, depth on the camera grid) and is scored with the KITTI Eigen conventions
(icm_depth_ros/processing/metrics.py): 1e-3 < gt < 80 m inside Garg's crop, predictions clamped to [1e-3, 80] m
(no estimate counts as 80 m), per image, then the mean over images. "median-scaled" multiplies each
prediction by median(gt) / median(pred) over the counted pixels first, which removes the global scale
error and leaves the shape of the depth map (the usual self-supervised protocol).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icm_depth_ros.processing.metrics import clamp_prediction, depth_metrics, evaluation_mask  # noqa: E402
from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig  # noqa: E402

MIN_DEPTH, MAX_DEPTH = 1e-3, 80.0
REPORTED = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3")


def score_frames(model: Path, frames: Path) -> dict:
    """{"frames": [...], "metric": {name: mean}, "median_scaled": {name: mean}, "covered_fraction": mean}."""
    names = sorted(p.stem for p in (frames / "rgb").glob("*.png"))
    if not names:
        raise FileNotFoundError(f"{frames / 'rgb'}: no *.png images")
    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(model), backend="onnxruntime"))
    per_frame = []
    for name in names:
        bgr = cv2.imread(str(frames / "rgb" / f"{name}.png"), cv2.IMREAD_COLOR)
        png = cv2.imread(str(frames / "depth" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        if bgr is None or png is None or png.dtype != np.uint16 or png.shape != bgr.shape[:2]:
            raise ValueError(f"{frames}/{{rgb,depth}}/{name}.png: expected an 8-bit colour image and a uint16 depth "
                             "PNG of the same size")
        gt = png.astype(np.float64) / 256.0
        pred = pipeline.process(np.ascontiguousarray(bgr[..., ::-1])).depth.astype(np.float64)
        mask = evaluation_mask(gt, None, MIN_DEPTH, MAX_DEPTH, crop="garg")
        covered = float(np.isfinite(pred[mask]).mean())
        metric = depth_metrics(clamp_prediction(pred, MIN_DEPTH, MAX_DEPTH), gt, mask)
        scale = float(np.median(gt[mask]) / np.nanmedian(pred[mask]))
        scaled = depth_metrics(clamp_prediction(pred * scale, MIN_DEPTH, MAX_DEPTH), gt, mask)
        per_frame.append({"frame": name, "pixels": int(mask.sum()), "covered_fraction": covered,
                          "median_scale": scale, "metric": metric, "median_scaled": scaled})
    mean = {kind: {k: float(np.mean([f[kind][k] for f in per_frame])) for k in REPORTED}
            for kind in ("metric", "median_scaled")}
    return {"model": str(model), "frames_dir": str(frames), "frames": per_frame, **mean,
            "median_scale": float(np.mean([f["median_scale"] for f in per_frame])),
            "covered_fraction": float(np.mean([f["covered_fraction"] for f in per_frame]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "demo" / "icm_demo.onnx"))
    parser.add_argument("--frames", default=str(ROOT.parent / "shared" / "real-samples" / "kitti" / "metric3d_kitti_demo"))
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    try:
        result = score_frames(Path(args.model), Path(args.frames))
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"score_real_kitti: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.model} on {len(result['frames'])} real KITTI frames ({args.frames}); Garg crop, 1e-3 < gt < 80 m")
    print("| | " + " | ".join(REPORTED) + " |")
    print("|---|" + "---:|" * len(REPORTED))
    for kind in ("metric", "median_scaled"):
        print(f"| {kind} | " + " | ".join(f"{result[kind][k]:.4f}" for k in REPORTED) + " |")
    print(f"mean median scale (gt / pred) {result['median_scale']:.3f}; "
          f"counted pixels with an estimate {result['covered_fraction']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
