"""bench/run_all.py's report (a dict, as written to benchmarks.json) -> the Markdown summary benchmarks.md.

Report layout: {"mode", "command", "machine": {...}, "total_seconds", "benchmarks": {name: {"status": "ok" |
"failed", "command", "seconds", "load_average_before", "result": the script's --json object | "error",
"stderr_tail"}}}. A section whose benchmark failed or did not run says so instead of a table.
"""
from __future__ import annotations

INFERENCE_BACKENDS = {"pytorch_eager": "PyTorch eager", "onnxruntime_fp32": "ONNX Runtime fp32",
                      "onnxruntime_int8": "ONNX Runtime INT8"}
GOAL_OVERHEAD_PCT = 10.0  # node overhead <= 10 % of one inference (bench/node_overhead.py)
GOAL_ICM_SHARE_PCT = 10.0  # ICM terms <= 10 % of a training step (bench/icm_loss_share.py)
GOAL_SYNTHETIC_FPS = 10.0  # >= 10 rendered frames/s at 192 x 640 (bench/synthetic_rate.py)
GOAL_P50_MARGIN_MS = 5.0  # real time: latency p50 <= floor p50 + inference p50 + 5 ms (issue 13)
GOAL_P99_MARGIN_MS = 10.0  # p99 <= floor p99 + inference p99 + 10 ms
GOAL_PROCESSED_SHARE = 0.95  # processed >= 95 % of min(camera rate, 1 / inference)
GOAL_HEAVY_RATIO = 1.1  # 352x1216 ResNet-18: (latency - floor) / inference <= 1.1
GOAL_MULTI_RSS_RATIO = 1.3  # one process for 3 cameras: RSS <= 1.3 x one camera's node
GOAL_FLEET_SCALING = 1.7  # replay_fleet: --workers 2 >= 1.7 x the frames/s of --workers 1 (issue 23)
GOAL_FLEET_OVERHEAD = 0.10  # --workers 1 within 10 % of a plain loop's frames/s


def number(value, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "**not met**")


def result_of(report: dict, name: str) -> tuple[dict | None, list[str]]:
    """(the script's JSON, []) or (None, lines saying why there is none)."""
    entry = report["benchmarks"].get(name)
    if entry is None:
        return None, ["Not run.", ""]
    if entry["status"] != "ok":
        return None, [f"**FAILED** ({entry.get('error', 'unknown error')}); stderr below under *Failures*.", ""]
    return entry["result"], [f"`{entry['command']}` ({entry['seconds']:.0f} s, load average "
                             f"{entry['load_average_before']:.1f} before)", ""]


def inference_section(report: dict) -> list[str]:
    result, lines = result_of(report, "inference")
    if result is None:
        return lines
    lines.append(f"{result.get('weights', '')}; batch 1, {result['threads']} threads for every backend, median of "
                 f"{result['frames']} frames after {result['warmup']} warm-up.")
    lines.append("")
    for size, backends in result["sizes"].items():
        lines.append(f"**{size}** (export {number(backends.get('export_s'), '.0f')} s, "
                     f"INT8 calibration {number(backends.get('quantise_int8_s'), '.0f')} s)")
        lines.append("")
        rows = [(label, number(backends[key]["median_ms"]), number(backends[key]["p90_ms"]),
                 f"{backends[key]['speedup_vs_eager']:.2f}x", number(backends[key]["depth_rel_diff_vs_eager"], ".1e"))
                for key, label in INFERENCE_BACKENDS.items() if key in backends]
        lines += table(("backend", "ms/frame", "p90 ms", "speed-up vs eager", "depth rel. diff vs eager"), rows)
    return lines


def export_variants_section(report: dict) -> list[str]:
    result, lines = result_of(report, "export_variants")
    if result is None:
        return lines
    lines += [f"{result['weights']}; {result['scenes']} val scenes at {result['size']}, ONNX Runtime, "
              f"{result['threads']} threads.", ""]
    rows = [(name, number(v["mb"]), number(v["abs_rel"], ".4f"), number(v["d1"], ".4f"), number(v["rel_diff_vs_fp32"], ".2e"),
             f"{100 * v['same_cluster']:.1f}%", number(v["ms"]), f"{v['speedup_vs_fp32']:.2f}x")
            for name, v in result["variants"].items()]
    return lines + table(("variant", "MB", "abs_rel", "d1", "rel diff vs fp32", "same cluster", "ms/frame",
                          "speed-up vs fp32"), rows)


