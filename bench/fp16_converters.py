"""float16 converters on the demo and Swin-L models: the former hand-written one, onnxconverter-common's, ONNX Runtime's.

    python bench/fp16_converters.py [--swinl-onnx FILE] [--swinl-size 352x1216] [--scenes 3] [--threads 1]

The hand-written converter is read from the commit before the switch (``HAND_WRITTEN_AT`` below, with
``git show``), so the comparison can be rerun after it left the code. onnxconverter-common's
``float16.convert_float_to_float16`` and ONNX Runtime's ``onnxruntime.transformers.float16`` (the one
training/exporting/variants.py's ``convert_to_float16`` uses) run with ``keep_io_types=True`` and the
same block list (the tool's default plus variants.py's ``KEEP_FLOAT32_OPS``). Per model and converter: depth error against
the fp32 graph in ONNX Runtime (mean and max relative), the share of pixels whose hard cluster
(membership argmax) is unchanged, the median ONNX Runtime CPU latency (batch 1), the converter's own
run time, the file size and the TensorRT operator check (training/exporting/operator_check.py).
The Swin-L model is the paper-scale config with random weights (seed 0, depth head as initialised);
--swinl-onnx reuses this script's fp32 export of it, written there when missing. Synthetic scenes.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402

from icm_depth_ros.inference import contract  # noqa: E402
from training.data import SYNTHETIC_SPLIT_SEEDS, SyntheticRoadScenes  # noqa: E402
from training.exporting.onnx_export import run_onnxruntime  # noqa: E402
from training.exporting.operator_check import check_tensorrt_compatibility  # noqa: E402
from training.exporting.variants import KEEP_FLOAT32_OPS, convert_to_float16  # noqa: E402

HAND_WRITTEN_AT = "9b60e7e"  # the last commit whose training/exporting/variants.py has the hand-written converter
DEMO = ROOT / "models/demo/icm_demo.onnx"
SWINL_CONFIG = ROOT / "training/configs/icm_swinl_kitti_352x1216.yaml"


def hand_written_converter():
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{HAND_WRITTEN_AT}:training/exporting/variants.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="fp16_hand_")) / "hand_variants.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("hand_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.convert_to_float16


def onnxconverter_common_converter(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxconverter_common import float16  # noqa: PLC0415

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | KEEP_FLOAT32_OPS)
    return float16.convert_float_to_float16(copy, keep_io_types=True, op_block_list=block)


def export_swinl(path: Path, height: int, width: int) -> Path:
    import torch  # noqa: PLC0415

    from training.config import build_model, load_config  # noqa: PLC0415
    from training.exporting.onnx_export import export_onnx  # noqa: PLC0415

    config = load_config(SWINL_CONFIG, [f"model.img_size=[{height},{width}]"])
    torch.manual_seed(0)
    model = build_model(config, pretrained=False).eval()
    export_onnx(model, path, height, width, config_name=SWINL_CONFIG.stem)
    return path


def session(model: onnx.ModelProto, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_all(runner, images: np.ndarray) -> tuple[list, list, float]:
    outputs, times = [], []
    run_onnxruntime(runner, images[:1])  # warm-up
    for image in images:
        pixels = contract.pixels_from_unit_float(image[None])  # the graph's input (rgb_uint8_nhwc)
        start = time.perf_counter()
        outputs.append(run_onnxruntime(runner, pixels))
        times.append(1000.0 * (time.perf_counter() - start))
    labels = [o["cluster"][0] if "cluster" in o else o["membership"][0].argmax(axis=0) for o in outputs]
    return [o["depth"][0, 0] for o in outputs], labels, statistics.median(times)


def compare(name: str, fp32: onnx.ModelProto, converters: dict, images: np.ndarray, threads: int) -> list[dict]:
    depths, labels, ms = run_all(session(fp32, threads), images)
    rows = [{"model": name, "converter": "fp32 (reference)", "mb": fp32.ByteSize() / 1e6, "ms": ms,
             "tensorrt_check": check_tensorrt_compatibility(fp32).ok}]
    for converter_name, convert in converters.items():
        start = time.perf_counter()
        half = convert(fp32)
        convert_s = time.perf_counter() - start
        try:
            runner = session(half, threads)
        except Exception as error:  # noqa: BLE001 - a converter's broken graph is a result of the comparison
            rows.append({"model": name, "converter": converter_name, "failed": f"ONNX Runtime refuses the graph: {error}"[:220]})
            continue
        io = {v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in [*half.graph.input, *half.graph.output]}
        got_depths, got_labels, half_ms = run_all(runner, images)
        relative = [np.abs(d - b) / b for d, b in zip(got_depths, depths)]
        report = check_tensorrt_compatibility(half)
        rows.append({
            "model": name, "converter": converter_name, "mb": half.ByteSize() / 1e6, "ms": half_ms, "convert_s": convert_s,
            "mean_rel": float(np.mean([r.mean() for r in relative])), "max_rel": float(max(r.max() for r in relative)),
            "same_cluster": float(np.mean([np.mean(a == b) for a, b in zip(got_labels, labels)])),
            "tensorrt_check": report.ok, "tensorrt_errors": report.errors[:3], "io": io,
            "casts": sum(n.op_type == "Cast" for n in half.graph.node),
        })
    return rows


def scenes(count: int, height: int, width: int) -> np.ndarray:
    data = SyntheticRoadScenes(count, size=(height, width), seed=SYNTHETIC_SPLIT_SEEDS["val"])
    return np.stack([data[i]["image"].numpy() for i in range(count)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swinl-onnx", type=Path, help="fp32 Swin-L export to reuse; written there when missing")
    parser.add_argument("--swinl-size", default="352x1216", help="HxW of the Swin-L export")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    height, width = (int(v) for v in args.swinl_size.split("x"))
    converters = {
        f"hand-written ({HAND_WRITTEN_AT})": hand_written_converter(),
        "onnxconverter-common 1.16.0": onnxconverter_common_converter,
        f"ONNX Runtime {onnxruntime.__version__} transformers.float16 (used)": convert_to_float16,
    }

    rows = []
    demo = onnx.load(str(DEMO))
    info = {p.key: p.value for p in demo.metadata_props}
    rows += compare("demo", demo, converters, scenes(args.scenes, int(info["icm.input_height"]), int(info["icm.input_width"])), args.threads)
    swinl_path = args.swinl_onnx or Path(tempfile.mkdtemp(prefix="fp16_swinl_")) / "swinl.onnx"
    if not swinl_path.exists():
        export_swinl(swinl_path, height, width)
    rows += compare(f"Swin-L {height}x{width}", onnx.load(str(swinl_path)), converters, scenes(args.scenes, height, width), args.threads)

    print(f"# {args.scenes} synthetic val scenes per model, ONNX Runtime {onnxruntime.__version__} CPU, {args.threads} thread(s), batch 1")
    header = ("model", "converter", "MB", "mean rel. depth diff", "max rel. depth diff", "same cluster", "ms/frame",
              "convert s", "Casts", "I/O float32", "TensorRT check")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        if "failed" in row:
            print("| " + " | ".join([row["model"], row["converter"]] + ["-"] * (len(header) - 3) + [row["failed"].replace("|", "/")]) + " |")
            continue
        reference = "convert_s" not in row
        cells = (
            row["model"], row["converter"], f"{row['mb']:.1f}",
            "-" if reference else f"{row['mean_rel']:.2e}", "-" if reference else f"{row['max_rel']:.2e}",
            "-" if reference else f"{100 * row['same_cluster']:.2f}%", f"{row['ms']:.0f}",
            "-" if reference else f"{row['convert_s']:.1f}", "-" if reference else str(row["casts"]),
            "-" if reference else ("yes" if set(row["io"].values()) == {"FLOAT"} else "no: " + str(row["io"])),
            "passes" if row["tensorrt_check"] else "fails: " + "; ".join(row["tensorrt_errors"]),
        )
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
