"""Pictures of the ablation study: training curves, the ICM term analysis, and the Fig. 4-style clusters.

Each takes the runs as ablation_report.load_runs returns them: {(method, seed): {"records", "report"}}.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = ImageFont.load_default(size=12)
# One colour per method, in study order (I, II, III, III + warm-up, III + per-pixel).
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (214, 39, 40)]
TERM_COLOURS = {"loss_silog": (0, 0, 0), "loss_icm_1": (31, 119, 180), "loss_icm_2": (255, 127, 14),
                "loss_icm_3": (44, 160, 44)}
TERMS = tuple(TERM_COLOURS)


def smooth(values: list[float], window: int = 5) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, series: list,
          log_y: bool = False) -> None:
    """One line chart in ``box`` (x0, y0, x1, y1); series = [(colour, [(x, y), ...]), ...].
    ``log_y``: a logarithmic y axis (non-positive values are left out)."""
    x0, y0, x1, y1 = box
    if log_y:
        series = [(colour, [(x, math.log10(y)) for x, y in line if y > 0]) for colour, line in series]
    points = [p for _, line in series for p in line if math.isfinite(p[1])]
    draw.text((x0 + 4, y0 + 2), title, fill=(0, 0, 0), font=FONT)
    if not points:
        return
    left, right, top, bottom = x0 + 52, x1 - 8, y0 + 18, y1 - 18
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xmin, xmax = min(xs), max(max(xs), min(xs) + 1)
    ymin, ymax = min(ys), max(ys)
    if ymax - ymin < 1e-9:
        ymin, ymax = ymin - 0.5, ymax + 0.5
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    for fraction in (0.0, 0.5, 1.0):
        value = ymin + fraction * (ymax - ymin)
        y = bottom - fraction * (bottom - top)
        draw.text((x0 + 2, y - 5), f"{10 ** value if log_y else value:.3g}", fill=(60, 60, 60), font=FONT)
    draw.text((left, bottom + 3), f"{xmin:g}", fill=(60, 60, 60), font=FONT)
    draw.text((right - 60, bottom + 3), f"{xmax:g} steps", fill=(60, 60, 60), font=FONT)

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xmin) / (xmax - xmin) * (right - left), bottom - (y - ymin) / (ymax - ymin) * (bottom - top))

    for colour, line in series:
        line = [p for p in line if math.isfinite(p[1])]
        if len(line) > 1:
            draw.line([to_pixel(*p) for p in line], fill=colour, width=2)
        for p in line if len(line) <= 12 else []:
            cx, cy = to_pixel(*p)
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=colour)


def legend(draw: ImageDraw.ImageDraw, y: int, entries: list[tuple[tuple[int, int, int], str]], step: int) -> None:
    x = 10
    for colour, name in entries:
        draw.rectangle((x, y, x + 14, y + 12), fill=colour)
        draw.text((x + 18, y), name, fill=(0, 0, 0), font=FONT)
        x += step


def method_colours(methods: list[str]) -> dict[str, tuple[int, int, int]]:
    return {method: PALETTE[index % len(PALETTE)] for index, method in enumerate(methods)}


def curves(runs: dict, names: dict[str, str], path: Path) -> None:
    """Held-out metrics and training losses over the steps, one line per run (later seeds lighter)."""
    panels = [("train SIlog loss (smoothed)", "loss_silog", False), ("held-out abs_rel", "abs_rel", True),
              ("held-out d1", "d1", True), ("held-out d1, instance pixels", "d1_instance", True),
              ("held-out d1, background pixels", "d1_background", True),
              ("cluster-instance alignment (IoU)", "cluster_alignment", True)]
    methods = [m for m in names if any(key[0] == m for key in runs)]
    colours = method_colours(list(names))
    width, height, columns = 1050, 600, 3
    image = Image.new("RGB", (width, height + 50), "white")
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
            shade = tuple(min(255, c + 45 * seed) for c in colours[method])
            series.append((shade, line))
        box = ((index % columns) * cell_w, (index // columns) * cell_h,
               (index % columns + 1) * cell_w, (index // columns + 1) * cell_h)
        panel(draw, box, title, series)
    legend(draw, height + 8, [(colours[m], names[m]) for m in methods[:3]], 330)
    legend(draw, height + 28, [(colours[m], names[m]) for m in methods[3:]] + [((255, 255, 255), "lighter: later seeds")], 330)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def mean_over_seeds(runs: dict, method: str, key: str) -> list[tuple[int, float]]:
    """(step, mean over the method's runs of ``key``) at every logged step, smoothed."""
    by_step: dict[int, list[float]] = {}
    for (name, _), run in runs.items():
        if name == method:
            for record in run["records"]:
                if key in record and math.isfinite(record[key]):
                    by_step.setdefault(record["step"], []).append(record[key])
    steps = sorted(by_step)
    return list(zip(steps, smooth([statistics.fmean(by_step[s]) for s in steps])))


def term_analysis(runs: dict, names: dict[str, str], path: Path) -> None:
    """Per method: each term's value and its gradient norm at F1..F3 over training (mean over seeds)."""
    methods = [m for m in names if any(key[0] == m for key in runs)]
    if not methods:
        return
    width, cell_h = 1050, 250
    image = Image.new("RGB", (width, cell_h * 2 + 30), "white")
    draw = ImageDraw.Draw(image)
    cell_w = width // len(methods)
    for column, method in enumerate(methods):
        for row, (prefix, what) in enumerate((("", "term value"), ("feature_grad/", "|grad at F1..F3|"))):
            series = [(colour, mean_over_seeds(runs, method, prefix + term)) for term, colour in TERM_COLOURS.items()]
            box = (column * cell_w, row * cell_h, (column + 1) * cell_w, (row + 1) * cell_h)
            panel(draw, box, f"{names[method].split(' (')[0]}: {what} (log)", series, log_y=True)
    legend(draw, cell_h * 2 + 10, [(c, t.removeprefix("loss_")) for t, c in TERM_COLOURS.items()], 120)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def cluster_pictures(folder: Path, methods: list[str], path: Path, scenes: int = 2, seed: int = 0) -> None:
    """Fig. 4 at this scale: for each held-out scene, one row per finished method (seed ``seed``, last
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

    runs = [folder / f"{m}_seed{seed}" for m in methods]
    runs = [run for run in runs if (run / "report.json").exists() and (run / "last.pt").exists()]
    if not runs:
        return
    models = []
    for run in runs:
        state = load_checkpoint(run / "last.pt")
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
