#!/usr/bin/env python
"""Summarise the synthetic Table V ablation (issue 15) into docs/results.md, with its figures.

    python training/scripts/ablation_report.py --runs outputs/ablation_v2 --docs docs [--pictures]

Reads <runs>/<method>_seed<S>/report.json (final evaluation on the held-out scenes) and log.jsonl (curves,
term values and gradient norms, data checksums). A run without report.json is reported as in progress,
with the last step it logged. The figures are the LAST step's, not the best checkpoint's: picking the
best step on the held-out set would tune on it. Rewrites the part of <docs>/results.md between the
ablation markers (when that file has them) and writes <docs>/figures/ablation_{curves,terms,clusters}.png.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make `training.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training.scripts.ablation_figures import cluster_pictures, curves, term_analysis
from training.scripts.ablation_statistics import paired_difference, t_interval, verdict

# Study order; the run folders are <key>_seed<S>.
METHODS = {
    "method1": "I (parallel, SIlog)",
    "method2": "II (sequential, SIlog)",
    "method3": "III (sequential, SIlog + ICM)",
    "method3_warmup": "III + ICM warm-up (deviation)",
    "method3_per_pixel": "III + per-pixel ICM (deviation)",
}
ICM_METHODS = ("method3", "method3_warmup", "method3_per_pixel")
# Metric -> True when lower is better.
COLUMNS = {"abs_rel": True, "rmse": True, "d1": False, "d1_instance": False, "d1_background": False,
           "cluster_alignment": False}
# (later, earlier): the paper's claims are II better than I and III better than II (Table V, IV).
COMPARISONS = (("method2", "method1"), ("method3", "method2"), ("method3_warmup", "method3"),
               ("method3_per_pixel", "method3"), ("method3_warmup", "method2"))
PAPER_CLAIMS = (("method2", "method1", "abs_rel"), ("method3", "method2", "abs_rel"),
                ("method3", "method2", "d1_instance"), ("method3", "method2", "d1"))
TERMS = ("loss_silog", "loss_icm_1", "loss_icm_2", "loss_icm_3")
BEGIN, END = "<!-- ablation-table:begin -->", "<!-- ablation-table:end -->"
RUN_NAME = re.compile(r"(?P<method>.+)_seed(?P<seed>\d+)")


def load_runs(folder: Path) -> dict[tuple[str, int], dict]:
    """{(method, seed): {"records": [log.jsonl objects], "report": report.json or None,
    "steps": the run's train.steps (its schedule's length)}}."""
    runs = {}
    for run in sorted(folder.glob("*_seed*")):
        match = RUN_NAME.fullmatch(run.name)
        if not match or not run.is_dir() or match["method"] not in METHODS:
            continue
        log = run / "log.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
        report = json.loads((run / "report.json").read_text()) if (run / "report.json").exists() else None
        config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
        steps = config.get("train", {}).get("steps") or max((r["step"] for r in records), default=0)
        runs[(match["method"], int(match["seed"]))] = {"records": records, "report": report, "steps": steps}
    return runs


def final_metrics(runs: dict, method: str) -> dict[int, dict[str, float]]:
    """{seed: held-out metrics of the last step} over the method's finished runs."""
    return {seed: run["report"]["metrics"] for (name, seed), run in runs.items() if name == method and run["report"]}


def last_step(run: dict) -> int:
    return max((record["step"] for record in run["records"]), default=0)


def methods_present(runs: dict) -> list[str]:
    return [method for method in METHODS if any(name == method for name, _ in runs)]


def status(runs: dict) -> str:
    done = sorted(f"{m}_seed{s}" for (m, s), run in runs.items() if run["report"])
    running = sorted(f"{m}_seed{s} (step {last_step(run)})" for (m, s), run in runs.items() if not run["report"])
    text = f"Runs finished: {len(done)}"
    if running:
        text += f"; **in progress, not in the statistics**: {', '.join(running)}"
    return text + "."


