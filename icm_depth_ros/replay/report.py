"""Write a replay evaluation's outputs: metrics.json, frames.csv, instances.csv, tracks.csv, report.md and its
plots (docs/replay.md). A drive without ground truth has its metric sections marked as not available."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from icm_depth_ros.processing.metrics import EXTRA_NAMES, METRIC_NAMES
from icm_depth_ros.replay.evaluation import INSTANCE_COLUMNS
from icm_depth_ros.replay.plots import band_plot, contact_sheet, frame_panel, line_plot
from icm_depth_ros.replay.track_scoring import TRACK_COLUMNS

TTC_PLOT_MAX_S = 10.0  # time to contact is drawn up to this (+inf: not closing)


def write_outputs(out_dir: Path, summary: dict, rows: list[dict], samples: list[dict],
                  instance_rows: list[dict] = (), track_scorer=None) -> None:
    """summary: Evaluation.summary() plus "run" (how it was run) and, with tracking, "tracks" (the
    scorer's summary()); rows: one dict per frame; instance_rows: Evaluation.instance_rows (each reported
    instance of each frame); track_scorer: track_scoring.TrackScorer after summary() (tracks.csv, plots)."""
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=False, default=_plain) + "\n")
    write_frames_csv(out_dir / "frames.csv", rows)
    with open(out_dir / "instances.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=INSTANCE_COLUMNS)
        writer.writeheader()
        writer.writerows(instance_rows)
    plots = write_plots(out_dir / "plots", summary, rows, samples)
    if track_scorer is not None:
        with open(out_dir / "tracks.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=TRACK_COLUMNS)
            writer.writeheader()
            writer.writerows(track_scorer.rows)
        plots.update(write_track_plots(out_dir / "plots", track_scorer))
    (out_dir / "report.md").write_text(render_markdown(summary, plots))


def write_track_plots(plot_dir: Path, track_scorer) -> dict[str, str]:
    """Range and time to contact over time against the truth, with the +- 1 std band, per closing object."""
    plots = {}
    for truth_id in sorted(track_scorer.actors):
        series = track_scorer.series(truth_id)
        if not series["stamp"].size:
            continue
        time_s = series["stamp"] - series["stamp"][0]
        for name, unit, y_max in (("range", "m", None), ("ttc", "s", TTC_PLOT_MAX_S)):
            path = plot_dir / f"track_{truth_id}_{name}.png"
            band_plot(path, time_s, series[name], series[f"{name}_std"], series[f"true_{name}"],
                      f"object {truth_id}: {name}", "time [s]", f"{name} [{unit}]", y_max)
            plots[f"Closing object {truth_id}: {name} over time"] = f"plots/{path.name}"
    return plots


def write_frames_csv(path: Path, rows: list[dict]) -> None:
    columns = ["frame", "stamp_ns", "status", "valid_pixels", "covered_fraction", *METRIC_NAMES,
               "d1_instance", "d1_background", "instances"]
    columns += sorted({key for row in rows for key in row if key not in columns})  # latency columns
    rows = sorted(rows, key=lambda row: row["frame"])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if value is None else value) for key, value in row.items()})


def write_plots(plot_dir: Path, summary: dict, rows: list[dict], samples: list[dict]) -> dict[str, str]:
    """Returns caption -> path relative to the output folder."""
    plots = {}
    samples = sorted(samples, key=lambda s: s["frame"])
    max_depth = summary["run"]["max_depth"]
    if samples:
        contact_sheet(plot_dir.parent / "contact_sheet.png", samples, max_depth)
        plots["Contact sheet: image | depth | instances with their distances"] = "contact_sheet.png"
    if not summary["frames"]["scored"]:
        return plots  # nothing scored: no error curves or true-depth panels to draw
    curve = summary["error_by_distance"]
    centres = [(low + high) / 2 for low, high in zip(curve["bin_low_m"], curve["bin_high_m"])]
    line_plot(plot_dir / "error_by_distance.png", centres, curve["abs_rel"],
              "abs_rel against ground-truth distance (all scored pixels)", "distance [m]", "abs_rel")
    plots["Error against distance"] = "plots/error_by_distance.png"
    scored = sorted((row for row in rows if row["status"] == "scored"), key=lambda row: row["frame"])
    line_plot(plot_dir / "abs_rel_over_time.png", [row["frame"] for row in scored],
              [row["abs_rel"] for row in scored], "abs_rel per frame", "frame", "abs_rel")
    plots["abs_rel over time"] = "plots/abs_rel_over_time.png"
    for sample in (s for s in samples if s["gt"] is not None):
        name = f"plots/frame_{sample['frame']:06d}.png"
        frame_panel(plot_dir.parent / name, sample, max_depth)
        plots[f"Frame {sample['frame']} (abs_rel {sample['abs_rel']:.3f})"] = name
    return plots


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_markdown(summary: dict, plots: dict[str, str]) -> str:
    run, frames, metrics = summary["run"], summary["frames"], summary["metrics"]
    topics = run["topics"]
    lines = [
        f"# Replay evaluation: {Path(run['bag']).name}", "",
        f"- mode: {run['mode']}; model: `{run['model']}` ({run.get('backend', 'n/a')})",
        f"- topics: image `{topics['image']}`, camera_info `{topics.get('camera_info') or '-'}`, ground truth "
        f"`{topics['depth'] or '-'}`, instances `{topics.get('instances') or '-'}`",
        *[f"- note: {note}" for note in run.get("notes", [])],
        f"- evaluated depth range ({run['min_depth']:g}, {run['max_depth']:g}) m, crop {run['crop']}, "
        f"stamp tolerance {run['stamp_tolerance_s'] * 1000:g} ms", "",
        "## Frames", "",
        "| read | scored | skipped | run without ground truth | without instance labels |", "|---|---|---|---|---|",
        f"| {frames['read']} | {frames['scored']} | {frames['skipped']} | "
        f"{frames.get('predicted_without_ground_truth', 0)} | {frames['without_instance_labels']} |", "",
    ]
    if frames["skipped_by_reason"]:
        lines += ["| skip reason | frames | example |", "|---|---|---|"]
        for reason, count in frames["skipped_by_reason"].items():
            example = (frames["skip_examples"].get(reason) or [""])[0].replace("|", "/")
            lines.append(f"| {reason} | {count} | {example} |")
        lines.append("")
    if "live" in summary:
        live = summary["live"]
        lines += ["## Live run", "", "| published | received | dropped | rate |", "|---|---|---|---|",
                  f"| {live['published']} | {live['received']} | {live['dropped']} | {live['rate']:g}x |", ""]
    lines += ["## Depth metrics (mean over scored frames)", ""]
    if frames["scored"]:
        names = (*METRIC_NAMES, *EXTRA_NAMES[:2])
        lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names),
                  "| " + " | ".join(_number(metrics.get(name)) for name in names) + " |", ""]
    else:
        lines += [f"Not available: {summary.get('metrics_unavailable', 'no frame was scored')}.", ""]
    lines += ["## Per-instance depth error by distance band", ""]
    if frames["scored"]:
        lines += ["Median depth of each labelled instance, predicted (the node's instance code) against true.", "",
                  "| band | instances | mean abs error [m] | mean error [m] | abs_rel |", "|---|---|---|---|---|"]
        for band, row in summary["instance_error_by_distance"].items():
            lines.append(f"| {band} | {row['instances']} | {_number(row['mean_abs_error_m'], 3)} | "
                         f"{_number(row['mean_error_m'], 3)} | {_number(row['abs_rel'])} |")
    else:
        lines.append("Not available (no ground truth).")
    lines += ["", "## Instance distances", "",
              f"{summary.get('instances_reported', 0)} instances over the run frames, one row each in "
              "`instances.csv` (frame, id, class, centroid x/y/z, median and near depth in metres, pixels, "
              "confidence)."]
    lines += _tracks_section(summary.get("tracks"))
    lines += ["", "## Latency", "", "| stage | mean [ms] | p50 | p90 | p99 | max | frames |", "|---|---|---|---|---|---|---|"]
    for stage, figures in summary["latency"].items():
        if figures:
            lines.append(f"| {stage} | {figures['mean_ms']:.1f} | {figures['p50_ms']:.1f} | {figures['p90_ms']:.1f} | "
                         f"{figures['p99_ms']:.1f} | {figures['max_ms']:.1f} | {figures['count']} |")
    lines += ["", "## Plots", ""]
    for caption, path in plots.items():
        lines += [f"### {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(lines)


def _tracks_section(tracks: dict | None) -> list[str]:
    """report.md's tracks: identity figures, errors by band and calibration (metrics.json "tracks")."""
    if tracks is None:
        return []
    lines = ["", "## Tracks", "", "One row per confirmed track per frame in `tracks.csv` (stamp, track_id, label, "
             "range, range_rate, ttc, their stds, the matched truth)."]
    if not tracks["scored"]:
        return lines + ["", f"Not scored: {tracks['reason']}."]
    identity = tracks["identity"]
    lines += ["", "| MOTA | IDF1 | ID switches | fragmentations | closing objects: ID switches | frames tracked |",
              "|---|---|---|---|---|---|",
              f"| {_number(identity['mota'], 3)} | {_number(identity['idf1'], 3)} | {identity['num_switches']} | "
              f"{identity['num_fragmentations']} | {identity['actor_switches']} | "
              f"{identity['actor_frames_tracked']} / {identity['actor_frames_visible']} |", "",
              "Closing objects by true range (time to contact scored where the truth is under 6 s):", "",
              "| band | frames | median abs range error [m] | median abs range-rate error [m/s] | "
              "median relative ttc error | ttc frames |", "|---|---|---|---|---|---|"]
    for band, row in tracks["errors"].items():
        if band != "all":
            lines.append(f"| {band} | {row['frames']} | {_number(row['range_abs_error_m'], 3)} | "
                         f"{_number(row['range_rate_abs_error_mps'], 3)} | {_number(row['ttc_relative_error'], 3)} | "
                         f"{row['ttc_frames']} |")
    standing = tracks["standing"]
    lines += ["", f"Standing objects (true range rate under 0.1 m/s): {standing['frames']} frames, abs range rate "
              f"median {_number(standing['abs_range_rate_median_mps'], 3)}, max "
              f"{_number(standing['abs_range_rate_max_mps'], 3)} m/s.", "",
              "Share of matched frames within one stated std (68 % when calibrated):", "",
              "| objects | range | range rate | time to contact |", "|---|---|---|---|"]
    for group, figures in tracks["calibration"].items():
        lines.append(f"| {group} | " + " | ".join(
            f"{_number(figures[name]['within_one_std'], 3)} of {figures[name]['frames']}"
            for name in ("range", "range_rate", "ttc")) + " |")
    return lines


def _plain(value):
    """json.dumps fallback for NumPy scalars."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to metrics.json")
