"""Range, range rate and time to contact per track, with standard deviations, from filters over stamps.

Two constant-acceleration Kalman filters per track, both vectorised over all tracks (state [T, 3], covariance
[T, 3, 3]):

    range filter   state (r, dr/dt, d2r/dt2): r = the instance's near depth (NEAR_PERCENTILE-th percentile
                   of its depths, metres along the optical axis): the near surface is what a collision
                   reaches first, so time to contact is taken from it, not from the centroid or the median.
    scale filter   state (y, dy/dt, d2y/dt2) with y = 1 / s, s = sqrt(box width x box height) in pixels:
                   s ~ 1 / r for a rigid object, so y is range in units of the object's own size, and
                   -(dy/dt) / y = -(dr/dt) / r = 1 / time to contact (the scale-change time to contact,
                   tau = s / (ds/dt)). This cue needs no metric depth and does not inherit the network's
                   scale bias. (y rather than log s: d(log s)/dt = 1 / ttc grows as contact nears even at
                   a constant closing speed, where y moves at a constant rate.)

Constant acceleration rather than constant velocity: a braking lead vehicle, the case forward collision
warning exists for, decelerates for seconds, and a constant-velocity filter lags its closing speed by about
the deceleration times its smoothing time for as long as the braking lasts; this one takes up the
deceleration as a state (test_tracking.py: test_a_braking_lead_vehicle_is_followed_without_lag). Process noise
is piecewise-constant white jerk, j ~ N(0, jerk_std^2) over a step: Q = jerk_std^2 g g^T, g = (dt^3/6,
dt^2/2, dt). The scale filter's y = r / (f x size) has jerk j y / r, so both filters share the one
physical parameter.

Both filters are written here rather than taken from filterpy: a tracker of 64 objects runs 128 of them
per frame, and one batched NumPy expression over all tracks costs about what one filterpy object update
costs (its per-object matrices and Python calls would take the 0.5 ms budget on their own).

Time to contact is fused in inverse form, eta = 1 / ttc (1/s): each cue's eta = -rate / value (its
variance by first-order propagation through the filter's (value, rate) covariance);
inverse-variance weighting of the two etas, then ttc = 1 / eta with std = std(eta) / eta**2. eta is
continuous through zero (an object that stops closing passes from small positive to negative), where ttc
jumps to infinity; eta <= 0 (not closing) gives ttc = +inf and ttc_std = +inf. The time to contact is
the first-order one, range / closing speed (what the truth of the synthetic drives holds too).
"""
from __future__ import annotations

import numpy as np

INITIAL_RANGE_RATE_STD = 15.0  # m/s: a new track's closing speed is unknown; covers 0 +- 30 m/s at 2 std
INITIAL_ACCELERATION_STD = 4.0  # m/s^2: a new track may be braking or accelerating (hard braking is ~8)
SPREAD_TO_STD = 1.0 / 1.2816  # (median - 10th percentile) of a normal distribution is 1.2816 std
NEAR_PERCENTILE_ERROR = 1.71  # std of a sample 10th percentile of n normal values ~ 1.71 std / sqrt(n)
MIN_CONFIDENCE = 0.05  # confidence divides the noise; below this an instance is as bad as this


def predict(state: np.ndarray, cov: np.ndarray, dt: float, jerk_std: np.ndarray | float) -> None:
    """Advance every filter by ``dt`` seconds in place. state [T, 3] (value, rate, acceleration), cov [T, 3, 3].

    Piecewise-constant white jerk j ~ N(0, jerk_std^2) over the step: Q = jerk_std^2 g g^T with
    g = (dt^3 / 6, dt^2 / 2, dt)."""
    F = np.array([[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]])
    g = np.array([dt ** 3 / 6.0, dt * dt / 2.0, dt])
    state[:] = state @ F.T
    q = np.square(jerk_std)  # scalar or [T]
    cov[:] = F @ cov @ F.T + (q[:, None, None] if np.ndim(q) else q) * np.outer(g, g)


def update(state: np.ndarray, cov: np.ndarray, measured: np.ndarray, variance: np.ndarray) -> None:
    """Fuse one measurement of the value per filter, in place (rows whose measurement is NaN keep their state).

    state [T, 3], cov [T, 3, 3], measured [T], variance [T]; H = (1, 0, 0)."""
    ok = np.isfinite(measured) & np.isfinite(variance)
    if not ok.any():
        return
    P = cov[ok]  # [k, 3, 3]
    innovation_var = P[:, 0, 0] + variance[ok]  # [k]
    gain = P[:, :, 0] / innovation_var[:, None]  # [k, 3]
    state[ok] += gain * (measured[ok] - state[ok, 0])[:, None]
    cov[ok] = P - gain[:, :, None] * P[:, None, 0, :]  # (I - K H) P


