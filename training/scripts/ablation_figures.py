"""Pictures of the ablation study: training curves, the ICM term analysis, and the Fig. 4-style clusters.

Each takes the runs as ablation_report.load_runs returns them: {(method, seed): {"records", "report"}}.
The charts are drawn with matplotlib (Agg backend: files only, no display); the cluster picture is a
mosaic of the network's own images, written as one PNG with Pillow.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on the training machines; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

# One colour per method, in study order (I, II, III, III + warm-up, III + per-pixel).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728"]
TERM_COLOURS = {"loss_silog": "#000000", "loss_icm_1": "#1f77b4", "loss_icm_2": "#ff7f0e", "loss_icm_3": "#2ca02c"}
TERMS = tuple(TERM_COLOURS)
DPI = 100


def smooth(values: list[float], window: int = 5) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def panel(axes, title: str, series: list, log_y: bool = False) -> None:
    """One line chart; series = [(colour, alpha, [(x, y), ...]), ...]. ``log_y``: a logarithmic y axis
    (non-positive values are left out). Runs with at most 12 points get markers."""
    axes.set_title(title, fontsize=10, loc="left")
    for colour, alpha, line in series:
        line = [(x, y) for x, y in line if math.isfinite(y) and (y > 0 or not log_y)]
        if line:
            axes.plot(*zip(*line), color=colour, alpha=alpha, linewidth=1.5, marker="o" if len(line) <= 12 else None,
                      markersize=3)
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel("steps", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)


def method_colours(methods: list[str]) -> dict[str, str]:
    return {method: PALETTE[index % len(PALETTE)] for index, method in enumerate(methods)}


def save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def curves(runs: dict, names: dict[str, str], path: Path) -> None:
    """Held-out metrics and training losses over the steps, one line per run (later seeds lighter)."""
    panels = [("train SIlog loss (smoothed)", "loss_silog", False), ("held-out abs_rel", "abs_rel", True),
              ("held-out d1", "d1", True), ("held-out d1, instance pixels", "d1_instance", True),
              ("held-out d1, background pixels", "d1_background", True),
              ("cluster-instance alignment (IoU)", "cluster_alignment", True)]
    methods = [m for m in names if any(key[0] == m for key in runs)]
    colours = method_colours(list(names))
    figure, grid = plt.subplots(2, 3, figsize=(10.5, 6.5), layout="constrained")
    for axes, (title, key, validation) in zip(grid.flat, panels):
        series = []
        for (method, seed), run in sorted(runs.items()):
            if validation:
                line = [(r["step"], r["val"][key]) for r in run["records"] if "val" in r and key in r["val"]]
            else:
                raw = [(r["step"], r[key]) for r in run["records"] if key in r]
                line = list(zip([s for s, _ in raw], smooth([v for _, v in raw])))
            series.append((colours[method], max(0.35, 1.0 - 0.3 * seed), line))
        panel(axes, title, series)
    handles = [plt.Line2D([], [], color=colours[m], linewidth=3) for m in methods]
    figure.legend(handles, [names[m] for m in methods], loc="outside lower center", ncols=3, fontsize=9,
                  title="lighter: later seeds", title_fontsize=8)
    save(figure, path)


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
    figure, grid = plt.subplots(2, len(methods), figsize=(10.5, 5.6), layout="constrained", squeeze=False)
    for column, method in enumerate(methods):
        for row, (prefix, what) in enumerate((("", "term value"), ("feature_grad/", "|grad at F1..F3|"))):
            series = [(colour, 1.0, mean_over_seeds(runs, method, prefix + term)) for term, colour in TERM_COLOURS.items()]
            panel(grid[row, column], f"{names[method].split(' (')[0]}:\n{what} (log)", series, log_y=True)
    handles = [plt.Line2D([], [], color=colour, linewidth=3) for colour in TERM_COLOURS.values()]
    figure.legend(handles, [t.removeprefix("loss_") for t in TERM_COLOURS], loc="outside lower center", ncols=4, fontsize=9)
    save(figure, path)


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
