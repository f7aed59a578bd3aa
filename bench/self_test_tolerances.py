"""The self-test's figures for a model's fp32 / fp16 / INT8 files in ONNX Runtime, and for copies of it with
changed weights: what the tolerances in icm_depth_ros/inference/self_test.py are set from.

    python bench/self_test_tolerances.py [--model models/demo/icm_demo.onnx] [--seeds 5] [--calib-scenes 16]
                                         [--out-dir DIR] [--json]

The fp16 and INT8 files are written with training/exporting/variants.py as training/export.py writes them
(INT8 calibrated on --calib-scenes synthetic train scenes, export.py's default). Each file runs on the
reference input of seeds 0 .. --seeds-1 (seed 0 is the one stored in the model; the others render the same
scene with other texture noise) and is compared with the fp32 file's outputs for the same input, as the
self-test does: depth abs_rel and max relative error on the reference's grid (float16-stored), cluster
agreement of the arg-max membership. "perturbed xS" is the fp32 file with Gaussian noise of S times each
weight tensor's spread added (test/icm_depth_ros/conftest.py's with_perturbed_weights uses 0.3): a model
that still runs but is not the one the reference was computed from. Shown per row: the worst over the seeds
(max of abs_rel and max_rel, min of agreement), and whether the tolerance of its precision passes it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from icm_depth_ros.inference import self_test  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PERTURBATIONS = (0.3, 0.1, 0.03, 0.01)


def session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def outputs(sess, image: np.ndarray, num_clusters: int):
    """(depth, cluster, num_clusters) of the graph for the uint8 pixels ``image`` [1, H, W, 3]."""
    from training.exporting.onnx_export import run_onnxruntime

    result = run_onnxruntime(sess, image)
    cluster = result["cluster"] if "cluster" in result else result["membership"].argmax(axis=1)
    return result["depth"], cluster, num_clusters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo" / "icm_demo.onnx")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--calib-scenes", type=int, default=16)
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the variants here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from icm_depth_ros.inference.contract import ModelInfo
    from icm_depth_ros.inference.onnx_precision import onnx_metadata
    from training.export import synthetic_images
    from training.exporting.variants import write_float16, write_int8

    info = ModelInfo.from_metadata(onnx_metadata(args.model), str(args.model))
    height, width = info.input_height, info.input_width
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"fp32": args.model}
        files["fp16"] = write_float16(args.model, folder / "model.fp16.onnx")
        files["int8"] = write_int8(args.model, folder / "model.int8.onnx",
                                   synthetic_images(args.calib_scenes, height, width, split="train"))
        for scale in PERTURBATIONS:
            files[f"perturbed x{scale:g}"] = self_test.write_perturbed_copy(args.model, folder / f"perturbed_{scale:g}.onnx", scale)
        sessions = {name: session(path) for name, path in files.items()}
        rows = {name: [] for name in files}
        for seed in range(args.seeds):
            image = self_test.reference_image(height, width, seed)[None]
            reference = self_test.make_reference(*outputs(sessions["fp32"], image, info.num_clusters), seed=seed)
            for name, sess in sessions.items():
                rows[name].append(self_test.compare(reference, *outputs(sess, image, info.num_clusters)))
    table = {}
    for name, figures in rows.items():
        precision = name if name in self_test.TOLERANCES else "fp32"
        worst = self_test.Figures(abs_rel=max(f.abs_rel for f in figures), max_rel=max(f.max_rel for f in figures),
                                  agreement=min(f.agreement for f in figures))
        table[name] = {"precision": precision, "seed0": figures[0].__dict__, "worst": worst.__dict__,
                       "passes_tolerance": all(f.within(self_test.TOLERANCES[precision]) for f in figures)}
    if args.json:
        print(json.dumps({"model": str(args.model), "seeds": args.seeds, "rows": table,
                          "tolerances": {k: v.__dict__ for k, v in self_test.TOLERANCES.items()}}, indent=1))
        return 0
    print(f"{args.model} ({height}x{width}), reference inputs seeds 0..{args.seeds - 1}, against the fp32 file's outputs")
    print("| file | abs_rel (seed 0 / worst) | max rel. error (seed 0 / worst) | cluster agreement (seed 0 / worst) "
          "| tolerance of its precision |")
    print("|---|---|---|---|---|")
    for name, row in table.items():
        s, w = row["seed0"], row["worst"]
        print(f"| {name} | {s['abs_rel']:.2e} / {w['abs_rel']:.2e} | {s['max_rel']:.2e} / {w['max_rel']:.2e} | "
              f"{s['agreement']:.2%} / {w['agreement']:.2%} | {row['precision']}: "
              f"{'passes' if row['passes_tolerance'] else 'fails'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
