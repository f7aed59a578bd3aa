"""bench/run_all.py: the Markdown report from canned benchmark JSON, failure handling, and one tiny real
bench/inference.py --json run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from markdown_report import render_markdown  # noqa: E402
from run_all import run_benchmark  # noqa: E402

MACHINE = {"date": "2026-01-01T00:00:00+00:00", "cores": 2, "cpu": "Test CPU", "memory_gib": 8.0,
           "load_average_start": [0.5, 0.4, 0.3], "load_average_end": [1.0, 0.9, 0.8], "python": "3.11.7",
           "platform": "Linux", "torch": "2.0", "onnxruntime": "1.17", "git_commit": "abc1234"}


def ok(result: dict) -> dict:
    return {"status": "ok", "command": "python bench/x.py --json", "seconds": 12.0, "load_average_before": 0.5,
            "result": result}


def inference_size(eager: float, fp32: float, int8: float) -> dict:
    def backend(ms: float) -> dict:
        return {"median_ms": ms, "min_ms": ms, "p90_ms": ms + 1, "speedup_vs_eager": eager / ms,
                "depth_rel_diff_vs_eager": 1e-7}

    return {"pytorch_eager": backend(eager), "onnxruntime_fp32": backend(fp32), "onnxruntime_int8": backend(int8),
            "export_s": 3.0, "quantise_int8_s": 5.0, "peak_rss_mb_so_far": 900.0}


def realtime_result(targets, floor, latency, inference, cameras=None, rate=30.0) -> dict:
    """bench/node_realtime.py's JSON: the echo floor and each target with the same figures on every camera."""
    names = cameras or [""]

    def camera(p50, p99, extra=None):
        return {"sent": 270, "published": 200, "processed_share": 200 / 270, "latency_p50_ms": p50,
                "latency_p99_ms": p99, **(extra or {})}

    node_figures = {"node_inference_p50_ms": inference[0], "node_inference_p99_ms": inference[1],
                    "instances_latency_p50_ms": latency[0] + 9, "instances_latency_p99_ms": latency[1] + 9}
    result = {"model": "m.onnx", "camera_size": "375x1242", "rate_hz": rate, "frames_per_camera": 300,
              "cameras": names, "node_parameters": [], "load_average_start": 0.5, "load_average_end": 0.7,
              "targets": {"echo": {"processes": 1, "cpu_s": 1.0, "rss_start_mb": 100.0, "rss_end_mb": 100.0,
                                   "rss_peak_mb": 101.0, "cameras": {n: camera(*floor) for n in names}}}}
    for target in targets:
        processes = len(names) if target == "per_camera" else 1
        result["targets"][target] = {"processes": processes, "cpu_s": 5.0 * processes, "rss_start_mb": 300.0 * processes,
                                     "rss_end_mb": 300.0 * processes, "rss_peak_mb": 333.0 * processes,
                                     "cameras": {n: camera(*latency, node_figures) for n in names}}
    return result


