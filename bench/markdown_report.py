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
GOAL_P99_INFERENCES = 2.0  # real-time p99 latency <= 2 x one inference (bench/node_realtime.py)


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
    return lines + table(("bare inference ms", "overhead ms", "overhead", f"goal <= {GOAL_OVERHEAD_PCT:.0f} %"),
                         [(number(result["bare_inference_ms"]), number(result["overhead_ms"], ".2f"), f"{percent:.1f} %",
                           verdict(percent <= GOAL_OVERHEAD_PCT))])


def realtime_section(report: dict) -> list[str]:
    result, lines = result_of(report, "node_realtime")
    if result is None:
        return lines
    inference = result.get("inference_p50_ms_node")
    inference = float(inference) if inference not in (None, "") else None
    met = None if inference is None else result["latency_p99_ms"] <= GOAL_P99_INFERENCES * inference
    lines += [f"{result['frames_sent']} frames sent at {result['rate_hz']:g} Hz (1242x375 rgb8) to the depth node "
              f"(own process, ONNX Runtime).", ""]
    return lines + table(
        ("processed", "processed Hz", "dropped (node)", "latency p50 ms", "latency p99 ms", "inference p50 ms (node)",
         f"p99 <= {GOAL_P99_INFERENCES:g} x inference", "RSS start MiB", "RSS end MiB", "RSS peak MiB"),
        [(result["frames_published_by_node"], number(result["processed_rate_hz"]),
          "n/a" if result.get("dropped_frames_node") is None else result["dropped_frames_node"], number(result["latency_p50_ms"]),
          number(result["latency_p99_ms"]), number(inference), verdict(met), number(result["rss_start_mb"], ".0f"),
          number(result["rss_end_mb"], ".0f"), number(result.get("rss_peak_mb"), ".0f"))])


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
        if "rss_peak_mb" in result:
            rows.append((name, "depth node process", number(result["rss_peak_mb"], ".0f")))
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
    ("Real time: depth node fed at a fixed rate", realtime_section),
    ("ICM loss share of a training step", icm_share_section),
    ("Synthetic data rate", synthetic_section),
    ("Training throughput with and without the ICM terms", train_section),
    ("Memory (peak resident set size)", memory_section),
    ("Failures", failures_section),
)


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