def initial_state(values: np.ndarray, variance: np.ndarray, rate_std, acceleration_std) -> tuple[np.ndarray, np.ndarray]:
    """New filters at ``values`` [n] (variance [n]), rate and acceleration 0 with the stds given (scalars or
    [n]): (state [n, 3], cov [n, 3, 3])."""
    state = np.zeros((values.size, 3))
    state[:, 0] = values
    cov = np.zeros((values.size, 3, 3))
    cov[:, 0, 0] = variance
    cov[:, 1, 1] = np.square(rate_std)
    cov[:, 2, 2] = np.square(acceleration_std)
    return state, cov


def range_variance(near: np.ndarray, median: np.ndarray, pixel_count: np.ndarray, confidence: np.ndarray,
                   range_noise_fraction: float) -> np.ndarray:
    """Measurement variance (m^2) of the near depth [n] of each instance.

    Two parts: the depth's own error, ``range_noise_fraction`` x range (what a depth network gets wrong
    from one frame to the next), and the sampling error of a 10th percentile taken over ``pixel_count``
    pixels whose depths spread with std (median - near) / 1.2816 (the object's extent in depth, or noise).
    Divided by the instance's confidence (low firmness or few pixels with depth: a weaker measurement).
    """
    spread = np.maximum(median - near, 0.0) * SPREAD_TO_STD
    sampling = NEAR_PERCENTILE_ERROR * spread / np.sqrt(np.maximum(pixel_count, 1))
    std = np.hypot(range_noise_fraction * near, sampling) / np.maximum(confidence, MIN_CONFIDENCE)
    return np.square(std)


def inverse_size(bbox: np.ndarray, image_size: tuple[int, int], scale_noise_px: float, confidence: np.ndarray):
    """Image size cue of boxes [n, 4] (u0, v0, u1, v1): (y = 1 / s [n] in 1/pixels, its variance [n]), NaN
    for a box that touches the image border (cut off: its size no longer follows the range) or is empty.

    s = sqrt(w h). y is proportional to range for a rigid object (y = r / (f x its size)), so it moves at
    a constant rate when the range does and the same constant-velocity filter applies. Each box edge moves
    by ~ N(0, scale_noise_px**2) between frames (segmentation jitter, integer edges): var(log w) =
    2 sigma^2 / w^2, var(log s) = (var(log w) + var(log h)) / 4 and var(y) = y^2 var(log s)."""
    height, width = image_size
    w = (bbox[:, 2] - bbox[:, 0]).astype(np.float64)
    h = (bbox[:, 3] - bbox[:, 1]).astype(np.float64)
    cut = (bbox[:, 0] <= 0) | (bbox[:, 1] <= 0) | (bbox[:, 2] >= width) | (bbox[:, 3] >= height) | (w <= 0) | (h <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 1.0 / np.sqrt(w * h)
        variance = 0.5 * scale_noise_px ** 2 * (1.0 / np.square(w) + 1.0 / np.square(h)) * np.square(value)
    variance = variance / np.square(np.maximum(confidence, MIN_CONFIDENCE))
    value[cut], variance[cut] = np.nan, np.nan
    return value, variance


def _inverse_ttc(state: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """eta = -rate / value [T] (1/s) of a filter whose value is proportional to range, and its variance."""
    value, rate = np.maximum(state[:, 0], 1e-9), state[:, 1]  # a range at or below 0 is a collision already
    d_value, d_rate = rate / np.square(value), -1.0 / value  # d eta / d value, d eta / d rate
    variance = (d_value * d_value * cov[:, 0, 0] + 2.0 * d_value * d_rate * cov[:, 0, 1]
                + d_rate * d_rate * cov[:, 1, 1])
    return -rate / value, variance


def time_to_contact(range_state: np.ndarray, range_cov: np.ndarray, scale_state: np.ndarray, scale_cov: np.ndarray,
                    scale_ready: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ttc [T], ttc_std [T]) in seconds, +inf where not closing; both cues fused as in the module docstring.

    scale_ready [T] bool: the scale filter has had at least two size measurements (else the range cue alone)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        eta_range, var_range = _inverse_ttc(range_state, range_cov)
        eta_scale, var_scale = _inverse_ttc(scale_state, scale_cov)
        weight_range = 1.0 / var_range
        weight_scale = np.where(scale_ready & np.isfinite(eta_scale), 1.0 / var_scale, 0.0)
        total = weight_range + weight_scale
        eta = (weight_range * eta_range + weight_scale * np.nan_to_num(eta_scale)) / total
        eta_std = np.sqrt(1.0 / total)
        closing = eta > 0
        ttc = np.where(closing, 1.0 / eta, np.inf)
        ttc_std = np.where(closing, eta_std / np.square(eta), np.inf)
    return ttc, ttc_std