def node_overhead_section(report: dict) -> list[str]:
    result, lines = result_of(report, "node_overhead")
    if result is None:
        return lines
    percent = 100 * result["overhead_ratio"]
    lines += [f"Camera {result['camera']}, model input {result['model_input']}, {result['backend']}, "
              f"median of {result['frames']} frames.", ""]
    rows = [(stage, number(ms, ".2f")) for stage, ms in result["median_ms"].items()]
    lines += table(("stage", "median ms"), rows)
    lines += table(("bare inference ms", "overhead ms", "overhead", f"goal <= {GOAL_OVERHEAD_PCT:.0f} %"),
                   [(number(result["bare_inference_ms"]), number(result["overhead_ms"], ".2f"), f"{percent:.1f} %",
                     verdict(percent <= GOAL_OVERHEAD_PCT))])
    if "host_ms" not in result:  # runs from before issue 21
        return lines
    goals = result["goals_ms"]
    instances = result["median_ms"]["instances"]
    lines += [f"Model input {result['input_bytes']:,} bytes per frame ({result['pixel_format']}).", ""]
    return lines + table(("host stages (conversion + preprocess + postprocess + publish) ms", f"goal <= {goals['host']}",
                          "instances ms", f"goal <= {goals['instances']}"),
                         [(number(result["host_ms"], ".2f"), verdict(result["host_ms"] <= goals["host"]),
                           number(instances, ".2f"), verdict(instances <= goals["instances"]))])


def stage_overlap_section(report: dict) -> list[str]:
    result, lines = result_of(report, "stage_overlap")
    if result is None:
        return lines
    lines += [f"Camera {result['camera']}, model {result['model']}, engine simulated at {result['engine_ms']} ms per "
              f"frame (sleeping: the CPU is free, as with a GPU), the camera's slot never empty, {result['seconds']} s "
              "per mode.", ""]
    rows = [(mode, number(result[mode]["frames_per_s"], ".2f"), f"{100 * result[mode]['engine_busy']:.1f} %",
             number(result[mode]["host_ms_per_frame_outside_engine"], ".2f"))
            for mode in ("two stages", "three stages")]
    lines += table(("processing threads", "frames/s", "engine busy", "host ms per frame outside the engine"), rows)
    return lines + [f"Three stages against two: {result['speed_up']:.3f}x.", ""]


def resize_section(report: dict) -> list[str]:
    result, lines = result_of(report, "resize")
    if result is None:
        return lines
    rows = [(name, number(figures["median_ms"], ".3f"), number(figures["min_ms"], ".3f"))
            for name, figures in result.items() if isinstance(figures, dict) and "median_ms" in figures]
    return lines + table(("path", "median ms", "min ms"), rows)


def _float(value) -> float | None:
    """A figure from a script's JSON (the node's /diagnostics values arrive as strings)."""
    return None if value in (None, "") else float(value)


def realtime_goals(floor: dict, camera: dict, rate_hz: float) -> dict:
    """Issue 13's goals for one camera's figures against the echo floor measured in the same run.

    p50 <= floor p50 + inference p50 + 5 ms; p99 <= floor p99 + inference p99 + 10 ms; processed >= 95 % of
    min(camera rate, 1 / inference p50); heavy ratio (latency p50 - floor p50) / inference p50 (goal <= 1.1).
    """
    inference_p50, inference_p99 = _float(camera.get("node_inference_p50_ms")), _float(camera.get("node_inference_p99_ms"))
    p50, p99 = camera.get("latency_p50_ms"), camera.get("latency_p99_ms")
    if None in (inference_p50, inference_p99, p50, p99) or "latency_p50_ms" not in floor:
        return {"p50_bound_ms": None, "p99_bound_ms": None, "p50_met": None, "p99_met": None, "expected_share": None,
                "share_met": None, "heavy_ratio": None}
    p50_bound = floor["latency_p50_ms"] + inference_p50 + GOAL_P50_MARGIN_MS
    p99_bound = floor["latency_p99_ms"] + inference_p99 + GOAL_P99_MARGIN_MS
    expected_share = min(1.0, 1000.0 / inference_p50 / rate_hz)  # of the frames sent
    return {"p50_bound_ms": p50_bound, "p99_bound_ms": p99_bound, "p50_met": p50 <= p50_bound,
            "p99_met": p99 <= p99_bound, "expected_share": expected_share,
            "share_met": camera["processed_share"] >= GOAL_PROCESSED_SHARE * expected_share,
            "heavy_ratio": (p50 - floor["latency_p50_ms"]) / inference_p50}