CANNED = {
    "mode": "full", "command": "python bench/run_all.py", "total_seconds": 600.0, "machine": MACHINE,
    "benchmarks": {
        "inference": ok({"weights": "random ResNet-18 weights (seed 0)", "threads": 2, "frames": 20, "warmup": 2,
                         "sizes": {"192x640": inference_size(100.0, 50.0, 25.0),
                                   "352x1216": inference_size(400.0, 160.0, 100.0)},
                         "peak_rss_mb": 1234.0}),
        "node_overhead": ok({"camera": "1242x375", "model_input": "352x1216", "backend": "onnxruntime", "frames": 20,
                             "median_ms": {"conversion": 0.1, "preprocess": 2.0, "inference": 200.0},
                             "bare_inference_ms": 200.0, "overhead_ms": 12.0, "overhead_ratio": 0.06,
                             "peak_rss_mb": 800.0}),
        "node_overhead_pixels": ok({"camera": "1242x375", "model_input": "352x1216", "backend": "onnxruntime",
                                    "frames": 20, "median_ms": {"conversion": 0.1, "preprocess": 0.9, "inference": 500.0,
                                                                "postprocess": 0.9, "instances": 4.2, "publish": 1.1},
                                    "bare_inference_ms": 500.0, "overhead_ms": 7.2, "overhead_ratio": 0.0144,
                                    "host_ms": 3.0, "goals_ms": {"host": 3.0, "instances": 4.0},
                                    "pixel_format": "rgb_uint8_nhwc", "input_bytes": 1284096, "peak_rss_mb": 800.0}),
        "stage_overlap": ok({"camera": "1242x375", "model": "352x1216", "engine_ms": 25.0, "seconds": 8.0,
                             "two stages": {"frames_per_s": 31.0, "engine_busy": 0.775,
                                            "host_ms_per_frame_outside_engine": 7.26, "rejected": 0},
                             "three stages": {"frames_per_s": 34.5, "engine_busy": 0.8625,
                                              "host_ms_per_frame_outside_engine": 3.99, "rejected": 0},
                             "speed_up": 1.113, "peak_rss_mb": 700.0}),
        "instance_statistics": ok({"image": "1242x375", "repeats": 30, "goal_ms": 2.0, "cases": {
            "clusters": {"instances": 64, "new_median_ms": 0.77, "new_min_ms": 0.75, "previous_median_ms": 10.9,
                         "previous_min_ms": 10.3, "goal_met": True},
            "assignment regions 88x304": {"clusters": 32, "regions": 64, "goal_ms": 0.3, "new_median_ms": 0.17,
                                          "new_min_ms": 0.16, "previous_median_ms": 3.9, "previous_min_ms": 3.8,
                                          "goal_met": True}}}),
        "node_realtime": ok(realtime_result(["node"], floor=(5.0, 6.0), latency=(14.0, 30.0), inference=(8.0, 12.0))),
        "node_multicamera": ok(realtime_result(["node", "per_camera"], floor=(5.0, 8.0), latency=(20.0, 60.0),
                                               inference=(10.0, 30.0), cameras=["front", "left"], rate=10.0)),
        "icm_loss_share": ok({"encoder": "resnet18", "batch": 4, "size": "192x640", "threads": 2, "step_s": 2.0,
                              "icm_terms_s": 0.1, "step_without_icm_s": 1.9, "icm_share_pct": 5.0,
                              "icm_share_by_difference_pct": 5.0, "peak_rss_mb": 1500.0}),
        "synthetic_rate": ok({"mode": "scenes", "size": "192x640", "frames": 40, "frames_per_s": 12.5,
                              "frames_per_cpu_s": 14.0, "peak_rss_mb": 300.0}),
        "replay_fleet": ok({"drives": 8, "frames_per_drive": 100, "size": "192x640", "model": "m.onnx", "cores": 2,
                            "results": {"loop": {"cpus": 1, "wall_s": 40.0, "frames_per_s": 20.0, "cpu_s_per_drive_minute": 30.0},
                                        "workers_1": {"cpus": 1, "wall_s": 50.0, "ray_startup_s": 4.0, "frames_per_s": 16.0,
                                                      "frames_per_s_after_start": 17.391, "cpu_s_per_drive_minute": 37.5},
                                        "workers_2": {"cpus": 2, "wall_s": 27.0, "ray_startup_s": 4.0, "frames_per_s": 29.63,
                                                      "frames_per_s_after_start": 34.783, "cpu_s_per_drive_minute": 40.5}},
                            "ray_overhead": 0.2, "ray_overhead_after_start": 0.1304, "scaling_2_over_1": 1.852,
                            "peak_rss_mb": 900.0}),
        "train_throughput": {"status": "failed", "command": "python bench/train_throughput.py --json", "seconds": 3.0,
                             "load_average_before": 0.5, "error": "exit status 1",
                             "stderr_tail": "RuntimeError: out of memory"},
    },
}