def method_table(runs: dict) -> str:
    lines = ["| method | seeds done | steps | " + " | ".join(COLUMNS) + " |",
             "|---|---:|---:|" + "---:|" * len(COLUMNS)]
    for method in methods_present(runs):
        finals = final_metrics(runs, method)
        steps = sorted({run["report"]["step"] for (m, _), run in runs.items() if m == method and run["report"]})
        cells = [t_interval([finals[s][column] for s in sorted(finals)]).format() for column in COLUMNS]
        lines.append(f"| {METHODS[method]} | {len(finals)} | {', '.join(map(str, steps))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def difference_table(runs: dict) -> str:
    lines = ["| difference (paired by seed) | seeds | " + " | ".join(COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(COLUMNS)]
    for later, earlier in COMPARISONS:
        a, b = final_metrics(runs, later), final_metrics(runs, earlier)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        cells = []
        for column, lower_is_better in COLUMNS.items():
            difference = paired_difference({s: a[s][column] for s in seeds}, {s: b[s][column] for s in seeds})
            text = difference.format()
            reading = verdict(difference, lower_is_better)
            cells.append(f"**{text}** ({reading})" if reading in ("better", "worse") else text)
        name = f"{METHODS[later].split(' (')[0]} − {METHODS[earlier].split(' (')[0]}"
        lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def last_change(run: dict, column: str = "abs_rel") -> str:
    """abs_rel of the last evaluation minus the one before (how flat the curve has become)."""
    values = [r["val"][column] for r in run["records"] if "val" in r and column in r["val"]]
    return f"{values[-1] - values[-2]:+.4f}" if len(values) > 1 else ""


def run_table(runs: dict) -> str:
    lines = ["| method | seed | steps | " + " | ".join(COLUMNS) + " | abs_rel change since the previous evaluation |",
             "|---|---:|---:|" + "---:|" * (len(COLUMNS) + 1)]
    for method in methods_present(runs):
        for seed in sorted(s for m, s in runs if m == method):
            run = runs[(method, seed)]
            if run["report"] is None:
                lines.append(f"| {METHODS[method]} | {seed} | in progress (step {last_step(run)}) |"
                             + " |" * (len(COLUMNS) + 1))
                continue
            metrics = run["report"]["metrics"]
            lines.append(f"| {METHODS[method]} | {seed} | {run['report']['step']} | "
                         + " | ".join(f"{metrics[c]:.4f}" for c in COLUMNS) + f" | {last_change(run)} |")
    return "\n".join(lines)


def in_window(record: dict, low: float, high: float, total: int) -> bool:
    return low * total < record["step"] <= high * total


def term_table(runs: dict) -> str:
    """Each term's value and gradient norm at F1..F3 in three parts of training, mean over the runs."""
    windows = (("first 10 %", 0.0, 0.1), ("40-60 %", 0.4, 0.6), ("last 10 %", 0.9, 1.0))
    header = (["| method | part of training | runs |"] + [f" {t.removeprefix('loss_')} |" for t in TERMS]
              + [f" grad {t.removeprefix('loss_')} |" for t in TERMS] + [" Σ w·grad ICM / grad SIlog |"])
    lines = ["".join(header), "|---|---|---:|" + "---:|" * (2 * len(TERMS) + 1)]
    for method in methods_present(runs):
        chosen = [run for (m, _), run in runs.items() if m == method and run["records"]]
        for label, low, high in windows:
            per_run = [[r for r in run["records"] if "loss_silog" in r and in_window(r, low, high, run["steps"])]
                       for run in chosen]
            records = [r for run_records in per_run for r in run_records]
            if not records:
                continue
            cells = []
            for key in [*TERMS, *(f"feature_grad/{t}" for t in TERMS)]:
                values = [r[key] for r in records if key in r and math.isfinite(r[key])]
                cells.append(f"{statistics.fmean(values):.3g}" if values else "")
            ratios = [sum(r.get(f"weight/{t}", 0.0) * r.get(f"feature_grad/{t}", 0.0) for t in TERMS[1:])
                      / r["feature_grad/loss_silog"] for r in records if r.get("feature_grad/loss_silog", 0) > 0]
            ratio = f"{statistics.fmean(ratios):.3g}" if ratios else ""
            runs_seen = sum(1 for run_records in per_run if run_records)
            lines.append(f"| {METHODS[method]} | {label} | {runs_seen} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def data_order_check(runs: dict) -> str:
    """Compares the logged data checksums of every method of a seed at the steps they all logged."""
    notes = []
    for seed in sorted({s for _, s in runs}):
        sums = {m: {r["step"]: r["data_checksum"] for r in run["records"] if "data_checksum" in r}
                for (m, s), run in runs.items() if s == seed}
        sums = {m: v for m, v in sums.items() if v}
        if len(sums) < 2:
            continue
        common = sorted(set.intersection(*(set(v) for v in sums.values())))
        differing = [step for step in common if len({round(v[step], 3) for v in sums.values()}) > 1]
        notes.append(f"seed {seed}: {len(sums)} runs, {len(common)} common logged steps, "
                     + ("identical images at every one" if not differing else f"**different images at {len(differing)}**"))
    return "Same data per seed across methods (checksum of the first image of each logged step): " + (
        "; ".join(notes) if notes else "fewer than two runs per seed so far") + "."


def paper_orderings(runs: dict) -> str:
    lines = []
    for later, earlier, column in PAPER_CLAIMS:
        a, b = final_metrics(runs, later), final_metrics(runs, earlier)
        seeds = sorted(set(a) & set(b))
        difference = paired_difference({s: a[s][column] for s in seeds}, {s: b[s][column] for s in seeds})
        reading = verdict(difference, COLUMNS[column])
        if reading in ("better", "worse"):
            word = "**supported**" if reading == "better" else "**contradicted**"
        else:
            word = "**" + reading.replace(" (", "** (", 1)  # "**cannot tell** (why)"
        shown = difference.format() if difference.count else "no paired seeds yet"
        claim = f"{METHODS[later].split(' (')[0]} better than {METHODS[earlier].split(' (')[0]} in {column}"
        lines.append(f"- paper: {claim}: {word}; {METHODS[later].split(' (')[0]} − "
                     f"{METHODS[earlier].split(' (')[0]} = {shown}; paired seeds: {len(seeds)}")
    return "\n".join(lines)


def report_text(runs: dict) -> str:
    return "\n\n".join([
        status(runs),
        "**Per method**: mean ± half width of the 95 % t-interval over seeds (last step, held-out scenes).",
        method_table(runs),
        "**Paired by seed** (later − earlier method; negative abs_rel/rmse and positive d1/alignment mean the "
        "later method is better). Bold: the 95 % interval excludes 0.",
        difference_table(runs),
        "**The paper's orderings** (decided by the paired 95 % interval):",
        paper_orderings(runs),
        "**Term analysis**: each loss term's value and the L2 norm of its gradient at the neck features F1..F3 "
        "(which SIlog and the ICM terms all act through), mean over the logged steps of each part of training "
        "and over the runs; the last column sums the ICM norms times their weights at that step (the warm-up "
        "ramp included) over the SIlog norm.",
        term_table(runs),
        data_order_check(runs),
        "**Every run**:",
        run_table(runs),
    ])


def write_between_markers(path: Path, text: str) -> bool:
    if not path.exists() or BEGIN not in path.read_text():
        return False
    before, rest = path.read_text().split(BEGIN, 1)
    after = rest.split(END, 1)[1] if END in rest else ""
    path.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="outputs/ablation_v2")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--pictures", action="store_true", help="also draw <docs>/figures/ablation_clusters.png")
    args = parser.parse_args(argv)
    folder = Path(args.runs)
    if not folder.is_dir():
        raise SystemExit(f"error: --runs {folder} is not a folder")
    runs = load_runs(folder)
    text = report_text(runs)
    print(text)
    docs = Path(args.docs)
    curves(runs, METHODS, docs / "figures" / "ablation_curves.png")
    term_analysis(runs, {m: METHODS[m] for m in METHODS}, docs / "figures" / "ablation_terms.png")
    if args.pictures:
        cluster_pictures(folder, list(METHODS), docs / "figures" / "ablation_clusters.png")
    write_between_markers(docs / "results.md", text)


if __name__ == "__main__":
    main()