def _camera_rows(result: dict, target: str, heavy: bool) -> list[tuple]:
    floor_cameras = result["targets"].get("echo", {}).get("cameras", {})
    rows = []
    for camera, figures in result["targets"][target]["cameras"].items():
        floor = floor_cameras.get(camera, {})
        goals = realtime_goals(floor, figures, result["rate_hz"]) if target != "echo" else {}
        rows.append((
            f"{target} {camera}".strip(), f"{figures['published']} / {figures['sent']}",
            number(figures.get("latency_p50_ms")), number(figures.get("latency_p99_ms")),
            number(figures.get("instances_latency_p50_ms")), number(figures.get("instances_latency_p99_ms")),
            number(_float(figures.get("node_inference_p50_ms"))), number(_float(figures.get("node_inference_p99_ms"))),
            "" if target == "echo" else f"{number(goals['p50_bound_ms'])}: {verdict(goals['p50_met'])}",
            "" if target == "echo" else f"{number(goals['p99_bound_ms'])}: {verdict(goals['p99_met'])}",
            "" if target == "echo" else (f"{number(None if goals['expected_share'] is None else 95 * goals['expected_share'], '.0f')} %: "
                                         f"{verdict(goals['share_met'])}"),
            "" if target == "echo" else number(goals["heavy_ratio"], ".2f") + (
                f": {verdict(None if goals['heavy_ratio'] is None else goals['heavy_ratio'] <= GOAL_HEAVY_RATIO)}"
                if heavy else ""),
        ))
    return rows


REALTIME_HEADER = ("target / camera", "published / sent", "depth p50 ms", "depth p99 ms", "instances p50 ms",
                   "instances p99 ms", "inference p50 ms", "inference p99 ms", "p50 goal <= ms", "p99 goal <= ms",
                   "processed goal >=", "(p50 - floor) / inference (heavy goal <= 1.1)")


def realtime_table(result: dict, heavy: bool = False) -> list[str]:
    rows = [row for target in result["targets"] for row in _camera_rows(result, target, heavy)]
    cameras = ", ".join(c or "(none)" for c in result["cameras"])
    lines = [f"{result['frames_per_camera']} frames per camera at {result['rate_hz']:g} Hz ({result['camera_size']} "
             f"rgb8; cameras: {cameras}), model `{result['model']}`; latency = image stamp -> arrival in the bench "
             f"process, after a 1 s warm-up; `echo` is the transport floor (bench/echo_node.py) measured in the same run. "
             f"Load average {result['load_average_start']:.1f} at start, {result['load_average_end']:.1f} at end.", ""]
    lines += table(REALTIME_HEADER, rows)
    lines += table(("target", "processes", "CPU s (all its processes)", "RSS after warm-up MiB", "RSS end MiB", "RSS peak MiB"),
                   [(target, figures["processes"], number(figures["cpu_s"]), number(figures["rss_start_mb"], ".0f"),
                     number(figures["rss_end_mb"], ".0f"), number(figures["rss_peak_mb"], ".0f"))
                    for target, figures in result["targets"].items()])
    return lines


def multicamera_goals(result: dict) -> dict:
    """One process for all cameras against one process per camera: frames, RSS (<= 1.3x one camera's node)."""
    targets = result["targets"]
    if "node" not in targets or "per_camera" not in targets:
        return {}
    node, per_camera = targets["node"], targets["per_camera"]
    processed = sum(c["published"] for c in node["cameras"].values())
    processed_separately = sum(c["published"] for c in per_camera["cameras"].values())
    one_camera_rss = per_camera["rss_end_mb"] / per_camera["processes"]
    return {"processed": processed, "processed_separately": processed_separately,
            "frames_met": processed >= processed_separately, "rss_mb": node["rss_end_mb"],
            "rss_bound_mb": GOAL_MULTI_RSS_RATIO * one_camera_rss,
            "rss_met": node["rss_end_mb"] <= GOAL_MULTI_RSS_RATIO * one_camera_rss,
            "cpu_s": node["cpu_s"], "cpu_s_separately": per_camera["cpu_s"]}