def test_markdown_has_every_section_with_its_figures():
    markdown = render_markdown(CANNED)
    assert "# Benchmarks (full run, 2026-01-01T00:00:00+00:00)" in markdown
    assert "| CPU | Test CPU (2 cores) |" in markdown
    assert "| torch / onnxruntime | 2.0 / 1.17 |" in markdown
    # inference: one table per size, speed-up against eager
    assert "**192x640**" in markdown and "**352x1216**" in markdown
    assert "| ONNX Runtime fp32 | 50.0 | 51.0 | 2.00x | 1.0e-07 |" in markdown
    assert "| ONNX Runtime INT8 | 100.0 | 101.0 | 4.00x | 1.0e-07 |" in markdown
    assert "| PyTorch eager | 400.0 | 401.0 | 1.00x |" in markdown
    # node overhead 6 % against a 10 % goal; real time p99 70 ms > 2 x 30 ms inference
    assert "| 200.0 | 12.00 | 6.0 % | met |" in markdown
    # issue 21's host goals: 3.0 <= 3.0 met, instances 4.2 > 4.0 not met; the simulated-engine stages
    overhead = render_markdown({**CANNED, "benchmarks": {"node_overhead": CANNED["benchmarks"]["node_overhead_pixels"]}})
    assert "Model input 1,284,096 bytes per frame (rgb_uint8_nhwc)." in overhead
    assert "| 3.00 | met | 4.20 | **not met** |" in overhead
    assert "| two stages | 31.00 | 77.5 % | 7.26 |" in markdown and "| three stages | 34.50 | 86.2 % | 3.99 |" in markdown
    assert "Three stages against two: 1.113x." in markdown
    assert "| clusters | 64 | 0.77 | 0.75 | 10.90 | 10.30 | <= 2 ms: met |" in markdown
    assert "| assignment regions 88x304 | 64 | 0.17 | 0.16 | 3.90 | 3.80 | <= 0.3 ms: met |" in markdown
    # real time: p50 14 <= 5 + 8 + 5, p99 30 > 6 + 12 + 10; 200 of 270 frames < 95 % of min(30 Hz, 1 / 8 ms)
    assert ("| node | 200 / 270 | 14.0 | 30.0 | 23.0 | 39.0 | 8.0 | 12.0 | 18.0: met | 28.0: **not met** | "
            "95 %: **not met** | 1.12 |") in markdown
    assert "| echo | 200 / 270 | 5.0 | 6.0 |" in markdown
    # several cameras: 400 frames either way; one process 300 MiB <= 1.3 x (600 / 2)
    assert "| node front | 200 / 270 | 20.0 | 60.0 |" in markdown and "| per_camera left | 200 / 270 |" in markdown
    assert "| 400 | 400 | met | 300 | 390: met | 5.0 | 10.0 |" in markdown
    assert "| 2000.0 | 100.0 | 5.00 % | 1900.0 | 5.00 % | met |" in markdown
    assert "| scenes | 192x640 | 40 | 12.5 | 14.0 | met |" in markdown
    # fleet replay: 29.63 / 16 = 1.85x >= 1.7 met; workers 1 at 80 % of the loop (20 % slower) not met
    assert "| workers_1 | 1 | 50.0 | 4.0 | 16.00 | 17.39 | 0.80x | 37.5 |" in markdown
    assert "| workers 2 / workers 1 >= 1.7x | 1.85x | met |" in markdown
    assert "| workers 1 within 10% of the loop | 20.0% slower | **not met** |" in markdown
    assert "| the same without Ray's start | 13.0% slower | **not met** |" in markdown
    faster = {**CANNED["benchmarks"]["replay_fleet"]["result"], "ray_overhead": -0.023}
    report = {**CANNED, "benchmarks": {"replay_fleet": ok(faster)}}
    assert "| workers 1 within 10% of the loop | 2.3% faster | met |" in render_markdown(report)
    # memory gathers every process's peak
    assert "| inference | benchmark process | 1234 |" in markdown
    assert "| node_realtime | node (1 process) | 333 |" in markdown
    assert "| node_multicamera | per_camera (2 processes) | 666 |" in markdown
    # the failed benchmark: marked in its section, stderr under Failures
    train = markdown.split("## Training throughput")[1].split("## Memory")[0]
    assert "**FAILED** (exit status 1)" in train
    assert "### train_throughput: exit status 1" in markdown and "RuntimeError: out of memory" in markdown


def test_quick_run_is_labelled_and_missing_benchmarks_are_not_run():
    report = {**CANNED, "mode": "quick", "benchmarks": {"synthetic_rate": CANNED["benchmarks"]["synthetic_rate"]}}
    markdown = render_markdown(report)
    assert "**Quick run**" in markdown
    assert markdown.split("## Node overhead")[1].split("##")[0].strip() == "Not run."
    assert markdown.split("## Failures")[1].strip() == "None."


def test_failing_script_is_reported_with_its_stderr(tmp_path, monkeypatch):
    import run_all

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "broken.py").write_text("import sys\nprint('partial output')\nsys.exit('broken benchmark: bad input')\n")
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    entry = run_benchmark("broken", "broken.py", [], time_limit_s=30)
    assert entry["status"] == "failed" and entry["error"] == "exit status 1"
    assert "broken benchmark: bad input" in entry["stderr_tail"]


def test_run_all_rejects_an_unknown_benchmark():
    finished = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--only", "nonsense"],
                              capture_output=True, text=True, cwd=ROOT)
    assert finished.returncode == 2 and "invalid choice" in finished.stderr


@pytest.mark.slow
def test_inference_json_tiny_run():
    finished = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inference.py"), "--sizes", "64x192", "--frames", "2", "--warmup", "0",
         "--calib-scenes", "1", "--threads", "1", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout)  # stdout is exactly one JSON object
    assert report["threads"] == 1 and report["frames"] == 2 and list(report["sizes"]) == ["64x192"]
    size = report["sizes"]["64x192"]
    for backend in ("pytorch_eager", "onnxruntime_fp32", "onnxruntime_int8"):
        assert size[backend]["median_ms"] > 0 and size[backend]["speedup_vs_eager"] > 0
    assert size["pytorch_eager"]["speedup_vs_eager"] == 1.0
    assert size["onnxruntime_fp32"]["depth_rel_diff_vs_eager"] < 1e-4  # same graph, same weights
    assert report["peak_rss_mb"] > 100


