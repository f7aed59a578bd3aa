"""Statistics of the ablation study: means with 95 % t-intervals over seeds, and differences paired by seed.

With a handful of seeds the spread of the mean follows Student's t with n - 1 degrees of freedom, so the
interval is mean +- t_{0.975, n-1} * s / sqrt(n), s the sample standard deviation (n - 1 in the
denominator). One seed has no interval (NaN). Paired differences subtract, seed by seed, the runs of two
methods that saw the same initial weights and the same images, which removes the seed's own effect.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy.stats import t as student_t

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float  # NaN with fewer than two values
    count: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (a difference the data can tell)."""
        return math.isfinite(self.half_width) and (self.low > 0 or self.high < 0)

    def format(self, digits: int = 4) -> str:
        if self.count == 0:
            return ""
        if not math.isfinite(self.half_width):
            return f"{self.mean:.{digits}f} (1 seed)"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` and the half width of its two-sided t-interval."""
    values = [float(v) for v in values]
    if not values:
        return Interval(math.nan, math.nan, 0)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, math.nan, 1)
    quantile = float(student_t.ppf(0.5 + confidence / 2, df=len(values) - 1))
    return Interval(mean, quantile * statistics.stdev(values) / math.sqrt(len(values)), len(values))


def paired_difference(minuend: dict[int, float], subtrahend: dict[int, float],
                      confidence: float = CONFIDENCE) -> Interval:
    """t-interval of minuend[seed] - subtrahend[seed] over the seeds both have."""
    seeds = sorted(set(minuend) & set(subtrahend))
    return t_interval([minuend[s] - subtrahend[s] for s in seeds], confidence)


def verdict(difference: Interval, lower_is_better: bool) -> str:
    """How a paired difference (later method - earlier method) reads: better, worse or cannot tell."""
    if difference.count < 2:
        return "cannot tell (fewer than 2 paired seeds)"
    if not difference.excludes_zero():
        return "cannot tell (interval spans 0)"
    improved = difference.mean < 0 if lower_is_better else difference.mean > 0
    return "better" if improved else "worse"
