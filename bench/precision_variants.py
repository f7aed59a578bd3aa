"""fp32 / fp16 / INT8 Q/DQ variants of the demo model and the paper-scale Swin-L, in ONNX Runtime on the CPU.

    python bench/precision_variants.py [--swinl-size 352x1216] [--swinl-onnx FILE] [--scenes 3]
                                       [--calib-scenes 2] [--threads 1] [--json-out FILE]

Models: the shipped demo model (models/demo/icm_demo.onnx, its own input size) and
training/configs/icm_swinl_kitti_352x1216.yaml with random weights (seed 0; --swinl-onnx reuses an fp32
export of it, written there when missing). The fp16 and INT8 files are made by
training/exporting/variants.py exactly as training/export.py makes them (INT8: symmetric Q/DQ on Conv,
weight MatMul/Gemm and residual Adds, calibrated on --calib-scenes synthetic "train" scenes). Each
variant runs on --scenes synthetic "val" scenes, batch 1, and is compared with the fp32 graph's output:
abs_rel (mean |d - d_fp32| / d_fp32), the largest relative depth error of any pixel, and the share of
membership pixels whose arg-max cluster is fp32's. Latency: the median over the scenes (after one
warm-up run). The TensorRT operator and Q/DQ check (training/exporting/operator_check.py) per file.
With random weights the change against fp32 is what to read, not any accuracy against ground truth.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402

from icm_depth_ros.inference import contract  # noqa: E402
from icm_depth_ros.inference.onnx_precision import variant_path  # noqa: E402
from training.data import SYNTHETIC_SPLIT_SEEDS, SyntheticRoadScenes  # noqa: E402
from training.exporting.onnx_export import read_model_info, run_onnxruntime  # noqa: E402
from training.exporting.operator_check import check_tensorrt_compatibility  # noqa: E402
from training.exporting.variants import write_float16, write_int8  # noqa: E402

DEMO = ROOT / "models/demo/icm_demo.onnx"
SWINL_CONFIG = ROOT / "training/configs/icm_swinl_kitti_352x1216.yaml"


def export_swinl(path: Path, height: int, width: int) -> Path:
    import torch  # noqa: PLC0415

    from training.config import build_model, load_config  # noqa: PLC0415
    from training.exporting.onnx_export import export_onnx  # noqa: PLC0415

    config = load_config(SWINL_CONFIG, [f"model.img_size=[{height},{width}]"])
    torch.manual_seed(0)
    model = build_model(config, pretrained=False).eval()
    torch.nn.init.normal_(model.predictors[0].head.weight, std=0.05)  # the zero-initialised head gives constant depth
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, path, height, width, config_name=SWINL_CONFIG.stem)
    return path


def images(split: str, count: int, height: int, width: int) -> list[np.ndarray]:
    data = SyntheticRoadScenes(count, size=(height, width), seed=SYNTHETIC_SPLIT_SEEDS[split])
    return [data[i]["image"].numpy() for i in range(count)]


def run(path: Path, scenes: list[np.ndarray], threads: int) -> tuple[list, list, float]:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    run_onnxruntime(session, scenes[0][None])  # warm-up: allocations, kernel selection
    depths, labels, times = [], [], []
    for image in scenes:
        pixels = contract.pixels_from_unit_float(image[None])  # the graph's input (rgb_uint8_nhwc)
        start = time.perf_counter()
        outputs = run_onnxruntime(session, pixels)
        times.append(1000.0 * (time.perf_counter() - start))
        depths.append(outputs["depth"][0, 0])
        labels.append(outputs["cluster"][0] if "cluster" in outputs else outputs["membership"][0].argmax(axis=0))
    return depths, labels, statistics.median(times)


def measure_model(name: str, fp32: Path, args: argparse.Namespace, folder: Path) -> list[dict]:
    info = read_model_info(fp32)
    height, width = info.input_height, info.input_width
    validation = images("val", args.scenes, height, width)
    start = time.perf_counter()
    files = {"fp32": fp32, "fp16": write_float16(fp32, variant_path(folder / f"{name}.onnx", "fp16"))}
    fp16_s = time.perf_counter() - start
    start = time.perf_counter()
    files["int8"] = write_int8(fp32, variant_path(folder / f"{name}.onnx", "int8"), images("train", args.calib_scenes, height, width))
    int8_s = time.perf_counter() - start
    rows, reference = [], None
    for precision, path in files.items():
        depths, labels, ms = run(path, validation, args.threads)
        reference = reference or (depths, labels)
        relative = [np.abs(d - r) / r for d, r in zip(depths, reference[0])]
        rows.append({
            "model": name, "size": f"{height}x{width}", "precision": precision, "mb": path.stat().st_size / 1e6,
            "abs_rel_vs_fp32": float(np.mean([r.mean() for r in relative])),
            "max_rel_vs_fp32": float(max(r.max() for r in relative)),
            "same_cluster": float(np.mean([np.mean(a == b) for a, b in zip(labels, reference[1])])),
            "ms": ms, "tensorrt_check": check_tensorrt_compatibility(path).ok,
            "write_s": {"fp32": None, "fp16": fp16_s, "int8": int8_s}[precision],
        })
        print(f"# {name} {precision}: {ms:.0f} ms/frame", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swinl-size", default="352x1216", help="HxW of the Swin-L export")
    parser.add_argument("--swinl-onnx", type=Path, help="fp32 Swin-L export to reuse; written there when missing")
    parser.add_argument("--scenes", type=int, default=3, help="synthetic val scenes per model")
    parser.add_argument("--calib-scenes", type=int, default=2, help="synthetic train scenes for INT8 calibration")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json-out", type=Path, help="also write the rows and the run's settings as JSON")
    args = parser.parse_args()
    height, width = (int(v) for v in args.swinl_size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="precision_variants_"))
    began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = Path("/proc/loadavg").read_text().split()[0]
    start = time.perf_counter()

    rows = measure_model("demo", DEMO, args, folder)
    swinl = args.swinl_onnx or folder / "swinl.onnx"
    export_s = None
    if not swinl.exists():
        export_start = time.perf_counter()
        export_swinl(swinl, height, width)
        export_s = time.perf_counter() - export_start
    rows += measure_model("swinl", swinl, args, folder)
    total_s = time.perf_counter() - start

    settings = {"began": began, "total_s": round(total_s), "swinl_export_s": export_s and round(export_s),
                "load_average_start": float(load_start), "load_average_end": float(Path("/proc/loadavg").read_text().split()[0]),
                "onnxruntime": onnxruntime.__version__, "scenes": args.scenes, "calib_scenes": args.calib_scenes,
                "threads": args.threads, "swinl_size": args.swinl_size}
    print(f"# {began}, {total_s:.0f} s, load average {settings['load_average_start']} -> {settings['load_average_end']}; "
          f"ONNX Runtime {onnxruntime.__version__} CPU, {args.threads} thread(s), batch 1; {args.scenes} val scenes per model, "
          f"INT8 calibrated on {args.calib_scenes} train scenes")
    header = ("model", "input", "precision", "MB", "abs_rel vs fp32", "max rel. error", "same cluster", "ms/frame",
              "vs fp32", "TensorRT check")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    base = {}
    for row in rows:
        base.setdefault(row["model"], row["ms"])
        cells = (row["model"], row["size"], row["precision"], f"{row['mb']:.1f}", f"{row['abs_rel_vs_fp32']:.2e}",
                 f"{row['max_rel_vs_fp32']:.2e}", f"{100 * row['same_cluster']:.2f}%", f"{row['ms']:.0f}",
                 f"{base[row['model']] / row['ms']:.2f}x", "passes" if row["tensorrt_check"] else "fails")
        print("| " + " | ".join(cells) + " |")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
