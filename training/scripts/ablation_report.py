#!/usr/bin/env python
"""Summarise the synthetic Table V ablation: a table in docs/results.md and training curves as a PNG.

    python training/scripts/ablation_report.py --runs outputs/ablation --docs docs

Reads <runs>/method{1,2,3}_seed{S}/report.json (final evaluation on the held-out scenes) and log.jsonl
(curves). The table's figures are the LAST step's, not the best checkpoint's: picking the best step on
the held-out set would tune on it. Rewrites the part of <docs>/results.md between the ablation markers.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

METHODS = {1: "I (parallel, SIlog)", 2: "II (sequential, SIlog)", 3: "III (sequential, SIlog + ICM)"}
COLUMNS = ("abs_rel", "rmse", "d1", "d1_instance", "d1_background", "cluster_alignment")
COLOURS = {1: (31, 119, 180), 2: (255, 127, 14), 3: (44, 160, 44)}
FONT = ImageFont.load_default(size=12)
BEGIN, END = "<!-- ablation-table:begin -->", "<!-- ablation-table:end -->"


def load_runs(folder: Path) -> dict[tuple[int, int], dict]:
    runs = {}
    for run in sorted(folder.glob("method*_seed*")):
        match = re.fullmatch(r"method(\d)_seed(\d+)", run.name)
        if not match or not run.is_dir():
            continue
        records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] \
            if (run / "log.jsonl").exists() else []
        report = json.loads((run / "report.json").read_text()) if (run / "report.json").exists() else None
        runs[(int(match[1]), int(match[2]))] = {"records": records, "report": report}
    return runs


def table(runs: dict) -> str:
    lines = ["| method | seed | steps | " + " | ".join(COLUMNS) + " |", "|---|---:|---:|" + "---:|" * len(COLUMNS)]
    for (method, seed), run in sorted(runs.items()):
        if run["report"] is None:
            lines.append(f"| {METHODS[method]} | {seed} | running | " + " | ".join("" for _ in COLUMNS) + " |")
            continue
        metrics = run["report"]["metrics"]
        lines.append(f"| {METHODS[method]} | {seed} | {run['report']['step']} | "
                     + " | ".join(f"{metrics[c]:.4f}" for c in COLUMNS) + " |")
    for method in sorted({m for m, _ in runs}):
        done = [r["report"]["metrics"] for (m, _), r in runs.items() if m == method and r["report"]]
        if len(done) < 1:
            continue
        cells = []
        for column in COLUMNS:
            values = [d[column] for d in done]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"**{statistics.mean(values):.4f}**{spread}")
        lines.append(f"| **{METHODS[method]} mean** | {len(done)} seeds | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def smooth(values: list[float], window: int = 5) -> list[float]:
    return [statistics.mean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, series: list) -> None:
    """One line chart in ``box`` (x0, y0, x1, y1); series = [(colour, [(x, y), ...]), ...]."""
    x0, y0, x1, y1 = box
    points = [p for _, line in series for p in line]
    draw.text((x0 + 4, y0 + 2), title, fill=(0, 0, 0), font=FONT)
    if not points:
        return
    left, right, top, bottom = x0 + 46, x1 - 8, y0 + 18, y1 - 18
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xmin, xmax = min(xs), max(max(xs), min(xs) + 1)
    ymin, ymax = min(ys), max(ys)
    if ymax - ymin < 1e-9:
        ymin, ymax = ymin - 0.5, ymax + 0.5
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    for fraction in (0.0, 0.5, 1.0):
        value = ymin + fraction * (ymax - ymin)
        y = bottom - fraction * (bottom - top)
        draw.text((x0 + 2, y - 5), f"{value:.3g}", fill=(60, 60, 60), font=FONT)
    draw.text((left, bottom + 3), f"{xmin:g}", fill=(60, 60, 60), font=FONT)
    draw.text((right - 60, bottom + 3), f"{xmax:g} steps", fill=(60, 60, 60), font=FONT)

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xmin) / (xmax - xmin) * (right - left), bottom - (y - ymin) / (ymax - ymin) * (bottom - top))

    for colour, line in series:
        if len(line) > 1:
            draw.line([to_pixel(*p) for p in line], fill=colour, width=2)
        for p in line if len(line) <= 12 else []:
            cx, cy = to_pixel(*p)
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=colour)


def curves(runs: dict, path: Path) -> None:
    panels = [("train SIlog loss (smoothed)", "loss_silog", False), ("held-out abs_rel", "abs_rel", True),
              ("held-out d1", "d1", True), ("held-out d1, instance pixels", "d1_instance", True),
              ("cluster-instance alignment (IoU)", "cluster_alignment", True),
              ("train ICM loss, finest scale (method III)", "loss_icm_3", False)]
    width, height, columns = 900, 560, 3
    image = Image.new("RGB", (width, height + 30), "white")
    draw = ImageDraw.Draw(image)
    cell_w, cell_h = width // columns, height // 2
    for index, (title, key, validation) in enumerate(panels):
        series = []
        for (method, seed), run in sorted(runs.items()):
            if validation:
                line = [(r["step"], r["val"][key]) for r in run["records"] if "val" in r and key in r["val"]]
            else:
                raw = [(r["step"], r[key]) for r in run["records"] if key in r]
                line = list(zip([s for s, _ in raw], smooth([v for _, v in raw])))
            shade = tuple(min(255, c + 45 * seed) for c in COLOURS[method])  # later seeds lighter
            series.append((shade, line))
        box = ((index % columns) * cell_w, (index // columns) * cell_h,
               (index % columns + 1) * cell_w, (index // columns + 1) * cell_h)
        panel(draw, box, title, series)
    x = 10
    for method, name in METHODS.items():
        draw.rectangle((x, height + 10, x + 14, height + 22), fill=COLOURS[method])
        draw.text((x + 18, height + 10), f"method {name}", fill=(0, 0, 0), font=FONT)
        x += 250
    draw.text((x, height + 10), "lighter: later seeds", fill=(0, 0, 0), font=FONT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def cluster_pictures(folder: Path, path: Path, scenes: int = 2, seed: int = 0) -> None:
    """Fig. 4 at this scale: for each held-out scene, one row per method (I, II, III; seed ``seed``, last
    step): image | true depth | predicted depth | finest-scale cluster map (argmax over clusters)."""
    import sys

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from training.checkpoint import load_checkpoint
    from training.config import build_model, from_dict
    from training.data import SyntheticRoadScenes
    from training.engine import colorize_clusters, colorize_depth
    from training.metrics import cluster_labels

    runs = [folder / f"method{m}_seed{seed}" / "last.pt" for m in METHODS]
    if not all(run.exists() for run in runs):
        return
    models = []
    for run in runs:
        state = load_checkpoint(run)
        config = from_dict(state["config"])
        model = build_model(config, pretrained=False).eval()
        model.load_state_dict(state["model"])
        models.append((model, config))
    size, val_seed = tuple(models[0][1].model.img_size), models[0][1].data.val_seed
    held_out = SyntheticRoadScenes(scenes, size=size, seed=val_seed)
    rows = []  # one per (scene, method): image | true depth | predicted depth | clusters
    for scene in range(scenes):
        item = held_out[scene]
        truth = colorize_depth(item["depth"][0].numpy(), item["valid"][0].numpy())
        for model, config in models:
            with torch.no_grad():
                outputs = model(item["image"][None])
            labels = cluster_labels(outputs["attn"][-1], size)[0].numpy()
            rows.append(np.concatenate([item["image"].numpy(), truth, colorize_depth(outputs["depth"][0, 0].numpy()),
                                        colorize_clusters(labels, config.model.num_clusters)], axis=2))
        rows.append(np.ones((3, 6, rows[-1].shape[2]), np.float32))  # a white gap between scenes
    picture = (np.concatenate(rows[:-1], axis=1).transpose(1, 2, 0).clip(0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(picture).quantize(colors=128)  # a palette PNG: a fraction of the size
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default="outputs/ablation")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--pictures", action="store_true", help="also draw docs/figures/ablation_clusters.png")
    args = parser.parse_args()
    runs = load_runs(Path(args.runs))
    text = table(runs)
    print(text)
    docs = Path(args.docs)
    curves(runs, docs / "figures" / "ablation_curves.png")
    if args.pictures:
        cluster_pictures(Path(args.runs), docs / "figures" / "ablation_clusters.png")
    results = docs / "results.md"
    if results.exists() and BEGIN in results.read_text():
        before, rest = results.read_text().split(BEGIN, 1)
        after = rest.split(END, 1)[1] if END in rest else ""
        results.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")


if __name__ == "__main__":
    main()