def test_summary_block_is_replaced_between_the_markers(tmp_path):
    from markdown_report import render_realtime_summary
    from run_all import SUMMARY_BEGIN, SUMMARY_END, update_summary

    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nHand-written section.\n")
    update_summary(page, "first")
    update_summary(page, render_realtime_summary(CANNED))
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written section.\n") and text.count(SUMMARY_BEGIN) == 1
    block = text.split(SUMMARY_BEGIN)[1].split(SUMMARY_END)[0]
    assert "first" not in block and "### Real time: one camera at 30 Hz against the transport floor" in block
    assert "### Several cameras: one process for all against one process per camera" in block
    assert "352x1216 ResNet-18 (random weights)\n\nNot run." in block and "| clusters | 64 | 0.77 |" in block


def test_empty_summary_writes_the_report_and_no_page(tmp_path, monkeypatch):
    import run_all

    page = tmp_path / "page.md"
    monkeypatch.setattr(run_all, "run_benchmark", lambda name, *args: CANNED["benchmarks"][name])
    monkeypatch.setattr(run_all, "machine_facts", lambda: dict(MACHINE))
    assert run_all.main(["--only", "node_realtime", "--out", str(tmp_path / "out"), "--summary", ""]) == 0
    assert "| node_realtime | node (1 process) |" in (tmp_path / "out" / "benchmarks.md").read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no page written, no crash on Path("")
    assert run_all.main(["--only", "node_realtime", "--out", str(tmp_path / "out"), "--summary", str(page)]) == 0
    assert "### Real time: one camera at 30 Hz" in page.read_text()


def tracking_chain(ttc_error: float, switches: int, rate_share: float) -> dict:
    band = {"frames": 10, "range_abs_error_m": 0.5, "range_rate_abs_error_mps": 0.25, "ttc_frames": 8,
            "ttc_relative_error": ttc_error}
    share = {"frames": 100, "within_one_std": rate_share}
    return {"identity": {"mota": 0.9, "idf1": 0.8, "num_switches": switches, "num_fragmentations": 1,
                         "actor_switches": switches, "actor_frames_tracked": 90, "actor_frames_visible": 100},
            "errors": {"0-10 m": band, "10-20 m": band, "20-40 m": band, "40-80 m": band,
                       "all": {"frames": 40, "ttc_frames": 32, "ttc_relative_error": ttc_error}},
            "standing": {"frames": 20, "abs_range_rate_median_mps": 0.1, "abs_range_rate_max_mps": 0.3},
            "calibration": {group: {"range": share, "range_rate": share, "ttc": share} for group in ("actors", "all")}}


TRACKING = {"cost": {"instances": 64, "frames": 300, "median_ms": 0.41, "p90_ms": 0.6, "p99_ms": 1.2, "goal_ms": 0.5,
                     "goal_met": True},
            "size": "192x640", "seed": 0, "scenarios": {"lead_braking": 45, "standing": 20},
            "chains": {"ground-truth": tracking_chain(0.04, 0, 0.7), "model": tracking_chain(0.25, 2, 0.3)},
            "goals": {"cost": True, "ttc_median_relative_error": True, "no_actor_id_switch": True, "standing_rate": True}}


def test_tracking_section_and_its_own_block_in_the_summary_page(tmp_path):
    from markdown_report import render_tracking_summary
    from run_all import SUMMARY_BEGIN, TRACKING_BEGIN, TRACKING_END, update_summary

    report = {**CANNED, "benchmarks": {"tracking": ok(TRACKING)}}
    markdown = render_markdown(report)
    assert "| 64 | 0.410 | 0.600 | 1.200 | met |" in markdown
    assert "| ground-truth | 0.900 | 0.800 | 0 | 1 | 0 | 90 / 100 | 0.10 / 0.30 |" in markdown
    assert "| model | 0.50 / 0.25 / 25.0 % (10) | 0.50 / 0.25 / 25.0 % (10) |" in markdown
    assert "| model | actors | 30 % of 100 | 30 % of 100 | 30 % of 100 |" in markdown
    assert "| median time-to-contact error <= 10 % (true ttc < 6 s) | met |" in markdown
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\n{SUMMARY_BEGIN}\nreal-time tables\n<!-- end of bench/run_all.py tables -->\n")
    update_summary(page, render_tracking_summary(report), TRACKING_BEGIN, TRACKING_END)
    update_summary(page, render_tracking_summary(report), TRACKING_BEGIN, TRACKING_END)
    text = page.read_text()
    assert "real-time tables" in text and text.count(TRACKING_BEGIN) == 1  # the real-time block is left alone
    assert "## Tracking and kinematics (full run of `python bench/run_all.py`" in text
