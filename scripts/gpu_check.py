"""TensorRT check on a machine with an NVIDIA GPU: fp32 / fp16 / int8 engines of the demo model vs ONNX Runtime.

    python scripts/gpu_check.py [--model models/demo/icm_demo.onnx] [--scenes 16] [--calib-scenes 16]
                                [--frames 50] [--out outputs/gpu_check] [--onnxruntime-only] [--batches-only]

For each precision: the ONNX file of that precision (the fp32 export, its fp16 variant, its INT8
symmetric Q/DQ variant calibrated on rendered "train" scenes), the engine built from it by the
project's builder (icm_depth_ros/inference/engine_builder.py) and opened by the node's backend
(open_backend("tensorrt"), cuda-python buffers, execute_async_v3). Each engine is compared on rendered
"val" scenes with ONNX Runtime running the fp32 file (max and mean relative depth error, abs_rel
against ground truth and its change) and with ONNX Runtime running the same variant; then timed
(median ms per frame, batch 1, after warm-up). Writes ``<out>/gpu_check.json`` and prints a table.
``--onnxruntime-only`` does everything but TensorRT (to check the script where there is no GPU).
Every backend is given the scenes' camera pixels as its model takes them (``contract.model_input``: uint8
[B, H, W, 3] for the rgb_uint8_nhwc exports, the converted float images for an older file).

Then batch 1 vs 3 (one camera vs three cameras in one call; docs/node.md): the demo network (its config,
random weights: the time does not depend on them) exported with a dynamic batch, timed at batch 1 and 3
in PyTorch on CUDA (the exported graph, ExportGraph: pixels in, depth, cluster and firmness out; fp32, where
torch.cuda is available), as a TensorRT fp16 engine with profile 1..3
(``--max-batch 3``, through the node's backend; where TensorRT runs) and in ONNX Runtime (for
reference). Written to ``<out>/batches.json`` and printed as a second table: ms per call, ms per frame,
and what a batch of 3 costs against 3 single calls. ``--batches-only`` does only this part (gpu_check.sh
runs it when TensorRT does not import, so a CUDA machine with PyTorch still measures what batching buys).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from icm_depth_ros.inference import onnx_precision, open_backend  # noqa: E402
from icm_depth_ros.inference.contract import ModelInfo, model_input, pixels_from_unit_float  # noqa: E402
from icm_depth_ros.processing.metrics import MetricMeans, clamp_prediction, depth_metrics, evaluation_mask  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")
BATCHES = (1, 3)  # one camera; three cameras in one call (README: cameras:=front,left,right)
DEMO_CONFIG = ROOT / "training" / "configs" / "synthetic_mobilenetv3_demo_96x320.yaml"  # models/demo's network


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo" / "icm_demo.onnx", help="fp32 ONNX export")
    parser.add_argument("--scenes", type=int, default=16, help="rendered validation scenes to compare on")
    parser.add_argument("--calib-scenes", type=int, default=16, help="rendered training scenes for INT8 calibration")
    parser.add_argument("--frames", type=int, default=50, help="timed frames per backend")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check")
    parser.add_argument("--onnxruntime-only", action="store_true", help="skip TensorRT (no GPU here)")
    parser.add_argument("--batches-only", action="store_true",
                        help="only the batch 1 vs 3 timing (PyTorch CUDA; TensorRT where it runs; ONNX Runtime)")
    return parser.parse_args()


def rendered(count: int, height: int, width: int, split: str) -> list[dict]:
    from training.data import SYNTHETIC_SPLIT_SEEDS, SyntheticRoadScenes  # noqa: PLC0415 - needs torch

    scenes = SyntheticRoadScenes(count, size=(height, width), seed=SYNTHETIC_SPLIT_SEEDS[split])
    samples = [{"image": scenes[i]["image"].numpy(), "depth": scenes[i]["depth"][0].numpy(),
                "valid": scenes[i]["valid"][0].numpy()} for i in range(count)]
    for sample in samples:  # the camera's pixels uint8 [H, W, 3] the image came from (what the node feeds a model)
        sample["pixels"] = pixels_from_unit_float(sample["image"][None])[0]
    return samples


def write_variants(fp32: Path, calibration: list[dict]) -> dict[str, Path]:
    from training.exporting.operator_check import check_tensorrt_compatibility  # noqa: PLC0415
    from training.exporting.variants import write_float16, write_int8  # noqa: PLC0415

    files = {"fp32": fp32, "fp16": onnx_precision.variant_path(fp32, "fp16"), "int8": onnx_precision.variant_path(fp32, "int8")}
    write_float16(fp32, files["fp16"])
    write_int8(fp32, files["int8"], [sample["image"] for sample in calibration])
    for precision, path in files.items():
        report = check_tensorrt_compatibility(path)
        if not report.ok:
            raise SystemExit(f"{path}: TensorRT would reject the {precision} file: {report.errors[:3]}")
    return files


def run_all(backend, samples: list[dict]) -> list[np.ndarray]:
    """Each sample's depth [H, W] from ``backend``, given the sample's pixels as its model takes them."""
    return [backend.infer(model_input(backend.info, sample["pixels"][None]))[0][0, 0] for sample in samples]


def time_backend(backend, pixels: np.ndarray, frames: int) -> float:
    """Median ms of ``backend.infer`` on pixels uint8 [B, H, W, 3] (converted to its model's input beforehand)."""
    image = model_input(backend.info, pixels)
    return time_calls(lambda: backend.infer(image), frames)


def time_calls(call, frames: int) -> float:
    """Median ms of ``call()`` (which returns only when its results are on the host) after 5 warm-up calls."""
    for _ in range(5):
        call()  # warm-up: allocation, kernel selection, clocks
    latencies = []
    for _ in range(frames):
        start = time.perf_counter()
        call()
        latencies.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(latencies)


def batch_row(description: str, milliseconds: dict[int, float]) -> dict:
    """ms per call and per frame at each batch size, and batch 3's cost against 3 single calls."""
    row = {"description": description, "ms_per_call": {str(b): ms for b, ms in milliseconds.items()},
           "ms_per_frame": {str(b): ms / b for b, ms in milliseconds.items()}}
    row["batch3_vs_3_single_calls"] = milliseconds[3] / (3 * milliseconds[1])
    return row


def time_batches(args: argparse.Namespace, pixels: np.ndarray) -> dict[str, dict]:
    """Batch 1 vs 3 of the demo network (dynamic batch, random weights) on pixels uint8 [3, H, W, 3]: PyTorch CUDA
    (the exported graph, ExportGraph), TensorRT, ONNX Runtime."""
    import torch  # noqa: PLC0415

    from training.config import build_model, load_config  # noqa: PLC0415
    from training.exporting.onnx_export import ExportGraph, export_onnx  # noqa: PLC0415
    from training.exporting.variants import write_float16  # noqa: PLC0415

    torch.manual_seed(0)
    net = build_model(load_config(DEMO_CONFIG), pretrained=False).eval()
    height, width = pixels.shape[1:3]
    onnx_path = args.out / "batch_model.onnx"
    export_onnx(net, onnx_path, height, width, config_name=f"{DEMO_CONFIG.stem} (random weights)", dynamic_batch=True)
    rows = {}
    if torch.cuda.is_available():
        graph = ExportGraph(net).cuda().eval()
        device_pixels = torch.from_numpy(pixels).cuda()

        def pytorch_call(batch):
            def call():
                with torch.no_grad():
                    graph(device_pixels[:batch])  # depth, cluster, firmness
                torch.cuda.synchronize()
            return call

        rows["pytorch cuda fp32"] = batch_row(f"PyTorch {torch.__version__}, {torch.cuda.get_device_name()}",
                                              {b: time_calls(pytorch_call(b), args.frames) for b in BATCHES})
    else:
        rows["pytorch cuda fp32"] = {"skipped": "torch.cuda.is_available() is False (no CUDA build of PyTorch, or no GPU)"}
    from icm_depth_ros.inference.engine_builder import missing_requirements  # noqa: PLC0415

    missing = ["--onnxruntime-only"] if args.onnxruntime_only else missing_requirements()
    if missing:
        rows["tensorrt fp16"] = {"skipped": "; ".join(missing)}
    else:  # the node's backend: engine with profile 1..3, built like training/export.py --max-batch 3 does
        write_float16(onnx_path, onnx_precision.variant_path(onnx_path, "fp16"))
        backend = open_backend("tensorrt", str(args.out / "batch_model.fp16.engine"), onnx_path=str(onnx_path),
                               precision="fp16", allow_engine_build=True, engine_max_batch=max(BATCHES))
        rows["tensorrt fp16"] = batch_row(backend.description, {
            b: time_backend(backend, pixels[:b], args.frames) for b in BATCHES})
    backend = open_backend("onnxruntime", str(onnx_path))
    rows["onnxruntime fp32"] = batch_row(backend.description, {
        b: time_backend(backend, pixels[:b], args.frames) for b in BATCHES})
    return rows


def print_batches(rows: dict[str, dict], path: Path, frames: int) -> None:
    print(f"# batch 1 vs 3 (one camera vs three in one call), demo network with random weights, median of {frames} calls")
    print("| backend | ms/call batch 1 | ms/call batch 3 | ms/frame batch 3 | batch 3 / (3 x batch 1) |")
    print("|---|---|---|---|---|")
    for label, row in rows.items():
        if "skipped" in row:
            print(f"| {label} | skipped: {row['skipped']} | | | |")
            continue
        calls = row["ms_per_call"]
        print(f"| {label} | {calls['1']:.2f} | {calls['3']:.2f} | {row['ms_per_frame']['3']:.2f} "
              f"| {row['batch3_vs_3_single_calls']:.2f} |")
    print(f"wrote {path}")


def batches_report(args: argparse.Namespace, info: ModelInfo) -> None:
    """Batch 1 vs 3 on rendered val scenes at the model's size: ``<out>/batches.json`` and a table."""
    pixels = np.stack([sample["pixels"] for sample in rendered(max(BATCHES), info.input_height, info.input_width, "val")])
    rows = time_batches(args, pixels)
    path = args.out / "batches.json"
    path.write_text(json.dumps({"batches": list(BATCHES), "frames": args.frames, "results": rows}, indent=2) + "\n")
    print_batches(rows, path, args.frames)


def scores(depths: list[np.ndarray], samples: list[dict], info: ModelInfo) -> float:
    means = MetricMeans()
    for depth, sample in zip(depths, samples):
        depth = clamp_prediction(depth, info.min_depth, info.max_depth)
        mask = evaluation_mask(sample["depth"], sample["valid"], info.min_depth, info.max_depth)
        means.add(depth_metrics(depth[mask], sample["depth"][mask], np.ones(int(mask.sum()), bool)))
    return float(means.means()["abs_rel"])


def relative_errors(depths: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, float]:
    relative = [np.abs(d - r) / r for d, r in zip(depths, reference)]
    return float(max(np.max(r) for r in relative)), float(np.mean([np.mean(r) for r in relative]))


def main() -> int:
    args = parse_args()
    if args.batches_only:
        args.out.mkdir(parents=True, exist_ok=True)
        batches_report(args, ModelInfo.from_metadata(onnx_precision.onnx_metadata(args.model), source=str(args.model)))
        return 0
    if not args.onnxruntime_only:
        from icm_depth_ros.inference.engine_builder import missing_requirements  # noqa: PLC0415

        missing = missing_requirements()
        if missing:
            print(f"error: TensorRT cannot run here: {'; '.join(missing)}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    fp32 = args.out / "model.onnx"
    shutil.copy(args.model, fp32)
    info = ModelInfo.from_metadata(onnx_precision.onnx_metadata(fp32), source=str(fp32))
    samples = rendered(args.scenes, info.input_height, info.input_width, "val")
    files = write_variants(fp32, rendered(args.calib_scenes, info.input_height, info.input_width, "train"))

    reference_backend = open_backend("onnxruntime", str(fp32))
    reference = run_all(reference_backend, samples)
    base_abs_rel = scores(reference, samples, info)
    frame = samples[0]["pixels"][None]  # the frame timed, as camera pixels
    rows = {"onnxruntime fp32 (reference)": {"abs_rel": base_abs_rel, "ms": time_backend(reference_backend, frame, args.frames)}}
    for precision in PRECISIONS:
        backends = {f"onnxruntime {precision}": open_backend("onnxruntime", str(files[precision]))}
        if not args.onnxruntime_only:
            engine = args.out / f"model.{precision}.engine"
            start = time.perf_counter()
            backends[f"tensorrt {precision}"] = open_backend("tensorrt", str(engine), onnx_path=str(fp32),
                                                             precision=precision, allow_engine_build=True)
            build_s = time.perf_counter() - start
        same_file = None
        for label, backend in backends.items():
            if label == f"onnxruntime {precision}" and precision == "fp32":
                continue  # that is the reference
            depths = run_all(backend, samples)
            max_rel, mean_rel = relative_errors(depths, reference)
            row = {"max_rel_depth_vs_ort_fp32": max_rel, "mean_rel_depth_vs_ort_fp32": mean_rel,
                   "abs_rel": scores(depths, samples, info), "ms": time_backend(backend, frame, args.frames)}
            row["abs_rel_change"] = row["abs_rel"] - base_abs_rel
            if label.startswith("onnxruntime"):
                same_file = depths
            else:
                row["build_and_load_s"] = build_s
                if same_file is not None:  # the same Q/DQ or fp16 file in both runtimes
                    row["max_rel_depth_vs_ort_same_file"] = relative_errors(depths, same_file)[0]
            rows[label] = row
    report = {"model": str(args.model), "size": f"{info.input_height}x{info.input_width}", "scenes": args.scenes,
              "calib_scenes": args.calib_scenes, "frames": args.frames, "results": rows}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"# {args.model.name} at {report['size']}, {args.scenes} rendered val scenes, batch 1, median of {args.frames} frames")
    print("| backend | max rel depth vs ORT fp32 | mean rel | abs_rel | change | ms/frame |")
    print("|---|---|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row.get('max_rel_depth_vs_ort_fp32', 0):.2e} | {row.get('mean_rel_depth_vs_ort_fp32', 0):.2e} "
              f"| {row['abs_rel']:.4f} | {row.get('abs_rel_change', 0):+.4f} | {row['ms']:.2f} |")
    print(f"wrote {args.out / 'gpu_check.json'}")
    batches_report(args, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
