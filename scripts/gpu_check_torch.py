"""PyTorch on CUDA, no TensorRT needed: the demo network and the paper-scale Swin-L (random weights).

    python scripts/gpu_check_torch.py [--out outputs/gpu_check] [--frames 30] [--train-steps 6]
    python scripts/gpu_check_torch.py --summary [--out outputs/gpu_check]

For each network at its config's size (demo 96x320, Swin-L 352x1216; no weights are loaded or downloaded:
train.encoder_weights stays unset): the largest and mean relative depth difference of fp16 and bf16
autocast against fp32 on one rendered road scene, batch-1 latency (median over ``--frames`` calls,
fp32 and the training AMP dtype), training images/s with AMP through the project's own train_step
(criterion with the ICM terms, fused AdamW, GradScaler for fp16) over ``--train-steps`` steps after two
warm-up steps, and the peak GPU memory of inference and of training. With several GPUs, a short torchrun
run of training/train.py on the demo recipe. Written to ``<out>/pytorch.json``.

Before any of that, everything that needs no GPU is checked (imports, both configs, the output folder);
then, without a CUDA device, one line says so and the exit code is NO_GPU (3).

``--summary`` gathers ``<out>/pytorch.json``, ``gpu_check.json`` and ``batches.json`` (scripts/gpu_check.py)
and the steps gpu_check.sh recorded in ``<out>/steps.tsv`` into ``<out>/summary.json`` and ``summary.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NO_GPU = 3  # the exit code when everything before the GPU ran and no CUDA device is there
NETWORKS = {  # label: recipe; the size is the recipe's model.img_size
    "demo (MobileNetV3)": ROOT / "training" / "configs" / "synthetic_mobilenetv3_demo_96x320.yaml",
    "paper Swin-L": ROOT / "training" / "configs" / "icm_swinl_kitti_352x1216.yaml",
}
TRAIN_BATCH = {"demo (MobileNetV3)": 8, "paper Swin-L": 2}  # per step; Swin-L's is the paper recipe's 8 / 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check")
    parser.add_argument("--frames", type=int, default=30, help="timed calls per latency figure")
    parser.add_argument("--train-steps", type=int, default=6, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--summary", action="store_true", help="only write summary.json / summary.md")
    return parser.parse_args()


def prepare(out: Path) -> dict:
    """Everything before the GPU: imports, the configs (validated), the output folder."""
    import torch  # noqa: PLC0415

    from training.config import load_config  # noqa: PLC0415

    configs = {label: load_config(path) for label, path in NETWORKS.items()}  # encoder_weights unset: random
    out.mkdir(parents=True, exist_ok=True)
    return {"torch": torch.__version__, "python": platform.python_version(), "configs": configs}


def rendered_batch(config, count: int) -> dict:
    """``count`` rendered road scenes at the config's size, with depth and instances (the criterion's input)."""
    from torch.utils.data import default_collate  # noqa: PLC0415

    from training.data import SYNTHETIC_SPLIT_SEEDS, SyntheticRoadScenes  # noqa: PLC0415

    scenes = SyntheticRoadScenes(count, size=tuple(config.model.img_size), seed=SYNTHETIC_SPLIT_SEEDS["val"])
    return default_collate([scenes[i] for i in range(count)])


def median_ms(call, frames: int, device) -> float:
    """Median ms of ``call()`` after 5 warm-up calls; on CUDA between two events (the GPU's time)."""
    import torch  # noqa: PLC0415

    for _ in range(5):
        call()
    times = []
    for _ in range(frames):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            started = time.perf_counter()
            call()
            times.append(1000.0 * (time.perf_counter() - started))
    return statistics.median(times)


def peak_memory_gib(device):
    """The peak GPU memory allocated since the last reset; None on the CPU."""
    import torch  # noqa: PLC0415

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak_memory(device) -> None:
    import torch  # noqa: PLC0415

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def inference_figures(model, image, frames: int, training_dtype) -> dict:
    import torch  # noqa: PLC0415

    device = image.device

    def depth(dtype=None):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return model(image)["depth"].float()

    reference = depth()
    figures = {}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        relative = ((depth(dtype) - reference).abs() / reference.abs().clamp_min(1e-6)).flatten()
        figures[f"{name}_vs_fp32_max_rel_depth"] = float(relative.max())
        figures[f"{name}_vs_fp32_mean_rel_depth"] = float(relative.mean())
    reset_peak_memory(device)
    figures["batch1_ms_fp32"] = median_ms(lambda: depth(), frames, device)
    figures["batch1_ms_amp"] = median_ms(lambda: depth(training_dtype), frames, device)
    figures["inference_peak_memory_gib"] = peak_memory_gib(device)
    return figures


def training_figures(config, model, batch_size: int, steps: int, device) -> dict:
    """Images/s and peak memory of ``steps`` steps of the project's train_step (AMP on CUDA, as training runs
    it: train.amp's dtype, a GradScaler for fp16), after 2 warm-up steps."""
    import torch  # noqa: PLC0415

    from training.config import build_criterion  # noqa: PLC0415
    from training.distributed import Context  # noqa: PLC0415
    from training.engine import amp_dtype, build_optimizer, to_host, train_step  # noqa: PLC0415

    context = Context(rank=0, world_size=1, local_rank=0, device=device)
    criterion, optim = build_criterion(config), config.optim
    optimizer = build_optimizer(model, optim.lr, optim.backbone_lr, optim.weight_decay, optim.betas)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if cuda and amp_dtype(device) == torch.float16 else None
    batch = rendered_batch(config, batch_size)
    if cuda:
        batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        torch.backends.cudnn.benchmark = True
    model.train()
    for step in range(2):
        train_step(model, criterion, [batch], optimizer, scaler, optim.grad_clip, context, cuda, step=step)
    reset_peak_memory(device)
    start = time.perf_counter()
    results = [train_step(model, criterion, [batch], optimizer, scaler, optim.grad_clip, context, cuda, step=2 + s)
               for s in range(steps)]
    skipped = to_host([r.skipped for r in results])  # waits for the last step
    seconds = time.perf_counter() - start
    return {"train_batch": batch_size, "train_steps": steps, "train_images_per_s": batch_size * steps / seconds,
            "train_skipped_steps": int(sum(skipped)), "train_peak_memory_gib": peak_memory_gib(device)}


def network_figures(label: str, config, frames: int, steps: int, device) -> dict:
    """Every figure of one network on ``device`` (the CPU too, for the test: autocast on the CPU, no
    memory figures, fp32 training)."""
    import torch  # noqa: PLC0415

    from training.config import build_model  # noqa: PLC0415
    from training.engine import amp_dtype  # noqa: PLC0415

    torch.manual_seed(0)
    started = time.perf_counter()
    model = build_model(config, pretrained=False).to(device).eval()
    image = rendered_batch(config, 1)["image"].to(device)
    training_dtype = amp_dtype(device) if device.type == "cuda" else torch.bfloat16
    figures = {"size": "x".join(map(str, config.model.img_size)), "encoder": config.model.encoder,
               "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
               "training_amp_dtype": str(training_dtype).removeprefix("torch.")}
    figures.update(inference_figures(model, image, frames, training_dtype))
    figures.update(training_figures(config, model, TRAIN_BATCH[label], steps, device))
    figures["seconds"] = time.perf_counter() - started
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return figures


def ddp_figures(out: Path) -> dict:
    """A 20-step torchrun run of the demo recipe on every GPU (synthetic scenes, random weights)."""
    import torch  # noqa: PLC0415

    gpus = torch.cuda.device_count()
    if gpus < 2:
        return {"skipped": f"{gpus} GPU: DDP needs two or more"}
    run = out / "ddp_run"
    shutil.rmtree(run, ignore_errors=True)  # train.py refuses to start over an earlier run's last.pt
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "training/train.py",
               "--config", str(NETWORKS["demo (MobileNetV3)"]), f"train.output_dir={run}", "train.steps=20",
               "train.log_every=10", "train.eval_every=20", "train.save_every=20", "train.eval_max_images=16",
               "data.num_workers=-1", "train.image_every=0"]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    figures = {"gpus": gpus, "returncode": finished.returncode, "seconds": time.perf_counter() - started}
    if finished.returncode != 0:
        figures["error_tail"] = finished.stderr[-2000:]
        return figures
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = [r["images_per_second"] for r in records if "images_per_second" in r]
    figures["train_images_per_s_last_interval"] = rates[-1] if rates else None
    return figures


