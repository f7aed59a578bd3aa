"""fp32 vs fp16 vs INT8 Q/DQ ONNX in ONNX Runtime: accuracy on synthetic validation scenes and CPU speed, side by side.

    python bench/export_variants.py [--checkpoint runs/x/best.pt] [--height 192 --width 640]
                                    [--scenes 16] [--calib-scenes 8] [--threads 2] [--out-dir DIR]

Without --checkpoint the network is randomly initialised (seed 0, depth head perturbed so depth varies):
its abs_rel and d1 against ground truth mean nothing, but the change against fp32 and the speed do.
Validation scenes are the synthetic "val" split, INT8 calibration scenes the "train" split. Metrics are
icm_depth_ros/processing/metrics.py's (KITTI convention, prediction clamped to the model's depth range). The fp16 and
INT8 files are the ones TensorRT builds fp16 / int8 engines from (training/exporting/variants.py): INT8 is
symmetric Q/DQ (int8 activations and per-channel int8 weights, zero points 0), so the CPU figures here are
those of the very file an int8 engine is built from; each file's TensorRT operator/Q/DQ check is reported.
For comparison the run adds ONNX Runtime's own CPU format (uint8 activations with zero points), which
TensorRT rejects.
Add --json to print one JSON object (the same table, plus peak memory) instead.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from json_output import peak_rss_mb, print_json, stdout_to_stderr  # noqa: E402
from icm_depth_ros.processing.metrics import MetricMeans, clamp_prediction, depth_metrics, evaluation_mask  # noqa: E402
from training.data import SYNTHETIC_SPLIT_SEEDS, SyntheticRoadScenes  # noqa: E402
from icm_depth_ros.inference.onnx_precision import variant_path  # noqa: E402
from training.exporting.onnx_export import (  # noqa: E402
    export_onnx, load_model_from_checkpoint, onnxruntime_session, run_onnxruntime,
)
from training.exporting.operator_check import check_tensorrt_compatibility  # noqa: E402
from training.exporting.variants import write_float16, write_int8  # noqa: E402
from training.model import ICMDepthNet  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="trained checkpoint (default: random weights)")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--scenes", type=int, default=16, help="synthetic validation scenes")
    parser.add_argument("--calib-scenes", type=int, default=8, help="synthetic training scenes for INT8 calibration")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--out-dir", type=Path, help="keep the ONNX files here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    return parser.parse_args()


def build_model(args: argparse.Namespace) -> tuple[ICMDepthNet, str]:
    if args.checkpoint:
        model, config = load_model_from_checkpoint(args.checkpoint)
        return model, f"checkpoint {args.checkpoint} ({config.get('name', 'unknown')})"
    torch.manual_seed(0)
    model = ICMDepthNet("resnet18", img_size=(args.height, args.width), pretrained_path=None).eval()
    torch.nn.init.normal_(model.predictors[0].head.weight, std=0.05)  # the zero-initialised head gives constant depth
    return model, "random ResNet-18 weights (seed 0): only the change vs fp32 and the speed are meaningful"


ROUNDS = 4  # the variants take turns, so a change of machine load during the run hits all of them alike


def evaluate(session, samples: list[dict], min_depth: float, max_depth: float) -> dict:
    """Mean metrics over ``samples`` (batch 1); also returns the raw outputs for comparisons."""
    means, depths, labels = MetricMeans(), [], []
    for sample in samples:
        outputs = run_onnxruntime(session, sample["image"][None])
        depth = clamp_prediction(outputs["depth"][0, 0], min_depth, max_depth)  # [H, W]
        mask = evaluation_mask(sample["depth"], sample["valid"], min_depth, max_depth)
        means.add(depth_metrics(depth[mask], sample["depth"][mask], np.ones(int(mask.sum()), bool)))
        depths.append(depth)
        labels.append(outputs["cluster"][0])  # [h, w] hard cluster per membership cell
    return {"metrics": means.means(), "depths": depths, "labels": labels}


def time_sessions(sessions: dict, samples: list[dict]) -> dict[str, float]:
    """Median per-frame latency (ms, batch 1) of each session, the sessions taking turns in ROUNDS blocks."""
    for session in sessions.values():
        run_onnxruntime(session, samples[0]["image"][None])  # warm-up: allocations, kernel selection
    latencies = {name: [] for name in sessions}
    block = max(1, len(samples) // ROUNDS)
    for round_index in range(ROUNDS):
        for name, session in sessions.items():
            for sample in samples[round_index * block:(round_index + 1) * block] or samples[:block]:
                start = time.perf_counter()
                run_onnxruntime(session, sample["image"][None])
                latencies[name].append(1000.0 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in latencies.items()}


def main() -> int:
    args = parse_args()
    with stdout_to_stderr(args.json):
        report = measure(args)
    if args.json:
        print_json(report)
        return 0
    print(f"# {report['weights']}")
    print(f"# {args.scenes} val scenes at {args.height}x{args.width}, ONNX Runtime CPU, {args.threads} threads, batch 1;"
          f" INT8 (symmetric Q/DQ) calibrated on {args.calib_scenes} train scenes; render {report['render_s']:.0f} s, export "
          f"{report['export_s']:.0f} s; files in {report['folder']}")
    header = ("variant", "MB", "abs_rel", "d abs_rel", "d1", "d d1", "rel diff vs fp32", "same cluster", "ms/frame", "speed-up",
              "TensorRT check")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    base = report["variants"]["fp32"]
    for name, result in report["variants"].items():
        row = (
            name, f"{result['mb']:.1f}",
            f"{result['abs_rel']:.4f}", f"{result['abs_rel'] - base['abs_rel']:+.4f}",
            f"{result['d1']:.4f}", f"{result['d1'] - base['d1']:+.4f}",
            f"{result['rel_diff_vs_fp32']:.2e}", f"{100 * result['same_cluster']:.1f}%", f"{result['ms']:.0f}",
            f"{result['speedup_vs_fp32']:.2f}x", "passes" if result["tensorrt_check_ok"] else "fails",
        )
        print("| " + " | ".join(row) + " |")
    return 0


def measure(args: argparse.Namespace) -> dict:
    """Exports the three variants and evaluates them; per variant: size, metrics, agreement with fp32, speed."""
    torch.set_num_threads(args.threads)
    model, description = build_model(args)
    folder = args.out_dir or Path(tempfile.mkdtemp(prefix="export_variants_"))
    folder.mkdir(parents=True, exist_ok=True)
    size = (args.height, args.width)

    start = time.perf_counter()
    validation = SyntheticRoadScenes(args.scenes, size=size, seed=SYNTHETIC_SPLIT_SEEDS["val"])
    samples = [
        {key: validation[i][key][0].numpy() if key != "image" else validation[i][key].numpy() for key in ("image", "depth", "valid")}
        for i in range(args.scenes)
    ]
    calibration = SyntheticRoadScenes(args.calib_scenes, size=size, seed=SYNTHETIC_SPLIT_SEEDS["train"])
    calibration_images = [calibration[i]["image"].numpy() for i in range(args.calib_scenes)]
    rendered = time.perf_counter() - start

    start = time.perf_counter()
    files = {precision: variant_path(folder / "model.onnx", precision) for precision in ("fp32", "fp16", "int8")}
    files["int8_uint8_cpu_only"] = folder / "model.int8-uint8.onnx"  # ONNX Runtime's CPU default, for comparison
    export_onnx(model, files["fp32"], *size, config_name="bench")
    write_float16(files["fp32"], files["fp16"])
    write_int8(files["fp32"], files["int8"], calibration_images)
    write_int8(files["fp32"], files["int8_uint8_cpu_only"], calibration_images, activations="uint8")
    exported = time.perf_counter() - start

    sessions = {name: onnxruntime_session(path, args.threads) for name, path in files.items()}
    results = {name: evaluate(session, samples, model.min_depth, model.max_depth) for name, session in sessions.items()}
    for name, ms in time_sessions(sessions, samples).items():
        results[name]["ms"] = ms
    base = results["fp32"]
    variants = {}
    for name, result in results.items():
        relative = np.mean([np.mean(np.abs(d - b) / b) for d, b in zip(result["depths"], base["depths"])])
        agreement = np.mean([np.mean(a == b) for a, b in zip(result["labels"], base["labels"])])
        variants[name] = {
            "mb": files[name].stat().st_size / 1e6, "abs_rel": float(result["metrics"]["abs_rel"]),
            "d1": float(result["metrics"]["d1"]), "rel_diff_vs_fp32": float(relative), "same_cluster": float(agreement),
            "ms": result["ms"], "speedup_vs_fp32": base["ms"] / result["ms"],
            "tensorrt_check_ok": check_tensorrt_compatibility(files[name]).ok,
        }
    return {"weights": description, "size": f"{args.height}x{args.width}", "scenes": args.scenes,
            "calib_scenes": args.calib_scenes, "threads": args.threads, "render_s": round(rendered, 1),
            "export_s": round(exported, 1), "folder": str(folder), "variants": variants, "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    sys.exit(main())
