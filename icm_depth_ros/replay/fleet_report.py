"""Write a fleet run's outputs: fleet.json, drives.csv, report.md and its plots (docs/replay.md)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from icm_depth_ros.replay.fleet import COMPARED_NAMES
from icm_depth_ros.replay.plots import line_plot, scatter_plot
from icm_depth_ros.replay.report import _number, _plain

WORST_DRIVES = 5  # drives shown with their contact sheets in report.md


def write_fleet_outputs(out_dir: Path, fleet: dict) -> None:
    """fleet: {"run", "overall", "drives", "comparison" (with a baseline), "gate" (with --gate)}."""
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    (out_dir / "fleet.json").write_text(json.dumps(fleet, indent=2, default=_plain) + "\n")
    write_drives_csv(out_dir / "drives.csv", fleet["drives"], "comparison" in fleet)
    plots = write_fleet_plots(out_dir / "plots", fleet)
    (out_dir / "report.md").write_text(render_fleet_markdown(fleet, plots))


def write_drives_csv(path: Path, drives: list[dict], with_baseline: bool) -> None:
    columns = ["drive", "path", "status", "frames_read", "frames_scored", "frames_skipped", "valid_pixels",
               *COMPARED_NAMES]
    if with_baseline:
        columns += [f"baseline_{name}" for name in COMPARED_NAMES] + [f"difference_{name}" for name in COMPARED_NAMES]
    columns += ["elapsed_s", "failure"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for index, drive in enumerate(drives):
            row = {"drive": index, "path": drive["path"], "status": drive["status"],
                   "frames_read": drive["frames"]["read"], "frames_scored": drive["frames"]["scored"],
                   "frames_skipped": drive["frames"]["skipped"], "valid_pixels": drive["valid_pixels"],
                   "elapsed_s": drive["elapsed_s"], "failure": _failure(drive)}
            row.update(drive["metrics"])
            if with_baseline:
                row.update({f"baseline_{name}": value for name, value in drive["baseline"]["metrics"].items()
                            if name in COMPARED_NAMES})
                row.update({f"difference_{name}": value for name, value in drive.get("difference", {}).items()})
            writer.writerow({key: value for key, value in row.items() if key in columns})


def _failure(drive: dict) -> str:
    reasons = [drive["failure"]] if drive["failure"] else []
    if drive.get("baseline", {}).get("failure"):
        reasons.append(f"baseline: {drive['baseline']['failure']}")
    return " | ".join(reason.splitlines()[0] for reason in reasons)


def worst_drives(fleet: dict, count: int = WORST_DRIVES) -> list[tuple[int, dict]]:
    """The evaluated drives with the highest abs_rel (with a baseline: the largest rise over it)."""
    key = "difference" if "comparison" in fleet else "metrics"
    scored = [(i, d) for i, d in enumerate(fleet["drives"]) if d["status"] == "ok" and "abs_rel" in d.get(key, {})]
    return sorted(scored, key=lambda item: -item[1][key]["abs_rel"])[:count]


def write_fleet_plots(plot_dir: Path, fleet: dict) -> dict[str, str]:
    """caption -> path relative to the output folder."""
    plots = {}
    curve = fleet["overall"]["error_by_distance"]
    if curve["pixels"]:
        centres = [(low + high) / 2 for low, high in zip(curve["bin_low_m"], curve["bin_high_m"])]
        line_plot(plot_dir / "error_by_distance.png", centres, curve["abs_rel"],
                  "abs_rel against true distance (all drives, all scored pixels)", "distance [m]", "abs_rel")
        plots["Error against distance (all drives)"] = "plots/error_by_distance.png"
    if "comparison" in fleet:
        pairs = [(d["baseline"]["metrics"]["abs_rel"], d["metrics"]["abs_rel"]) for d in fleet["drives"]
                 if "abs_rel" in d.get("difference", {})]
        if pairs:
            scatter_plot(plot_dir / "candidate_vs_baseline_abs_rel.png", [b for b, _ in pairs], [c for _, c in pairs],
                         "abs_rel per drive (above the diagonal: candidate worse)", "baseline abs_rel",
                         "candidate abs_rel")
            plots["Candidate against baseline, abs_rel per drive"] = "plots/candidate_vs_baseline_abs_rel.png"
    return plots


def render_fleet_markdown(fleet: dict, plots: dict[str, str]) -> str:
    run, overall = fleet["run"], fleet["overall"]
    drives, frames = overall["drives"], overall["frames"]
    lines = [
        "# Fleet replay evaluation", "",
        f"- model: `{run['model']}`" + (f"; baseline: `{run['baseline']}`" if run.get("baseline") else ""),
        f"- drives: {drives['total']} ({drives['evaluated']} evaluated, {drives['failed']} failed)"
        + ("; **interrupted**: the figures cover the finished drives only" if run.get("interrupted") else ""),
        f"- Ray: {run['cluster']['address']}, {run['cluster']['cpus']:g} CPUs; {run['cpus_per_task']} CPU(s) per drive; "
        f"elapsed {run['elapsed_s']:.1f} s, {run['frames_per_second']:.2f} frames/s",
        f"- evaluated depth range ({run['min_depth']:g}, {run['max_depth']:g}) m, crop {run['crop']}", "",
        "## Frames (all evaluated drives)", "",
        "| read | scored | skipped | run without ground truth | valid pixels |", "|---|---|---|---|---|",
        f"| {frames['read']} | {frames['scored']} | {frames['skipped']} | {frames['predicted_without_ground_truth']} | "
        f"{overall['valid_pixels']} |", "",
        "## Depth metrics (mean over all scored frames of all drives)", "",
    ]
    if overall["metrics"]:
        names = [n for n in COMPARED_NAMES if n in overall["metrics"]]
        lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names),
                  "| " + " | ".join(_number(overall["metrics"][n]) for n in names) + " |", ""]
    else:
        lines += ["Not available: no frame was scored.", ""]
    if "comparison" in fleet:
        comparison = fleet["comparison"]
        lines += ["## Candidate against baseline", "",
                  f"Over the drives both models scored; interval: {comparison['confidence_level']:.0%} bootstrap "
                  f"over drives ({comparison['bootstrap']['method']}, {comparison['bootstrap']['resamples']} resamples).",
                  "", "| metric | drives | candidate | baseline | difference | interval |", "|---|---|---|---|---|---|"]
        for name, row in comparison["metrics"].items():
            interval = "n/a" if row["interval"] is None else f"[{row['interval'][0]:+.5f}, {row['interval'][1]:+.5f}]"
            lines.append(f"| {name} | {row['drives']} | {row['candidate']:.5f} | {row['baseline']:.5f} | "
                         f"{row['difference']:+.5f} | {interval} |")
        lines.append("")
    if fleet.get("gate"):
        lines += ["## Gate", "", *[f"- {verdict['line']}" for verdict in fleet["gate"]], ""]
    lines += ["## Per-instance depth error by distance band (all drives)", ""]
    if any(row["instances"] for row in overall["instance_error_by_distance"].values()):
        lines += ["| band | instances | mean abs error [m] | mean error [m] | abs_rel |", "|---|---|---|---|---|"]
        for band, row in overall["instance_error_by_distance"].items():
            lines.append(f"| {band} | {row['instances']} | {_number(row['mean_abs_error_m'], 3)} | "
                         f"{_number(row['mean_error_m'], 3)} | {_number(row['abs_rel'])} |")
    else:
        lines.append("No labelled instance was scored (the labels come from --instances-topic).")
    lines.append("")
    if overall.get("instance_error_by_class"):
        lines += ["## Per-instance depth error by class (all drives)", "",
                  "| class | instances | mean abs error [m] | mean error [m] | abs_rel |", "|---|---|---|---|---|"]
        for name, row in overall["instance_error_by_class"].items():
            lines.append(f"| {name} | {row['instances']} | {_number(row['mean_abs_error_m'], 3)} | "
                         f"{_number(row['mean_error_m'], 3)} | {_number(row['abs_rel'])} |")
        lines.append("")
    worst = worst_drives(fleet)
    if worst:
        if "comparison" in fleet:
            lines += ["## Worst drives (largest rise of abs_rel over the baseline)", "",
                      "| drive | path | frames scored | abs_rel | baseline abs_rel | difference | d1 |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {i} | `{d['path']}` | {d['frames']['scored']} | {_number(d['metrics']['abs_rel'])} | "
                      f"{_number(d['baseline']['metrics']['abs_rel'])} | {d['difference']['abs_rel']:+.4f} | "
                      f"{_number(d['metrics'].get('d1'))} |" for i, d in worst]
        else:
            lines += ["## Worst drives (highest abs_rel)", "", "| drive | path | frames scored | abs_rel | d1 |",
                      "|---|---|---|---|---|"]
            lines += [f"| {i} | `{d['path']}` | {d['frames']['scored']} | {_number(d['metrics']['abs_rel'])} | "
                      f"{_number(d['metrics'].get('d1'))} |" for i, d in worst]
        lines.append("")
        for index, drive in worst:
            if drive.get("contact_sheet"):
                lines += [f"### Drive {index}: `{drive['path']}`", "", f"![drive {index}]({drive['contact_sheet']})", ""]
    failed = [(i, d) for i, d in enumerate(fleet["drives"]) if d["status"] == "failed"]
    if failed:
        lines += ["## Failed drives", "", "| drive | path | reason |", "|---|---|---|"]
        lines += [f"| {i} | `{d['path']}` | {_failure(d).replace('|', '/')} |" for i, d in failed]
        lines.append("")
    lines += ["## Plots", ""]
    for caption, path in plots.items():
        lines += [f"### {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(lines)

