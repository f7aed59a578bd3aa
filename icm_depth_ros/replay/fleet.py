"""A fleet of drives: each drive's result, the overall figures merged from them, the comparison of a
candidate model with a baseline, and the release gate. No Ray here (fleet_runner.py runs the drives).

Overall figures are computed from the drives' merged ``ScoreTotals`` (sums and counts, exact), so they are
exactly the figures replay_eval gives on one bag holding all the drives' frames.

Comparison (with a baseline): for each metric, over the drives both models evaluated and scored,
difference = candidate - baseline of the overall figures of those drives (frame-weighted, as above).
The 95 % interval is ``scipy.stats.bootstrap`` over drives (paired: a resampled drive brings both models'
sums and counts), percentile method, 9999 resamples, a fixed seed (the same inputs give the same interval).

Gate ``METRIC=DELTA``: DELTA is the worst change of METRIC the release accepts, in the metric's units and
with its sign. For a lower-is-better metric (abs_rel, sq_rel, rmse, rmse_log, silog, log10) DELTA >= 0 and
the candidate regresses when difference > DELTA; for a higher-is-better one (d1, d2, d3, d1_instance,
d1_background) DELTA <= 0 and it regresses when difference < DELTA. A gated metric that could not be
measured on any drive blocks the release too. The gate uses the point difference; the interval is reported
beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icm_depth_ros.processing.metrics import LOWER_IS_BETTER, METRIC_NAMES
from icm_depth_ros.replay.scoring import ScoreTotals, summarize_totals

COMPARED_NAMES = (*METRIC_NAMES, "d1_instance", "d1_background")
CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
FRAME_COUNTS = ("read", "scored", "predicted_without_ground_truth", "skipped", "without_instance_labels")


@dataclass
class DriveResult:
    """One model on one drive: what a worker sends back. ``failure`` set: the drive could not be evaluated."""

    path: str
    frames: dict = field(default_factory=dict)  # metrics.json "frames" (read, scored, skipped_by_reason, ...)
    totals: ScoreTotals = field(default_factory=ScoreTotals)
    latency: dict = field(default_factory=dict)  # metrics.json "latency" (per stage, ms)
    elapsed_s: float = 0.0
    failure: str | None = None
    notes: list[str] = field(default_factory=list)
    contact_sheet: str | None = None  # relative to the output folder

    @property
    def ok(self) -> bool:
        return self.failure is None

    def metrics(self) -> dict[str, float]:
        return self.totals.means()


def drive_entry(candidate: DriveResult, baseline: DriveResult | None = None) -> dict:
    """fleet.json's row of one drive."""
    entry = {"path": candidate.path, "status": "ok" if candidate.ok else "failed",
             "frames": {name: candidate.frames.get(name, 0) for name in FRAME_COUNTS},
             "skipped_by_reason": candidate.frames.get("skipped_by_reason", {}),
             "valid_pixels": candidate.totals.valid_pixels, "metrics": candidate.metrics(),
             "latency_total_ms": (candidate.latency.get("total") or {}).get("mean_ms"),
             "elapsed_s": round(candidate.elapsed_s, 3), "failure": candidate.failure, "notes": candidate.notes,
             "contact_sheet": candidate.contact_sheet}
    if baseline is not None:
        entry["baseline"] = {"status": "ok" if baseline.ok else "failed", "metrics": baseline.metrics(),
                             "failure": baseline.failure}
        if candidate.ok and baseline.ok:
            base = baseline.metrics()
            entry["difference"] = {name: value - base[name] for name, value in candidate.metrics().items()
                                   if name in base and name in COMPARED_NAMES}
        if not baseline.ok:
            entry["status"] = "failed"
    return entry


