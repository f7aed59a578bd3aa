"""replay_fleet on tiny synthetic drives the project renders itself, with Ray running inside the test process.

The fleet's overall figures must equal replay_eval's on one bag holding every drive's frames; a worker
process killed mid-drive must change nothing; the gate's exit codes and lines follow the documented rule.
The tests that start Ray are marked slow (5-20 s each here).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MODEL_SIZE

# Ray (and psutil, which finds its workers) are in the development set, not in the vehicle's requirements-node.txt
pytest.importorskip("ray", reason="replay_fleet runs on a workstation or cluster: Ray is not in requirements-node.txt")
psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[3]
DEMO_MODEL = ROOT / "models" / "demo" / "icm_demo.onnx"
PERIOD_NS = 100_000_000  # 10 Hz
DRIVE_FRAMES = (3, 2, 4)  # frames of the three drives (different lengths: the merge must weight by frames)


def render_drives(frames_per_drive, seed0=11):
    from training.data.synthetic import render_sequence

    return [render_sequence(count, MODEL_SIZE, seed=seed0 + i) for i, count in enumerate(frames_per_drive)]


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    """Three drive bags under one folder, and a fourth bag holding all their frames in order."""
    from training.data.synthetic import write_bag

    folder = tmp_path_factory.mktemp("fleet")
    frames = render_drives(DRIVE_FRAMES)
    bags = [write_bag(folder / "drives" / f"drive{i}", drive) for i, drive in enumerate(frames)]
    joined = [{**frame, "stamp_ns": i * PERIOD_NS} for i, frame in enumerate(f for drive in frames for f in drive)]
    return {"bags": bags, "joined": write_bag(folder / "joined", joined), "folder": folder / "drives"}


@pytest.fixture(autouse=True)
def no_ray_left_behind():
    """Every test ends with Ray stopped and no child process of the test left."""
    yield
    import ray

    assert not ray.is_initialized()
    deadline = time.monotonic() + 10
    while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p.name() for p in psutil.Process().children(recursive=True)] == []


def fleet(*arguments) -> int:
    from icm_depth_ros.replay_fleet import main

    return main([str(a) for a in arguments] + ["--no-progress"])


@pytest.mark.slow
def test_fleet_overall_equals_replay_eval_on_the_joined_bag(tmp_path, drives, capsys):
    from icm_depth_ros.replay.bag_reader import TopicSelection
    from icm_depth_ros.replay.offline import ReplayOptions, run_offline

    code = fleet(drives["folder"], "--model", DEMO_MODEL, "--baseline", DEMO_MODEL, "--workers", 2,
                 "--instances-topic", "/camera/instances", "--gate", "abs_rel=0", "--gate", "d1=0",
                 "--out", tmp_path / "fleet")
    assert code == 0, capsys.readouterr().err
    joined = run_offline(ReplayOptions(
        bag=str(drives["joined"]), topics=TopicSelection("/camera/image_raw", "/camera/camera_info",
                                                         "/camera/depth_gt", "/camera/instances"),
        model_path=str(DEMO_MODEL), threads=1, out=str(tmp_path / "joined"), progress=False))
    report = json.loads((tmp_path / "fleet" / "fleet.json").read_text())
    overall = report["overall"]
    assert overall["metrics"] == joined["metrics"]  # equal, not close: the sums are exact
    assert set(overall["metrics"]) >= {"abs_rel", "d1", "silog", "d1_instance", "d1_background"}
    assert overall["error_by_distance"] == joined["error_by_distance"]
    assert overall["instance_error_by_distance"] == joined["instance_error_by_distance"]
    assert sum(band["instances"] for band in overall["instance_error_by_distance"].values()) > 0
    for name in ("read", "scored", "skipped"):
        assert overall["frames"][name] == joined["frames"][name] == (sum(DRIVE_FRAMES) if name != "skipped" else 0)
    assert overall["drives"] == {"total": 3, "evaluated": 3, "failed": 0}

    # per drive: the figures replay_eval gives on that drive alone, in the folder's sorted order
    assert [Path(d["path"]).name for d in report["drives"]] == ["drive0", "drive1", "drive2"]
    first = run_offline(ReplayOptions(
        bag=str(drives["bags"][1]), topics=TopicSelection("/camera/image_raw", "/camera/camera_info",
                                                          "/camera/depth_gt", "/camera/instances"),
        model_path=str(DEMO_MODEL), threads=1, out=str(tmp_path / "one"), progress=False))
    assert report["drives"][1]["metrics"] == first["metrics"]
    assert report["drives"][1]["frames"]["scored"] == DRIVE_FRAMES[1]
    assert report["drives"][1]["valid_pixels"] == sum(first["error_by_distance"]["pixels"])

    # the same model as its own baseline: every difference is zero, and so is the interval
    comparison = report["comparison"]["metrics"]
    assert comparison["abs_rel"]["difference"] == 0.0 and comparison["abs_rel"]["interval"] == [0.0, 0.0]
    assert comparison["d1"]["drives"] == 3
    assert [v["regressed"] for v in report["gate"]] == [False, False]

    with open(tmp_path / "fleet" / "drives.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["abs_rel"]) for r in rows] == pytest.approx([d["metrics"]["abs_rel"] for d in report["drives"]],
                                                                rel=1e-12)
    assert [float(r["difference_abs_rel"]) for r in rows] == [0.0, 0.0, 0.0]
    markdown = (tmp_path / "fleet" / "report.md").read_text()
    assert "## Candidate against baseline" in markdown and "## Worst drives" in markdown
    for drive in report["drives"]:
        assert (tmp_path / "fleet" / drive["contact_sheet"]).stat().st_size > 1000
        assert drive["contact_sheet"] in markdown
    assert (tmp_path / "fleet" / "plots" / "candidate_vs_baseline_abs_rel.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_regressing_candidate_fails_the_gate_with_exit_code_3(tmp_path, drives, perturbed_model, capsys):
    """The demo model with noise on its weights as the candidate, the demo model itself as the baseline."""
    code = fleet(*drives["bags"][:2], "--model", perturbed_model, "--baseline", DEMO_MODEL, "--workers", 2,
                 "--samples", 0, "--gate", "abs_rel=0.002", "--gate", "d1=-0.005", "--gate", "rmse=1000",
                 "--out", tmp_path / "out")
    captured = capsys.readouterr()
    assert code == 3, captured.err
    report = json.loads((tmp_path / "out" / "fleet.json").read_text())
    comparison = report["comparison"]["metrics"]
    drives_ = report["drives"]
    for name in ("abs_rel", "d1"):
        row = comparison[name]
        # pooled over both drives' frames: frame-weighted means of the per-drive figures
        weights = [d["frames"]["scored"] for d in drives_]
        candidate = np.average([d["metrics"][name] for d in drives_], weights=weights)
        baseline = np.average([d["baseline"]["metrics"][name] for d in drives_], weights=weights)
        assert row["candidate"] == pytest.approx(candidate, rel=1e-12)
        assert row["difference"] == pytest.approx(candidate - baseline, rel=1e-9)
        assert row["interval"][0] <= row["difference"] <= row["interval"][1]
    assert comparison["abs_rel"]["difference"] > 0.002 and comparison["d1"]["difference"] < -0.005
    regress = [line for line in captured.err.splitlines() if "regress" in line]
    assert len(regress) == 2 and "gate abs_rel: regress" in regress[0] and "gate d1: regress" in regress[1]
    assert "gate rmse: pass" in captured.out


@pytest.mark.slow
def test_an_unreadable_drive_is_one_failed_row_and_the_others_go_on(tmp_path, drives, capsys):
    broken = tmp_path / "broken.bag"
    broken.write_bytes(b"#ROSBAG V2.0\nnot really a bag")
    listing = tmp_path / "drives.txt"
    listing.write_text(f"# two drives and a broken one\n{drives['bags'][1]}\n\n{broken}\n{drives['bags'][0]}\n")
    code = fleet(listing, "--model", DEMO_MODEL, "--workers", 1, "--samples", 0, "--out", tmp_path / "out")
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads((tmp_path / "out" / "fleet.json").read_text())
    assert [d["status"] for d in report["drives"]] == ["ok", "failed", "ok"]
    assert "broken.bag" in report["drives"][1]["failure"] and report["drives"][1]["failure"].startswith("BagError")
    assert f"drive failed: {broken}" in captured.err
    assert report["overall"]["drives"] == {"total": 3, "evaluated": 2, "failed": 1}
    assert report["overall"]["frames"]["scored"] == DRIVE_FRAMES[0] + DRIVE_FRAMES[1]
    with open(tmp_path / "out" / "drives.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["status"] == "failed" and "broken.bag" in rows[1]["failure"] and rows[1]["abs_rel"] == ""


@pytest.mark.slow
def test_a_worker_killed_mid_drive_is_retried_and_the_result_is_identical(tmp_path, capsys):
    """SIGKILL the process running a drive while it runs; Ray re-runs the drive and the figures do not change."""
    from training.data.synthetic import write_bag

    from icm_depth_ros.replay.bag_reader import TopicSelection
    from icm_depth_ros.replay.fleet import DriveResult, overall
    from icm_depth_ros.replay.offline import ReplayOptions, evaluate_drive
    from icm_depth_ros.replay.scoring import ReplayScorer

    bags = [write_bag(tmp_path / f"drive{i}", drive) for i, drive in enumerate(render_drives((20, 20), seed0=30))]
    killed = []

    def kill_the_first_drive_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for process in psutil.Process().children(recursive=True):
                try:
                    if process.cmdline() and process.cmdline()[0].startswith("ray::evaluate_fleet_drive"):
                        time.sleep(0.3)  # into the drive (the first one also loads the model, about 1 s)
                        if process.cmdline()[0].startswith("ray::evaluate_fleet_drive"):  # still in a drive
                            process.send_signal(signal.SIGKILL)
                            killed.append(process.pid)
                            return
                except psutil.Error:
                    continue
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_first_drive_worker)
    killer.start()
    code = fleet(*bags, "--model", DEMO_MODEL, "--workers", 1, "--samples", 0, "--out", tmp_path / "out")
    killer.join()
    assert killed, "no worker was seen running a drive"
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "fleet.json").read_text())
    assert [d["status"] for d in report["drives"]] == ["ok", "ok"]

    topics = TopicSelection("/camera/image_raw", "/camera/camera_info", "/camera/depth_gt", "")
    results = []
    for bag in bags:
        run = evaluate_drive(ReplayOptions(bag=str(bag), topics=topics, model_path=str(DEMO_MODEL), threads=1,
                                           progress=False))
        results.append(DriveResult(str(bag), frames=run.summary["frames"], totals=run.evaluation.scorer.totals))
        assert report["drives"][len(results) - 1]["metrics"] == run.summary["metrics"]
    expected = overall(results, ReplayScorer().bin_edges)
    assert report["overall"]["metrics"] == expected["metrics"]
    assert report["overall"]["error_by_distance"] == expected["error_by_distance"]


def as_a_foreground_job() -> None:
    """In the child, before it starts: SIGINT back to its default, as for a command typed at a terminal. A suite
    started as a background job (`cmd &`) passes SIGINT on ignored, and a program that inherits it ignored rightly
    keeps ignoring it (Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_says_how_many_drives_finished(tmp_path):
    """SIGINT to replay_fleet's process group (Ctrl-C) after the first drive finished: exit 130, a report of the
    finished drives, and no Ray process left."""
    from training.data.synthetic import write_bag

    frames = render_drives((30,), seed0=40)[0]
    listing = tmp_path / "drives.txt"
    listing.write_text("\n".join(str(write_bag(tmp_path / f"drive{i}", frames)) for i in range(4)) + "\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "icm_depth_ros.replay_fleet", str(listing), "--model", str(DEMO_MODEL), "--workers", "1",
         "--samples", "0", "--out", str(tmp_path / "out")], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env, start_new_session=True, preexec_fn=as_a_foreground_job)
    family = []
    try:
        seen = ""
        while "1/4" not in seen:  # tqdm's bar: one drive done
            chunk = process.stderr.read(1)
            assert chunk, f"replay_fleet ended early: {seen[-2000:]}"
            seen += chunk
        family = psutil.Process(process.pid).children(recursive=True)
        assert family, "Ray's processes should be running"
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group, Ray's processes too
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == 130, err
    assert "replay_fleet: interrupted:" in err
    report = json.loads((tmp_path / "out" / "fleet.json").read_text())
    finished = report["run"]["drives_finished"]
    assert 1 <= finished < 4 and report["run"]["interrupted"] is True
    assert f"interrupted: {finished} of 4 drives finished" in err
    assert len(report["drives"]) == finished
    time.sleep(2)
    assert [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


@pytest.mark.parametrize("arguments,message", [
    (["--model", "missing.onnx"], "--model missing.onnx: no such file"),
    (["--model", DEMO_MODEL, "--gate", "abs_rel=0.002"], "give --baseline"),
    (["--model", DEMO_MODEL, "--baseline", DEMO_MODEL, "--gate", "d1=0.005"], "d1 is higher-is-better"),
    (["--model", DEMO_MODEL, "--baseline", DEMO_MODEL, "--gate", "abs_rel=-0.1"], "abs_rel is lower-is-better"),
    (["--model", DEMO_MODEL, "--baseline", DEMO_MODEL, "--gate", "absrel=0.1"], "unknown metric 'absrel'"),
    (["--model", DEMO_MODEL, "--baseline", DEMO_MODEL, "--gate", "abs_rel"], "expected METRIC=DELTA"),
    (["--model", DEMO_MODEL, "--workers", "0"], "--workers 0: must be >= 1"),
    (["--model", DEMO_MODEL, "--max-depth", "0"], "depth range"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, drives, capsys, arguments, message):
    code = fleet(drives["bags"][0], *arguments, "--out", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("replay_fleet: error: ")


def test_drive_arguments_bags_folders_and_lists(tmp_path, drives, capsys):
    from icm_depth_ros.replay.drive_list import DriveListError, resolve_drives

    bags = drives["bags"]
    assert resolve_drives([str(drives["folder"])]) == bags
    listing = tmp_path / "list.txt"
    listing.write_text(f"# comment\n{bags[2]}\n\n{drives['folder']}\n")
    assert resolve_drives([str(listing)]) == [bags[2], bags[0], bags[1]]  # each drive once, first place kept
    (tmp_path / "relative").mkdir()
    (tmp_path / "relative" / "list.txt").write_text("../missing_bag\n")
    with pytest.raises(DriveListError, match=r"relative/list.txt line 1: .*missing_bag does not exist"):
        resolve_drives([str(tmp_path / "relative" / "list.txt")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DriveListError, match="holds no bag"):
        resolve_drives([str(tmp_path / "empty")])
    code = fleet(tmp_path / "empty", "--model", DEMO_MODEL, "--out", tmp_path / "out")
    assert code == 2 and "empty holds no bag" in capsys.readouterr().err


def test_node_and_replay_eval_import_without_ray():
    """Ray is imported by fleet_runner.py only: the node's and replay_eval's modules run without it."""
    code = ("import sys; sys.modules['ray'] = None\n"  # any `import ray` now raises ImportError
            "import icm_depth_ros.replay_eval, icm_depth_ros.depth_node, icm_depth_ros.replay.offline\n"
            "import icm_depth_ros.replay_fleet\n"
            "print('ok', 'ray' in sys.modules and sys.modules['ray'] is not None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["ok", "False"], result.stderr


def test_the_gate_rule_and_the_pooled_difference():
    """Hand-made totals of three drives: the comparison pools frames, the gate follows the documented rule."""
    from fractions import Fraction

    from scipy.stats import bootstrap

    from icm_depth_ros.replay.fleet import DriveResult, Gate, check_gates, compare, parse_gate
    from icm_depth_ros.replay.scoring import ScoreTotals

    def result(abs_rel_frames, d1_frames):
        totals = ScoreTotals()
        for abs_rel, d1 in zip(abs_rel_frames, d1_frames):
            totals.add_figures({"abs_rel": abs_rel, "d1": d1})
        return DriveResult("drive", frames={"read": len(abs_rel_frames)}, totals=totals)

    candidates = [result([0.10, 0.20], [0.9, 0.8]), result([0.30], [0.7]), result([0.10, 0.10, 0.10], [0.9, 0.9, 0.9])]
    baselines = [result([0.10, 0.10], [0.9, 0.9]), result([0.20], [0.8]), result([0.10, 0.10, 0.10], [0.9, 0.9, 0.9])]
    comparison = compare(candidates, baselines)
    row = comparison["metrics"]["abs_rel"]
    assert row["candidate"] == pytest.approx(0.9 / 6) and row["baseline"] == pytest.approx(0.7 / 6)
    assert row["difference"] == pytest.approx(0.2 / 6) and row["drives"] == 3
    sums = [np.array(v) for v in ([0.3, 0.3, 0.3], [2, 1, 3], [0.2, 0.2, 0.3], [2, 1, 3])]
    direct = bootstrap(sums, lambda a, b, c, d, axis=-1: a.sum(axis) / b.sum(axis) - c.sum(axis) / d.sum(axis),
                       paired=True, vectorized=True, method="percentile", n_resamples=9999, rng=0)
    assert row["interval"] == pytest.approx([direct.confidence_interval.low, direct.confidence_interval.high])
    assert comparison["metrics"]["d1"]["difference"] == pytest.approx((4.3 - 4.5) / 6)
    assert ScoreTotals(metric_sums={"abs_rel": Fraction(1, 3)}, metric_counts={"abs_rel": 1}).means() == {"abs_rel": 1 / 3}

    # abs_rel rose by 0.0333, d1 fell by 0.0333
    lines = {v.gate.metric + str(v.gate.allowed): (v.regressed, v.line()) for v in check_gates(
        [parse_gate("abs_rel=0.04"), parse_gate("abs_rel=0.03"), parse_gate("d1=-0.04"), parse_gate("d1=-0.03"),
         Gate("rmse", 0.1)], comparison)}
    assert lines["abs_rel0.04"][0] is False and lines["abs_rel0.03"][0] is True
    assert lines["d1-0.04"][0] is False and lines["d1-0.03"][0] is True
    assert "regress" in lines["abs_rel0.03"][1] and "regress" not in lines["abs_rel0.04"][1]
    assert lines["rmse0.1"] == (True, "gate rmse: regress (blocked): not measured on any drive both models scored")
    # a failed baseline drive leaves that drive out of the comparison
    baselines[1] = DriveResult("drive", failure="BagError: unreadable")
    assert compare(candidates, baselines)["metrics"]["abs_rel"]["difference"] == pytest.approx(0.6 / 5 - 0.5 / 5)


@pytest.mark.slow
def test_a_worker_fetches_the_model_once_and_keeps_its_pipeline(tmp_path, drives):
    """The task run in this process (as a worker runs it): the model comes from the object store once, is
    written once under its SHA-256, and the second drive reuses the loaded pipeline with the task's threads."""
    import hashlib

    import ray

    from icm_depth_ros.replay import fleet_runner
    from icm_depth_ros.replay.bag_reader import TopicSelection
    from icm_depth_ros.replay.offline import ReplayOptions

    data = DEMO_MODEL.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    options = ReplayOptions(bag="", topics=TopicSelection("/camera/image_raw", "/camera/camera_info",
                                                          "/camera/depth_gt", ""), threads=2, progress=False, samples=2)
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        handle = fleet_runner.ModelHandle("icm_demo.onnx", sha256, ".onnx", [ray.put(data)])
        fleet_runner._PIPELINES.clear()
        first = fleet_runner.evaluate_fleet_drive(str(drives["bags"][0]), options, {"candidate": handle},
                                                  "drives/a/contact_sheet.png", str(tmp_path))
        loaded = dict(fleet_runner._PIPELINES)
        second = fleet_runner.evaluate_fleet_drive(str(drives["bags"][1]), options, {"candidate": handle}, None,
                                                   str(tmp_path))
        after = dict(fleet_runner._PIPELINES)
    finally:
        ray.shutdown()
        fleet_runner._PIPELINES.clear()
    assert len(loaded) == 1 and list(loaded.values())[0].config.threads == 2
    assert after.keys() == loaded.keys() and all(after[key] is loaded[key] for key in loaded)  # not loaded again
    assert first["candidate"].ok and second["candidate"].ok
    assert first["candidate"].frames["scored"] == DRIVE_FRAMES[0] and second["candidate"].frames["scored"] == DRIVE_FRAMES[1]
    path = Path(list(loaded.values())[0].config.model_path)
    assert path.name == f"{sha256}.onnx" and path.read_bytes() == data
    assert first["candidate"].contact_sheet == "drives/a/contact_sheet.png"
    assert (tmp_path / "drives" / "a" / "contact_sheet.png").stat().st_size > 1000
    assert second["candidate"].contact_sheet is None


def test_instance_errors_by_class_where_the_instances_have_one():
    """summarize_totals: per band as before, and per class (class -1, unknown, left out) from the same rows."""
    from icm_depth_ros.replay.scoring import ReplayScorer, ScoreTotals, summarize_totals

    rows = [{"id": 1, "class": 2, "gt": 5.0, "pred": 6.0, "error": 1.0, "band": "0-10m"},
            {"id": 2, "class": 2, "gt": 15.0, "pred": 12.0, "error": -3.0, "band": "10-20m"},
            {"id": 3, "class": 7, "gt": 8.0, "pred": 8.4, "error": 0.4, "band": "0-10m"},
            {"id": 4, "class": -1, "gt": 30.0, "pred": 33.0, "error": 3.0, "band": "20-40m"}]
    summary = summarize_totals(ScoreTotals(instance_errors=rows), ReplayScorer().bin_edges)
    by_class = summary["instance_error_by_class"]
    assert set(by_class) == {"2", "7"}
    assert by_class["2"]["instances"] == 2 and by_class["2"]["mean_abs_error_m"] == pytest.approx(2.0)
    assert by_class["2"]["mean_error_m"] == pytest.approx(-1.0)
    assert by_class["2"]["abs_rel"] == pytest.approx((1 / 5 + 3 / 15) / 2)
    assert by_class["7"]["abs_rel"] == pytest.approx(0.05)
    assert summary["instance_error_by_distance"]["0-10m"]["instances"] == 2
    assert summary["instance_error_by_distance"]["20-40m"]["mean_error_m"] == pytest.approx(3.0)
    assert "instance_error_by_class" not in summarize_totals(ScoreTotals(instance_errors=rows[3:]), ReplayScorer().bin_edges)
