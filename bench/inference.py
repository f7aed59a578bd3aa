"""Per-frame CPU latency of one ICMDepthNet: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime INT8.

    python bench/inference.py [--sizes 192x640 352x1216] [--frames 20] [--warmup 2] [--threads 2]
                              [--calib-scenes 4] [--checkpoint runs/x/best.pt] [--json]

For each input size: batch 1, the median over --frames timed frames after --warmup untimed ones, on
synthetic "val" road scenes; the same thread count for every backend (torch.set_num_threads and ONNX
Runtime's intra-op threads). PyTorch runs in eval mode under torch.no_grad(); the ONNX graphs come from
training/exporting/onnx_export.py and the INT8 one from training/exporting/variants.py (symmetric Q/DQ, the file an
int8 TensorRT engine is built from, calibrated on synthetic "train" scenes). Without --checkpoint the network is ResNet-18 with random weights (seed 0), which times the same
as a trained one. The backends take turns in ROUNDS blocks, so that a change of machine load during the run
reaches all of them. Also reported: speed-up against eager, the mean relative depth difference against
eager (a check that the graphs compute the same thing) and the process's peak resident memory.
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

from json_output import peak_rss_mb, run_and_report  # noqa: E402
from training.data import SYNTHETIC_SPLIT_SEEDS, SyntheticRoadScenes  # noqa: E402
from training.exporting.onnx_export import (  # noqa: E402
    export_onnx, load_model_from_checkpoint, onnxruntime_session, run_onnxruntime,
)
from training.model import ICMDepthNet  # noqa: E402
from training.exporting.variants import write_int8  # noqa: E402

BACKENDS = ("pytorch_eager", "onnxruntime_fp32", "onnxruntime_int8")
ROUNDS = 2  # timed frames are split over this many turns per backend
DISTINCT_SCENES = 4  # latency does not depend on the content; a few scenes keep rendering cheap


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 192x640; got {text!r}") from None
    return height, width


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(192, 640), (352, 1216)], metavar="HxW")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per backend and size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames per backend before timing")
    parser.add_argument("--threads", type=int, default=2, help="threads for PyTorch and ONNX Runtime alike")
    parser.add_argument("--calib-scenes", type=int, default=4, help="synthetic train scenes for INT8 calibration")
    parser.add_argument("--checkpoint", type=Path, help="trained checkpoint (default: random ResNet-18, seed 0)")
    parser.add_argument("--out-dir", type=Path, help="keep the ONNX files here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("need --frames >= 1, --warmup >= 0 and --threads >= 1")
    return args


def build_model(checkpoint: Path | None, size: tuple[int, int]) -> tuple[ICMDepthNet, str]:
    if checkpoint:
        model, config = load_model_from_checkpoint(checkpoint)
        return model, f"checkpoint {checkpoint} ({config.get('name', 'unknown')})"
    torch.manual_seed(0)
    model = ICMDepthNet("resnet18", img_size=size, pretrained_path=None).eval()
    torch.nn.init.normal_(model.predictors[0].head.weight, std=0.05)  # the zero-initialised head gives constant depth
    return model, "random ResNet-18 weights (seed 0)"


def scene_images(count: int, size: tuple[int, int], split: str) -> list[np.ndarray]:
    """float32 [3, H, W] images in [0, 1]."""
    scenes = SyntheticRoadScenes(count, size=size, seed=SYNTHETIC_SPLIT_SEEDS[split])
    return [scenes[index]["image"].numpy() for index in range(count)]


def runners(model: ICMDepthNet, folder: Path, size: tuple[int, int], calibration: list[np.ndarray], threads: int):
    """{backend: image [1, 3, H, W] -> depth [H, W]} and the seconds spent exporting and quantising."""
    start = time.perf_counter()
    fp32_path, int8_path = folder / f"model_fp32_{size[0]}x{size[1]}.onnx", folder / f"model_int8_{size[0]}x{size[1]}.onnx"
    export_onnx(model, fp32_path, *size, config_name="bench_inference")
    exported = time.perf_counter()
    write_int8(fp32_path, int8_path, calibration)
    quantised = time.perf_counter()
    sessions = {"onnxruntime_fp32": onnxruntime_session(fp32_path, threads),
                "onnxruntime_int8": onnxruntime_session(int8_path, threads)}

    def eager(image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(image))["depth"][0, 0].numpy()

    def onnx(name: str):
        return lambda image: run_onnxruntime(sessions[name], image)["depth"][0, 0]

    run = {"pytorch_eager": eager, "onnxruntime_fp32": onnx("onnxruntime_fp32"),
           "onnxruntime_int8": onnx("onnxruntime_int8")}
    return run, {"export_s": round(exported - start, 1), "quantise_int8_s": round(quantised - exported, 1)}


def time_backends(run: dict, images: list[np.ndarray], frames: int, warmup: int) -> tuple[dict, dict]:
    """Milliseconds per frame for each backend, and each backend's depth for the first image."""
    latencies = {name: [] for name in run}
    first_depth = {name: run[name](images[0][None]) for name in run}  # also loads kernels, allocates arenas
    for name in run:
        for index in range(warmup):
            run[name](images[index % len(images)][None])
    rounds = min(ROUNDS, frames)
    for turn in range(rounds):
        for name in run:
            for index in range(turn * frames // rounds, (turn + 1) * frames // rounds):
                image = images[index % len(images)][None]  # [1, 3, H, W]
                start = time.perf_counter()
                run[name](image)
                latencies[name].append(1000.0 * (time.perf_counter() - start))
    return latencies, first_depth


def summarise(latencies: dict[str, list[float]], depths: dict[str, np.ndarray]) -> dict:
    eager_ms = statistics.median(latencies["pytorch_eager"])
    summary = {}
    for name, values in latencies.items():
        median = statistics.median(values)
        difference = np.mean(np.abs(depths[name] - depths["pytorch_eager"]) / depths["pytorch_eager"])
        summary[name] = {
            "median_ms": round(median, 2), "min_ms": round(min(values), 2),
            "p90_ms": round(float(np.percentile(values, 90)), 2),
            "speedup_vs_eager": round(eager_ms / median, 3),
            "depth_rel_diff_vs_eager": float(f"{difference:.3g}"),
        }
    return summary


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    folder = args.out_dir or Path(tempfile.mkdtemp(prefix="bench_inference_"))
    folder.mkdir(parents=True, exist_ok=True)
    report = {"backends": list(BACKENDS), "threads": args.threads, "frames": args.frames, "warmup": args.warmup,
              "rounds": min(ROUNDS, args.frames), "batch": 1, "calib_scenes": args.calib_scenes,
              "torch": torch.__version__, "sizes": {}}
    for size in args.sizes:
        model, description = build_model(args.checkpoint, size)
        report["weights"] = description
        images = scene_images(min(DISTINCT_SCENES, args.frames), size, "val")
        calibration = scene_images(args.calib_scenes, size, "train")
        run, preparation = runners(model, folder, size, calibration, args.threads)
        latencies, depths = time_backends(run, images, args.frames, args.warmup)
        report["sizes"][f"{size[0]}x{size[1]}"] = {**summarise(latencies, depths), **preparation,
                                                   "peak_rss_mb_so_far": peak_rss_mb()}
        del run  # frees both ONNX Runtime sessions before the next size
    import onnxruntime  # noqa: PLC0415 - imported by the runners already; only its version is read here

    report["onnxruntime"] = onnxruntime.__version__
    report["peak_rss_mb"] = peak_rss_mb()
    return report


def print_table(report: dict) -> None:
    print(f"# {report['weights']}; batch 1, {report['threads']} threads for every backend, median of "
          f"{report['frames']} frames after {report['warmup']} warm-up; torch {report['torch']}, "
          f"onnxruntime {report['onnxruntime']}")
    header = ("size", "backend", "ms/frame", "p90 ms", "speed-up vs eager", "depth rel diff vs eager")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size, result in report["sizes"].items():
        for name in BACKENDS:
            row = result[name]
            print(f"| {size} | {name} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | "
                  f"{row['speedup_vs_eager']:.2f}x | {row['depth_rel_diff_vs_eager']:.2e} |")
    print(f"# peak resident memory {report['peak_rss_mb']:.0f} MiB")


def main(argv=None) -> int:
    args = parse_args(argv)
    run_and_report(measure, args, show=print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