def overall(results: list[DriveResult], bin_edges: np.ndarray) -> dict:
    """The figures of all evaluated drives together, under replay_eval's names, plus frame and drive counts."""
    totals, frames, reasons = ScoreTotals(), dict.fromkeys(FRAME_COUNTS, 0), {}
    for result in results:
        if not result.ok:
            continue
        totals.merge(result.totals)
        for name in FRAME_COUNTS:
            frames[name] += result.frames.get(name, 0)
        for reason, count in result.frames.get("skipped_by_reason", {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
    summary = {"drives": {"total": len(results), "evaluated": sum(r.ok for r in results),
                          "failed": sum(not r.ok for r in results)},
               "frames": {**frames, "skipped_by_reason": dict(sorted(reasons.items()))},
               "valid_pixels": totals.valid_pixels}
    summary.update(summarize_totals(totals, bin_edges))
    return summary


def compare(candidates: list[DriveResult], baselines: list[DriveResult]) -> dict:
    """Per metric: candidate and baseline overall figures over the drives both scored, their difference and
    its bootstrap interval over drives. ``candidates[i]`` and ``baselines[i]`` are the same drive."""
    from scipy.stats import bootstrap

    comparison = {}
    for name in COMPARED_NAMES:
        pairs = [(c.totals, b.totals) for c, b in zip(candidates, baselines)
                 if c.ok and b.ok and c.totals.metric_counts.get(name) and b.totals.metric_counts.get(name)]
        if not pairs:
            continue
        # [4, D]: per drive the candidate's sum and count of the figure, then the baseline's
        data = np.array([[float(c.metric_sums[name]) for c, _ in pairs], [c.metric_counts[name] for c, _ in pairs],
                         [float(b.metric_sums[name]) for _, b in pairs], [b.metric_counts[name] for _, b in pairs]])
        candidate = float(sum(c.metric_sums[name] for c, _ in pairs) / sum(c.metric_counts[name] for c, _ in pairs))
        baseline = float(sum(b.metric_sums[name] for _, b in pairs) / sum(b.metric_counts[name] for _, b in pairs))
        row = {"drives": len(pairs), "candidate": candidate, "baseline": baseline, "difference": candidate - baseline,
               "interval": None, "lower_is_better": name in LOWER_IS_BETTER}
        if len(pairs) >= 2:
            result = bootstrap(tuple(data), _pooled_difference, paired=True, vectorized=True, method="percentile",
                               confidence_level=CONFIDENCE_LEVEL, n_resamples=BOOTSTRAP_RESAMPLES, rng=BOOTSTRAP_SEED)
            row["interval"] = [float(result.confidence_interval.low), float(result.confidence_interval.high)]
        comparison[name] = row
    return {"confidence_level": CONFIDENCE_LEVEL, "bootstrap": {"method": "percentile", "resamples": BOOTSTRAP_RESAMPLES,
                                                                "seed": BOOTSTRAP_SEED, "unit": "drive"},
            "metrics": comparison}


def _pooled_difference(candidate_sums, candidate_counts, baseline_sums, baseline_counts, axis=-1):
    """Frame-weighted candidate figure minus baseline figure over the (resampled) drives."""
    return (np.sum(candidate_sums, axis=axis) / np.sum(candidate_counts, axis=axis)
            - np.sum(baseline_sums, axis=axis) / np.sum(baseline_counts, axis=axis))


@dataclass(frozen=True)
class Gate:
    metric: str
    allowed: float  # worst accepted candidate - baseline difference, with the metric's sign convention


def parse_gate(text: str) -> Gate:
    """``METRIC=DELTA`` -> Gate; ValueError naming the option and the value when it does not follow the rule."""
    name, separator, value = text.partition("=")
    name = name.strip()
    if not separator:
        raise ValueError(f"--gate {text!r}: expected METRIC=DELTA, e.g. abs_rel=0.002 or d1=-0.005")
    if name not in COMPARED_NAMES:
        raise ValueError(f"--gate {text!r}: unknown metric {name!r}; one of {', '.join(COMPARED_NAMES)}")
    try:
        allowed = float(value)
    except ValueError:
        raise ValueError(f"--gate {text!r}: DELTA {value!r} is not a number") from None
    if not np.isfinite(allowed):
        raise ValueError(f"--gate {text!r}: DELTA must be finite")
    if name in LOWER_IS_BETTER and allowed < 0:
        raise ValueError(f"--gate {text!r}: {name} is lower-is-better, so DELTA is the rise accepted and must be "
                         f">= 0 (e.g. {name}=0.002)")
    if name not in LOWER_IS_BETTER and allowed > 0:
        raise ValueError(f"--gate {text!r}: {name} is higher-is-better, so DELTA is the fall accepted and must be "
                         f"<= 0 (e.g. {name}=-0.005)")
    return Gate(name, allowed)


@dataclass
class GateVerdict:
    gate: Gate
    difference: float | None  # None: not measured
    regressed: bool

    def line(self) -> str:
        name, allowed = self.gate.metric, self.gate.allowed
        if self.difference is None:
            return f"gate {name}: regress (blocked): not measured on any drive both models scored"
        direction = "rise" if name in LOWER_IS_BETTER else "fall"
        verdict = "regress" if self.regressed else "pass"
        return (f"gate {name}: {verdict}: candidate - baseline {self.difference:+.6f}, accepted {direction} "
                f"{abs(allowed):.6f}")


def check_gates(gates: list[Gate], comparison: dict) -> list[GateVerdict]:
    """The rule of the module docstring, one verdict per gate."""
    verdicts = []
    for gate in gates:
        row = comparison["metrics"].get(gate.metric)
        if row is None:
            verdicts.append(GateVerdict(gate, None, True))
            continue
        difference = row["difference"]
        regressed = difference > gate.allowed if gate.metric in LOWER_IS_BETTER else difference < gate.allowed
        verdicts.append(GateVerdict(gate, difference, regressed))
    return verdicts