def realtime_section(report: dict, name: str = "node_realtime", heavy: bool = False) -> list[str]:
    result, lines = result_of(report, name)
    if result is None:
        return lines
    lines += realtime_table(result, heavy)
    goals = multicamera_goals(result)
    if goals:
        lines += table(("frames: one process", "frames: one per camera", ">= goal", "RSS one process MiB",
                        f"RSS goal <= {GOAL_MULTI_RSS_RATIO:g} x one camera's node", "CPU s one process", "CPU s one per camera"),
                       [(goals["processed"], goals["processed_separately"], verdict(goals["frames_met"]),
                         number(goals["rss_mb"], ".0f"), f"{number(goals['rss_bound_mb'], '.0f')}: {verdict(goals['rss_met'])}",
                         number(goals["cpu_s"]), number(goals["cpu_s_separately"]))])
    return lines


def instance_statistics_section(report: dict) -> list[str]:
    result, lines = result_of(report, "instance_statistics")
    if result is None:
        return lines
    # statistics cases count instances; the assignment regions case (since issue 21) counts regions, its own goal
    return lines + table(("case", "instances / regions", "new median ms", "new min ms", "previous median ms",
                          "previous min ms", "goal"),
                         [(name, f.get("instances", f.get("regions")), number(f["new_median_ms"], ".2f"),
                           number(f["new_min_ms"], ".2f"), number(f["previous_median_ms"], ".2f"),
                           number(f["previous_min_ms"], ".2f"),
                           f"<= {f.get('goal_ms', result['goal_ms']):g} ms: {verdict(f['goal_met'])}")
                          for name, f in result["cases"].items()])


def _share(figure: dict) -> str:
    return "n/a" if figure["within_one_std"] is None else f"{100 * figure['within_one_std']:.0f} % of {figure['frames']}"


def tracking_section(report: dict) -> list[str]:
    """bench/tracking.py: cost, then per chain identity, errors by band, standing objects and calibration."""
    result, lines = result_of(report, "tracking")
    if result is None:
        return lines
    cost, goals = result["cost"], result["goals"]
    lines += table(("instances", "median ms", "p90 ms", "p99 ms", f"goal: median <= {cost['goal_ms']:g} ms"),
                   [(cost["instances"], number(cost["median_ms"], ".3f"), number(cost["p90_ms"], ".3f"),
                     number(cost["p99_ms"], ".3f"), verdict(cost["goal_met"]))])
    lines += [f"Closing-object drives ({', '.join(f'{name} {frames}' for name, frames in result['scenarios'].items())} "
              f"frames at 10 Hz, {result['size']}, street seed {result['seed']}); node defaults unless named.", ""]
    chains = result["chains"]
    lines += table(("chain", "MOTA", "IDF1", "ID switches", "fragmentations", "actor ID switches",
                    "actor frames tracked", "standing: median / max abs range rate m/s"),
                   [(name, number(c["identity"]["mota"], ".3f"), number(c["identity"]["idf1"], ".3f"),
                     c["identity"]["num_switches"], c["identity"]["num_fragmentations"], c["identity"]["actor_switches"],
                     f"{c['identity']['actor_frames_tracked']} / {c['identity']['actor_frames_visible']}",
                     f"{number(c['standing']['abs_range_rate_median_mps'], '.2f')} / "
                     f"{number(c['standing']['abs_range_rate_max_mps'], '.2f')}") for name, c in chains.items()])
    lines += ["Closing objects (actors) by true range: median |range error| m, median |range-rate error| m/s, "
              "median relative time-to-contact error where the true time to contact is under 6 s (frames).", ""]
    bands = [band for band in next(iter(chains.values()))["errors"] if band != "all"]
    lines += table(("chain", *bands, "all: ttc error"),
                   [(name, *(f"{number(c['errors'][b]['range_abs_error_m'], '.2f')} / "
                             f"{number(c['errors'][b]['range_rate_abs_error_mps'], '.2f')} / "
                             f"{'n/a' if c['errors'][b]['ttc_relative_error'] is None else format(100 * c['errors'][b]['ttc_relative_error'], '.1f') + ' %'}"
                             f" ({c['errors'][b]['frames']})" for b in bands),
                     "n/a" if c["errors"]["all"]["ttc_relative_error"] is None
                     else f"{100 * c['errors']['all']['ttc_relative_error']:.1f} % ({c['errors']['all']['ttc_frames']})")
                    for name, c in chains.items()])
    lines += ["Calibration: the share of matched frames whose error lies within one stated standard deviation "
              "(a calibrated 1-sigma holds about 68 %).", ""]
    lines += table(("chain", "objects", "range", "range rate", "time to contact (true < 6 s)"),
                   [(name, group, _share(c["calibration"][group]["range"]), _share(c["calibration"][group]["range_rate"]),
                     _share(c["calibration"][group]["ttc"])) for name, c in chains.items() for group in ("actors", "all")])
    lines += table(("goal (ground-truth chain)", "met"),
                   [("tracking + kinematics <= 0.5 ms per frame, 64 instances", verdict(goals["cost"])),
                    ("median time-to-contact error <= 10 % (true ttc < 6 s)", verdict(goals["ttc_median_relative_error"])),
                    ("no ID switch of the closing objects", verdict(goals["no_actor_id_switch"])),
                    ("standing objects: abs range rate < 0.5 m/s", verdict(goals["standing_rate"]))])
    return lines