def measure(args: argparse.Namespace) -> int:
    prepared = prepare(args.out)
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU (torch {torch.__version__}: torch.cuda.is_available() is False); everything "
              f"before the GPU checks ran; stopping with exit code {NO_GPU}", flush=True)
        return NO_GPU
    report = {"torch": prepared["torch"], "python": prepared["python"], "cuda": torch.version.cuda,
              "device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
              "frames": args.frames, "networks": {}}
    for label, config in prepared["configs"].items():
        print(f"gpu_check: {label} at {'x'.join(map(str, config.model.img_size))} ...", flush=True)
        report["networks"][label] = network_figures(label, config, args.frames, args.train_steps,
                                                    torch.device("cuda", 0))
    report["ddp"] = ddp_figures(args.out)
    (args.out / "pytorch.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'pytorch.json'}")
    return 0


def summary_markdown(summary: dict) -> str:
    lines = ["# GPU check", ""]
    torch_part = summary.get("pytorch")
    if torch_part:
        lines += [f"{torch_part['device']} (compute capability {'.'.join(map(str, torch_part['capability']))}), "
                  f"torch {torch_part['torch']}, CUDA {torch_part['cuda']}, Python {torch_part['python']}; "
                  "random weights, one rendered road scene", "",
                  "| network | size | fp16 vs fp32 max / mean rel depth | bf16 vs fp32 max / mean | batch-1 ms fp32 "
                  "| batch-1 ms AMP (dtype) | train img/s AMP (batch) | peak GiB infer / train |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, f in torch_part["networks"].items():
            lines.append(
                f"| {label} | {f['size']} | {f['fp16_vs_fp32_max_rel_depth']:.2e} / {f['fp16_vs_fp32_mean_rel_depth']:.2e} "
                f"| {f['bf16_vs_fp32_max_rel_depth']:.2e} / {f['bf16_vs_fp32_mean_rel_depth']:.2e} "
                f"| {f['batch1_ms_fp32']:.2f} | {f['batch1_ms_amp']:.2f} ({f['training_amp_dtype']}) "
                f"| {f['train_images_per_s']:.1f} ({f['train_batch']}) "
                f"| {f['inference_peak_memory_gib']:.2f} / {f['train_peak_memory_gib']:.2f} |")
        lines += ["", f"DDP: {json.dumps(torch_part['ddp'])}", ""]
    lines += ["| step | result | note |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['result']} | {s['note']} |" for s in summary["steps"]]
    for name in ("tensorrt", "batches"):
        if summary.get(name):
            lines += ["", f"{name}: see {summary['files'][name]}"]
    return "\n".join(lines) + "\n"


def summarize(out: Path) -> int:
    """summary.json / summary.md from what the steps wrote."""
    def read(name):
        path = out / name
        return json.loads(path.read_text()) if path.is_file() else None

    steps = []
    if (out / "steps.tsv").is_file():
        for line in (out / "steps.tsv").read_text().splitlines():
            step, result, note = (line.split("\t") + ["", ""])[:3]
            steps.append({"step": step, "result": result, "note": note})
    summary = {"steps": steps, "pytorch": read("pytorch.json"), "tensorrt": read("gpu_check.json"),
               "batches": read("batches.json"),
               "files": {"pytorch": str(out / "pytorch.json"), "tensorrt": str(out / "gpu_check.json"),
                         "batches": str(out / "batches.json")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    print(f"wrote {out / 'summary.json'} and {out / 'summary.md'}")
    return 0


def main() -> int:
    args = parse_args()
    return summarize(args.out) if args.summary else measure(args)


if __name__ == "__main__":
    sys.exit(main())
