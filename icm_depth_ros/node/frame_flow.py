"""Real-time bookkeeping for the node, free of ROS: rate/latency statistics and a per-problem log throttle.

The hand-over of frames to the inference thread (latest-frame slots, one per camera) is frame_scheduler.py.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class FrameStatistics:
    """Counts and timings for /diagnostics. Thread-safe; windows are bounded (memory stays flat)."""

    def __init__(self, window: int = 1000, rate_window_s: float = 5.0):
        self._lock = threading.Lock()
        self._inputs: deque[float] = deque(maxlen=window)  # monotonic arrival times
        self._outputs: deque[float] = deque(maxlen=window)
        self._latencies: deque[float] = deque(maxlen=window)  # seconds, image stamp -> publication
        self._inference: deque[float] = deque(maxlen=window)  # seconds
        self.rate_window_s = rate_window_s
        self.received = self.processed = self.dropped = 0
        self.rejected: dict[str, int] = {}

    def on_input(self) -> None:
        with self._lock:
            self.received += 1
            self._inputs.append(time.monotonic())

    def on_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def on_rejected(self, problem: str) -> None:
        with self._lock:
            self.rejected[problem] = self.rejected.get(problem, 0) + 1

    def on_output(self, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self.processed += 1
            self._outputs.append(time.monotonic())
            self._latencies.append(latency_s)
            self._inference.append(inference_s)

    def summary(self) -> dict[str, float | int]:
        """input/processed rate (Hz, over the last rate_window_s), counts, latency and inference p50/p99 (ms)."""
        now = time.monotonic()
        with self._lock:
            latencies, inference = np.array(self._latencies), np.array(self._inference)
            summary = {
                "input_rate_hz": _rate(self._inputs, now, self.rate_window_s),
                "processed_rate_hz": _rate(self._outputs, now, self.rate_window_s),
                "received_frames": self.received,
                "processed_frames": self.processed,
                "dropped_frames": self.dropped,
                "rejected_frames": sum(self.rejected.values()),
            }
        for name, values in (("latency", latencies), ("inference", inference)):
            p50, p99 = np.percentile(values, [50, 99]) * 1e3 if values.size else (np.nan, np.nan)
            summary[f"{name}_p50_ms"], summary[f"{name}_p99_ms"] = float(p50), float(p99)
        return summary


def _rate(times: deque, now: float, window_s: float) -> float:
    recent = [t for t in times if now - t <= window_s]
    if len(recent) < 2:
        return 0.0
    return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)


class ProblemThrottle:
    """Lets each kind of problem through at most once per ``period_s``; tells how many were held back."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, kind: str) -> tuple[bool, int]:
        """(log it now?, how many of this kind were suppressed since the last one logged)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -np.inf) >= self.period_s:
                self._last[kind] = now
                return True, self._held.pop(kind, 0)
            self._held[kind] = self._held.get(kind, 0) + 1
            return False, 0