def ort_spinning_section(report: dict) -> list[str]:
    result, lines = result_of(report, "ort_spinning")
    if result is None:
        return lines
    return lines + table(("ONNX Runtime setting", "inference alone ms", "inference beside ms", "inferences/s",
                          "instance statistics beside ms", "statistics/s"),
                         [(name, number(f["inference_alone_ms"]), number(f["inference_beside_ms"]),
                           number(f["inference_per_s"]), number(f["instances_beside_ms"]), number(f["instances_per_s"]))
                          for name, f in result["settings"].items()])


def realtime_heavy_section(report: dict) -> list[str]:
    return realtime_section(report, "node_realtime_heavy", heavy=True)


def realtime_multicamera_section(report: dict) -> list[str]:
    return realtime_section(report, "node_multicamera")


def realtime_batched_section(report: dict) -> list[str]:
    return realtime_section(report, "node_multicamera_batched")


def node_transport_section(report: dict) -> list[str]:
    """bench/node_transport.py: one row per transport set-up."""
    result, lines = result_of(report, "node_transport")
    if result is None:
        return lines
    rows = []
    for name, entry in result["scenarios"].items():
        peer = entry.get("udp_peer_received")
        rows.append((name, entry["camera_profile"], entry["camera_publisher_qos"], entry["frames_sent"],
                     entry.get("received_by_node", entry.get("received")), number(entry["delivered_fraction"], ".1%"),
                     entry.get("answered", "-"), entry.get("dropped_in_slot", "-"),
                     f"{number(entry['latency_p50_ms'])} / {number(entry.get('latency_p99_ms'))}",
                     f"{peer['depth/image']} ({number(entry['udp_peer_fraction_of_processed'], '.0%')})" if peer else "-"))
    return lines + table(("set-up", "camera transport", "camera QoS", "sent", "received", "delivered", "answered",
                          "dropped in slot", "latency p50 / p99 ms", "UDP-only peer got (of processed)"), rows)


def icm_share_section(report: dict) -> list[str]:
    result, lines = result_of(report, "icm_loss_share")
    if result is None:
        return lines
    lines += [f"{result['encoder']}, batch {result['batch']}, {result['size']}, {result['threads']} threads.", ""]
    return lines + table(
        ("step ms", "ICM terms ms", "ICM share", "step without ICM ms", "share by difference",
         f"goal <= {GOAL_ICM_SHARE_PCT:.0f} %"),
        [(number(1000 * result["step_s"]), number(1000 * result["icm_terms_s"]), f"{result['icm_share_pct']:.2f} %",
          number(1000 * result["step_without_icm_s"]), f"{result['icm_share_by_difference_pct']:.2f} %",
          verdict(result["icm_share_pct"] <= GOAL_ICM_SHARE_PCT))])


