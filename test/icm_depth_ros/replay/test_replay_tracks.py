"""replay_eval's tracks on a closing-object drive the project renders: --depth-source ground-truth (no model),
--truth-topic scoring with motmetrics, tracks.csv, the plots, and the options' errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

SIZE = (96, 320)
TRUTH_TOPIC = "/camera/instances_truth"
DEMO_MODEL = str(Path(__file__).resolve().parents[3] / "models" / "demo" / "icm_demo.onnx")
MOTMETRICS = "track scoring needs motmetrics, a workstation package (requirements.txt, not requirements-node.txt)"


@pytest.fixture(scope="module")
def braking_bag(tmp_path_factory):
    from training.data.synthetic import write_bag
    from training.data.synthetic.closing import render_closing_drive

    frames = render_closing_drive("lead_braking", SIZE, seed=0)
    return write_bag(tmp_path_factory.mktemp("drive") / "bag", frames), frames


def replay(argv, capsys):
    from icm_depth_ros import replay_eval

    status = replay_eval.main(argv)
    return status, capsys.readouterr()


def test_ground_truth_depth_scores_the_tracking_stage(tmp_path, braking_bag, capsys):
    pytest.importorskip("motmetrics", reason=MOTMETRICS)
    bag, frames = braking_bag
    out = tmp_path / "out"
    status, printed = replay([str(bag), "--instances-topic", "/camera/instances", "--truth-topic", TRUTH_TOPIC,
                              "--depth-source", "ground-truth", "--min-instance-pixels", "10", "--out", str(out),
                              "--no-progress"], capsys)
    assert status == 0, printed.err
    assert "replay_eval: tracks: MOTA" in printed.out and "closing objects 0)" in printed.out
    metrics = json.loads((out / "metrics.json").read_text())
    tracks = metrics["tracks"]
    assert metrics["run"]["depth_source"] == "ground-truth" and tracks["scored"]
    assert tracks["identity"]["actor_switches"] == 0 and tracks["identity"]["num_false_positives"] == 0
    assert tracks["errors"]["all"]["ttc_relative_error"] <= 0.10  # the done-when figure, on this one drive
    assert tracks["tracker"]["jerk_std"] == 10.0 and tracks["skipped_stamps"] == 0
    with open(out / "tracks.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["stamp", "track_id", "label", "range", "range_rate", "ttc", "range_std", "range_rate_std",
                             "ttc_std", "true_id", "true_range", "true_range_rate", "true_ttc", "actor"]
    lead = int(frames[0]["truth"][frames[0]["truth"]["actor"] == 1]["id"][0])
    lead_rows = [row for row in rows if row["true_id"] == str(lead)]
    assert len({row["track_id"] for row in lead_rows}) == 1 and all(row["label"] == str(lead) for row in lead_rows)
    # a row's truth is the frame's truth at that stamp
    stamp_ns = round((float(lead_rows[-1]["stamp"]) - 1_600_000_000) * 1e9 / 1e8) * 100_000_000
    truth = next(f["truth"] for f in frames if f["stamp_ns"] == stamp_ns)
    assert float(lead_rows[-1]["true_range"]) == pytest.approx(float(truth[truth["id"] == lead]["range"][0]), rel=1e-6)
    assert float(lead_rows[-1]["range"]) == pytest.approx(float(lead_rows[-1]["true_range"]), abs=0.5)
    assert (out / "plots" / f"track_{lead}_range.png").is_file() and (out / "plots" / f"track_{lead}_ttc.png").is_file()
    report = (out / "report.md").read_text()
    assert "## Tracks" in report and f"plots/track_{lead}_ttc.png" in report


def test_without_truth_the_tracks_are_written_not_scored(tmp_path, braking_bag, capsys):
    bag, _ = braking_bag
    out = tmp_path / "out"
    status, printed = replay([str(bag), "--instances-topic", "/camera/instances", "--depth-source", "ground-truth",
                              "--out", str(out), "--no-progress"], capsys)
    assert status == 0, printed.err
    tracks = json.loads((out / "metrics.json").read_text())["tracks"]
    assert tracks["scored"] is False and "--truth-topic" in tracks["reason"]
    with open(out / "tracks.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["true_id"] == "" for row in rows) and np.isfinite(float(rows[-1]["range"]))


@pytest.mark.parametrize("argv, message", [
    (["--depth-source", "ground-truth"], "--depth-source ground-truth needs the bag's true depth (--depth-topic) "
                                         "and its instance labels (--instances-topic)"),
    ([], "--model is required offline with --depth-source model"),
    (["--truth-topic", "/camera/nope", "--model", DEMO_MODEL], "has no topic '/camera/nope' (--truth-topic)"),
])
def test_bad_options_are_named(tmp_path, braking_bag, capsys, argv, message):
    if "--truth-topic" in argv:
        pytest.importorskip("motmetrics", reason=MOTMETRICS)
    bag, _ = braking_bag
    status, printed = replay([str(bag), "--out", str(tmp_path / "out"), "--no-progress", *argv], capsys)
    assert status == 2 and message in printed.err
