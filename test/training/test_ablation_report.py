"""The ablation report: t-intervals and paired differences on hand numbers, and the tables it writes."""
import json
import math

import pytest
import yaml

from training.scripts.ablation_report import BEGIN, END, load_runs, main, report_text
from training.scripts.ablation_statistics import paired_difference, t_interval, verdict

T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446}  # Student's t quantiles, two-sided 95 %, df 1-3


def test_t_interval_on_hand_numbers():
    interval = t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1
    assert interval.mean == pytest.approx(2.0)
    assert interval.half_width == pytest.approx(T_975[2] / math.sqrt(3), rel=1e-6)  # 2.48414
    assert (interval.low, interval.high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-5)
    pair = t_interval([0.30, 0.34])  # mean 0.32, s = 0.02 * sqrt(2)
    assert pair.half_width == pytest.approx(T_975[1] * 0.02 * math.sqrt(2) / math.sqrt(2), rel=1e-6)
    single = t_interval([0.5])
    assert single.mean == 0.5 and math.isnan(single.half_width) and single.format() == "0.5000 (1 seed)"
    assert t_interval([]).count == 0 and t_interval([]).format() == ""


def test_paired_differences_use_only_shared_seeds_and_remove_the_seed_effect():
    # The seeds move both methods together (0.30, 0.40, 0.50): paired, B - A is 0.010, 0.012, 0.014.
    method_a = {0: 0.300, 1: 0.400, 2: 0.500, 3: 0.9}
    method_b = {0: 0.310, 1: 0.412, 2: 0.514}
    difference = paired_difference(method_b, method_a)
    assert difference.count == 3 and difference.mean == pytest.approx(0.012)
    assert difference.half_width == pytest.approx(T_975[2] * 0.002 / math.sqrt(3), rel=1e-6)
    assert difference.excludes_zero()
    assert verdict(difference, lower_is_better=True) == "worse"
    assert verdict(difference, lower_is_better=False) == "better"
    unpaired = t_interval(list(method_b.values()))  # the same numbers unpaired: the seed spread swamps it
    assert unpaired.half_width > 0.2
    spans = paired_difference({0: 1.0, 1: 3.0}, {0: 2.0, 1: 2.0})  # -1, +1
    assert not spans.excludes_zero() and verdict(spans, True) == "cannot tell (interval spans 0)"
    assert verdict(paired_difference({0: 1.0}, {0: 2.0}), True) == "cannot tell (fewer than 2 paired seeds)"


METRICS = ("abs_rel", "rmse", "d1", "d1_instance", "d1_background", "cluster_alignment")


def write_run(folder, name, abs_rel, finished=True, steps=100, checksum=1.0):
    run = folder / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": steps}}))
    icm = "method3" in name
    records = []
    for step in (10, 50, 100) if finished else (10, 50):
        record = {"step": step, "loss_silog": 4.0, "feature_grad/loss_silog": 0.1, "weight/loss_silog": 1.0,
                  "data_checksum": checksum + step}
        if icm:
            record.update({f"loss_icm_{s}": float(s) for s in (1, 2, 3)})
            record.update({f"feature_grad/loss_icm_{s}": 0.1 * s for s in (1, 2, 3)})
            record.update({f"weight/loss_icm_{s}": 1.0 for s in (1, 2, 3)})
        records.append(record)
    if finished:  # held-out evaluations at steps 50 and 100: abs_rel moved by -0.02 in the last 50 steps
        records += [{"step": 50, "val": {"abs_rel": abs_rel + 0.02}}, {"step": 100, "val": {"abs_rel": abs_rel}}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if finished:
        metrics = {m: 0.5 for m in METRICS}
        metrics["abs_rel"] = abs_rel
        (run / "report.json").write_text(json.dumps({"step": steps, "metrics": metrics}))


def test_report_tables_from_run_folders(tmp_path):
    runs_folder = tmp_path / "runs"
    for seed, (a, b, c) in enumerate([(0.30, 0.31, 0.33), (0.40, 0.412, 0.43), (0.50, 0.514, 0.52)]):
        write_run(runs_folder, f"method1_seed{seed}", a, checksum=seed)
        write_run(runs_folder, f"method2_seed{seed}", b, checksum=seed)
        write_run(runs_folder, f"method3_seed{seed}", c, checksum=seed)
    write_run(runs_folder, "method3_warmup_seed0", 0.3, finished=False, checksum=0)
    write_run(runs_folder, "method3_seed9_notes", 0.3)  # not a run folder name: ignored
    runs = load_runs(runs_folder)
    assert sorted(runs) == sorted([(m, s) for m in ("method1", "method2", "method3") for s in range(3)]
                                  + [("method3_warmup", 0)])
    text = report_text(runs)
    assert "Runs finished: 9; **in progress, not in the statistics**: method3_warmup_seed0 (step 50)." in text
    half = T_975[2] * 0.1 / math.sqrt(3)  # method I abs_rel 0.3, 0.4, 0.5: s = 0.1
    assert f"| I (parallel, SIlog) | 3 | 100 | 0.4000 ± {half:.4f} |" in text
    # II - I = 0.010, 0.012, 0.014 -> worse in abs_rel, excluding 0
    assert f"| II − I | 3 | **0.0120 ± {T_975[2] * 0.002 / math.sqrt(3):.4f}** (worse) |" in text
    assert "- paper: II better than I in abs_rel: **contradicted**" in text
    assert "- paper: III better than II in d1_instance: **cannot tell** (interval spans 0)" in text
    assert "| III + ICM warm-up (deviation) | 0 | in progress (step 50) |" in text
    assert "| I (parallel, SIlog) | 1 | 100 | 0.4000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | -0.0200 |" in text
    # term analysis: first 10 % holds step 10; gradient ratio (0.1 + 0.2 + 0.3) / 0.1 = 6
    assert "| III (sequential, SIlog + ICM) | first 10 % | 3 | 4 | 1 | 2 | 3 | 0.1 | 0.1 | 0.2 | 0.3 | 6 |" in text
    assert "| I (parallel, SIlog) | last 10 % | 3 | 4 |  |  |  | 0.1 |  |  |  | 0 |" in text
    assert "seed 0: 4 runs, 2 common logged steps, identical images at every one" in text


def test_report_flags_different_data_and_writes_docs_and_figures(tmp_path):
    runs_folder = tmp_path / "runs"
    write_run(runs_folder, "method1_seed0", 0.3, checksum=0.0)
    write_run(runs_folder, "method2_seed0", 0.3, checksum=5.0)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text(f"# Results\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    main(["--runs", str(runs_folder), "--docs", str(docs)])
    written = (docs / "results.md").read_text()
    assert written.startswith("# Results\nbefore\n") and written.endswith(f"{END}\nafter\n")
    assert "old table" not in written and "**different images at 3**" in written
    assert (docs / "figures" / "ablation_curves.png").stat().st_size > 1000
    assert (docs / "figures" / "ablation_terms.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="is not a folder"):
        main(["--runs", str(tmp_path / "missing"), "--docs", str(docs)])