def synthetic_section(report: dict) -> list[str]:
    result, lines = result_of(report, "synthetic_rate")
    if result is None:
        return lines
    met = result["frames_per_s"] >= GOAL_SYNTHETIC_FPS if result["size"] == "192x640" else None
    return lines + table(
        ("mode", "size", "frames", "frames/s", "frames per CPU-second", f"goal >= {GOAL_SYNTHETIC_FPS:g}/s at 192x640"),
        [(result["mode"], result["size"], result["frames"], number(result["frames_per_s"]),
          number(result["frames_per_cpu_s"]), verdict(met))])


def replay_fleet_section(report: dict) -> list[str]:
    """bench/replay_fleet.py: the plain loop and each Ray run, with the two scale goals."""
    result, lines = result_of(report, "replay_fleet")
    if result is None:
        return lines
    lines += [f"{result['drives']} synthetic drives x {result['frames_per_drive']} frames at {result['size']}, "
              f"`{result['model']}`, 1 CPU (1 ONNX Runtime thread) per drive.", ""]
    loop_fps = result["results"]["loop"]["frames_per_s"]
    rows = []
    for name, entry in result["results"].items():
        after_start = entry.get("frames_per_s_after_start")
        rows.append((name, entry["cpus"], number(entry["wall_s"]), number(entry.get("ray_startup_s")),
                     number(entry["frames_per_s"], ".2f"), number(after_start, ".2f"),
                     f"{entry['frames_per_s'] / loop_fps:.2f}x", number(entry["cpu_s_per_drive_minute"])))
    lines += table(("run", "CPUs", "wall s", "Ray start s", "frames/s", "frames/s without Ray's start", "vs loop",
                    "CPU-s per drive-minute"), rows)
    goals = []
    if "scaling_2_over_1" in result:
        goals.append((f"workers 2 / workers 1 >= {GOAL_FLEET_SCALING:g}x", f"{result['scaling_2_over_1']:.2f}x",
                      verdict(result["scaling_2_over_1"] >= GOAL_FLEET_SCALING)))
    if "ray_overhead" in result:
        goals.append((f"workers 1 within {GOAL_FLEET_OVERHEAD:.0%} of the loop", _slower(result["ray_overhead"]),
                      verdict(result["ray_overhead"] <= GOAL_FLEET_OVERHEAD)))
        goals.append(("the same without Ray's start", _slower(result["ray_overhead_after_start"]),
                      verdict(result["ray_overhead_after_start"] <= GOAL_FLEET_OVERHEAD)))
    return lines + table(("goal", "measured", ""), goals)


def _slower(fraction: float) -> str:
    """1 - (frames/s) / (the loop's frames/s) -> '12.0% slower' or '3.0% faster'."""
    return f"{fraction:.1%} slower" if fraction >= 0 else f"{-fraction:.1%} faster"


def train_section(report: dict) -> list[str]:
    result, lines = result_of(report, "train_throughput")
    if result is None:
        return lines
    lines += [f"{result['encoder']} at {result['size']}, batch {result['batch']}, {result['threads']} threads, "
              f"median of {result['steps']} optimiser steps.", ""]
    rows = [(v["description"], number(v["images_per_s"], ".2f"), number(v["step_s"], ".2f")) for v in result["variants"].values()]
    variants = result["variants"]
    if "silog_only" in variants and "silog_icm" in variants:
        cost = variants["silog_icm"]["step_s"] / variants["silog_only"]["step_s"]
        rows.append(("step time with ICM / without", f"{cost:.2f}x", ""))
    return lines + table(("variant", "images/s", "s/step"), rows)


def memory_section(report: dict) -> list[str]:
    rows = []
    for name, entry in report["benchmarks"].items():
        result = entry.get("result") or {}
        if "peak_rss_mb" in result:
            rows.append((name, "benchmark process", number(result["peak_rss_mb"], ".0f")))
        for target, figures in result.get("targets", {}).items():
            rows.append((name, f"{target} ({figures['processes']} process{'es' if figures['processes'] > 1 else ''})",
                         number(figures["rss_peak_mb"], ".0f")))
    return table(("benchmark", "process", "peak RSS MiB"), rows) if rows else ["No memory figures.", ""]


def failures_section(report: dict) -> list[str]:
    lines = []
    for name, entry in report["benchmarks"].items():
        if entry["status"] != "ok":
            lines += [f"### {name}: {entry.get('error', 'failed')}", "", f"`{entry['command']}`", "", "```",
                      entry.get("stderr_tail", "").rstrip(), "```", ""]
    return lines or ["None.", ""]


SECTIONS = (
    ("Inference per frame: PyTorch eager, ONNX Runtime fp32, ONNX Runtime INT8", inference_section),
    ("Export variants: accuracy and speed (fp32 / fp16 / INT8)", export_variants_section),
    ("Node overhead", node_overhead_section),
    ("Model input shrink: cv2 INTER_AREA against the compiled kernel", resize_section),
    ("Processing stages around a simulated GPU engine", stage_overlap_section),
    ("Instance statistics, 64 instances at 1242x375", instance_statistics_section),
    ("ONNX Runtime threads beside the node's instance thread", ort_spinning_section),
    ("Tracking and kinematics: cost, closing-object drives, calibration", tracking_section),
    ("Real time: one camera at 30 Hz against the transport floor", realtime_section),
    ("Real time, heavy case: 352x1216 ResNet-18 (random weights)", realtime_heavy_section),
    ("Several cameras: one process for all against one process per camera", realtime_multicamera_section),
    ("Several cameras, dynamic batch: one inference for the cameras' waiting frames (demo network, random weights)",
     realtime_batched_section),
    ("Transport: 1242x375 frames at 30 Hz per Fast DDS set-up", node_transport_section),
    ("ICM loss share of a training step", icm_share_section),
    ("Synthetic data rate", synthetic_section),
    ("Fleet replay on Ray: scale against a plain loop", replay_fleet_section),
    ("Training throughput with and without the ICM terms", train_section),
    ("Memory (peak resident set size)", memory_section),
    ("Failures", failures_section),
)


def render_realtime_summary(report: dict) -> str:
    """The real-time sections alone (floor, one camera, heavy case, several cameras), for docs/benchmarks.md."""
    machine = report["machine"]
    lines = [f"## Real time and several cameras ({report['mode']} run of `{report['command']}`, {machine['date']}, "
             f"commit {machine['git_commit']})", "",
             f"{machine['cpu']} ({machine['cores']} cores); load average at start "
             f"{', '.join(f'{v:.2f}' for v in machine['load_average_start'])}. Full report: "
             "[bench_report/benchmarks.md](bench_report/benchmarks.md).", ""]
    for title, section in SECTIONS:
        if section in (instance_statistics_section, ort_spinning_section, realtime_section, realtime_heavy_section,
                       realtime_multicamera_section, realtime_batched_section):
            lines += [f"### {title}", "", *section(report)]
    return "\n".join(lines).rstrip() + "\n"


def render_tracking_summary(report: dict) -> str:
    """The tracking section alone, for docs/benchmarks.md."""
    machine = report["machine"]
    lines = [f"## Tracking and kinematics ({report['mode']} run of `{report['command']}`, {machine['date']}, "
             f"commit {machine['git_commit']})", "",
             f"{machine['cpu']} ({machine['cores']} cores, shared with other engineers' jobs); load average at start "
             f"{', '.join(f'{v:.2f}' for v in machine['load_average_start'])}. Script: `bench/tracking.py`.", "",
             *tracking_section(report)]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [f"# Benchmarks ({report['mode']} run, {machine['date']})", "",
             f"`{report['command']}`: {len(report['benchmarks'])} benchmarks in {report.get('total_seconds', 0):.0f} s, "
             "each a separate process, one after another.", ""]
    if report["mode"] == "quick":
        lines += ["**Quick run**: few frames and steps, smaller sizes for the node overhead, ICM share, export "
                  "variants and training benchmarks (arguments under each section); figures are indicative only.", ""]
    lines += table(("machine", ""), [
        ("CPU", f"{machine['cpu']} ({machine['cores']} cores)"), ("memory", f"{machine['memory_gib']} GiB"),
        ("load average at start (1, 5, 15 min)", ", ".join(f"{v:.2f}" for v in machine["load_average_start"])),
        ("load average at end", ", ".join(f"{v:.2f}" for v in machine.get("load_average_end", [])) or "n/a"),
        ("torch / onnxruntime", f"{machine['torch']} / {machine['onnxruntime']}"),
        ("Python, platform", f"{machine['python']}, {machine['platform']}"), ("git commit", machine["git_commit"]),
    ])
    for title, section in SECTIONS:
        lines += [f"## {title}", "", *section(report)]
    return "\n".join(lines).rstrip() + "\n"
