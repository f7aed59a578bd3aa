"""Tracks over a camera's frames: each frame's instances -> stable track ids and kinematics (kinematics.py).

Behaviour, frame by frame (``InstanceTracker.update``):

* Time is the header stamp. A stamp that is not newer than the last one used (repeated or out of order)
  leaves the tracks as they are and the frame gets no track (ids 0); a gap longer than ``max_gap_s``
  ends every track (their positions are too old to match) and the frame starts new ones.
* Association: every live track against every instance, gated (box IoU >= ``min_iou`` or 3-D centroid
  distance <= ``gate_m`` from the track's predicted centroid), cost = (1 - IoU) + distance / gate_m,
  solved with scipy's linear_sum_assignment. Where the label source keeps ids (``stable_labels``: a
  panoptic tracking segmentation) a track whose label is in the frame pairs with that label's instance
  only (inside the gate; ``LABEL_BONUS`` makes it the cheapest pair) and no other track takes it;
  geometry pairs the tracks whose label is gone with the labels no track holds. Network clusters are
  renumbered every frame: there the ids are ignored and geometry alone decides.
* Life cycle: a new track is tentative; after ``confirm_hits`` matched frames it is confirmed and takes
  the next id of the shared ``TrackIds`` (one per node, so ids are unique across its cameras and never
  reused while the node runs). A tentative track missed once is dropped; a confirmed one after
  ``max_misses`` frames in a row without a match. Only confirmed tracks are reported.

Columns of the result (``TRACK_DTYPE``, one row per instance of the frame, in the frame's order):
track_id (0 = no confirmed track), range, range_rate (m/s, negative = closing), ttc (s, +inf = not
closing) and their standard deviations; NaN where track_id is 0.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from icm_depth_ros.instances import kinematics
from icm_depth_ros.instances.statistics import Instance

TRACK_DTYPE = np.dtype([
    ("track_id", "<u4"), ("range", "<f4"), ("range_rate", "<f4"), ("ttc", "<f4"),
    ("range_std", "<f4"), ("range_rate_std", "<f4"), ("ttc_std", "<f4"),
])
LABEL_BONUS = 2.0  # larger than any geometric cost (at most 2 inside the gate): a kept label id wins
_NO_PAIR = 1e6  # cost of a pair outside the gate (linear_sum_assignment needs finite costs)


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking parameters (README "Parameters", the ``track_*`` rows)."""

    confirm_hits: int = 3  # matched frames before a track is confirmed and reported
    max_misses: int = 5  # frames in a row without a match before a confirmed track ends
    min_iou: float = 0.1  # a pair with at least this box overlap is inside the gate ...
    gate_m: float = 3.0  # ... and so is one whose centroids are at most this far apart (metres)
    max_gap_s: float = 1.0  # a longer gap between stamps ends every track
    jerk_std: float = 10.0  # m/s^3: how fast objects change their braking or acceleration
    # depth error between frames, as a fraction of range: 0.08 fits the demo model on the synthetic drives
    # (bench/tracking.py); set it from replay_eval's calibration figures for another model
    range_noise_fraction: float = 0.08
    scale_noise_px: float = 0.5  # std of each box edge between frames, pixels

    def __post_init__(self):
        checks = {"confirm_hits": self.confirm_hits >= 1, "max_misses": self.max_misses >= 1,
                  "min_iou": 0.0 < self.min_iou <= 1.0, "gate_m": self.gate_m > 0, "max_gap_s": self.max_gap_s > 0,
                  "jerk_std": self.jerk_std > 0,
                  "range_noise_fraction": self.range_noise_fraction > 0, "scale_noise_px": self.scale_noise_px > 0}
        wanted = {"confirm_hits": ">= 1", "max_misses": ">= 1", "min_iou": "in (0, 1]"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"parameter track_{name}={getattr(self, name)!r} must be {wanted.get(name, '> 0')}")


class TrackIds:
    """Track ids 1, 2, ... for every camera of one node (thread-safe; never reused while it lives)."""

    def __init__(self):
        self._last = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> np.ndarray:
        with self._lock:
            ids = np.arange(self._last + 1, self._last + 1 + count, dtype=np.uint32)
            self._last += count
        return ids


class InstanceTracker:
    """One camera's tracks. ``stable_labels``: the label source keeps an object's id across frames."""

    def __init__(self, config: TrackerConfig, ids: TrackIds, stable_labels: bool = False):
        self.config, self.ids, self.stable_labels = config, ids, stable_labels
        self.last_stamp: float | None = None
        self.skipped_stamps = 0  # frames not tracked: stamp repeated or older than the last
        self._clear()

    def _clear(self) -> None:
        self.track_id = np.zeros(0, dtype=np.uint32)  # [T] 0 while tentative
        self.hits = np.zeros(0, dtype=np.int64)
        self.misses = np.zeros(0, dtype=np.int64)
        self.label = np.zeros(0, dtype=np.int64)
        self.bbox = np.zeros((0, 4))
        self.centroid = np.zeros((0, 3))
        self.range_state, self.range_cov = np.zeros((0, 3)), np.zeros((0, 3, 3))
        self.scale_state, self.scale_cov = np.zeros((0, 3)), np.zeros((0, 3, 3))
        self.scale_hits = np.zeros(0, dtype=np.int64)  # size measurements taken: the rate needs two

    @property
    def count(self) -> int:
        return self.track_id.size

    def update(self, stamp_s: float, instances: list[Instance], image_size: tuple[int, int]) -> np.ndarray:
        """One frame: its stamp (seconds), instances and depth-image (height, width) -> TRACK_DTYPE [n]."""
        result = np.zeros(len(instances), dtype=TRACK_DTYPE)
        for name in TRACK_DTYPE.names[1:]:
            result[name] = np.nan
        if self.last_stamp is not None and not stamp_s > self.last_stamp:
            self.skipped_stamps += 1
            return result
        dt = None if self.last_stamp is None else stamp_s - self.last_stamp
        self.last_stamp = stamp_s
        if dt is not None and dt > self.config.max_gap_s:
            self._clear()
        measured = _measurements(instances)
        size, size_var = kinematics.inverse_size(measured["bbox"], image_size, self.config.scale_noise_px,
                                               measured["confidence"])
        range_var = kinematics.range_variance(measured["near"], measured["median"], measured["pixel_count"],
                                              measured["confidence"], self.config.range_noise_fraction)
        if self.count and dt is not None:
            self._predict(dt)
        rows, columns = self._associate(measured, dt or 0.0)

        self._correct(rows, columns, measured, range_var, size, size_var)
        missed = np.ones(self.count, dtype=bool)
        missed[rows] = False
        self.misses[missed] += 1
        keep = ~missed | ((self.track_id > 0) & (self.misses < self.config.max_misses))
        track_of_instance = np.full(len(instances), -1)  # the track row of each instance after this frame
        track_of_instance[columns] = np.cumsum(keep)[rows] - 1  # row indices after the drop below
        self._keep(keep)
        unmatched = np.ones(len(instances), dtype=bool)
        unmatched[columns] = False
        new = np.flatnonzero(unmatched & np.isfinite(measured["near"]))  # no depth at all: no track to start
        track_of_instance[new] = self.count + np.arange(new.size)
        self._start(new, measured, range_var, size, size_var)

        confirm = (self.track_id == 0) & (self.hits >= self.config.confirm_hits)
        self.track_id[confirm] = self.ids.take(int(confirm.sum()))
        self._report(result, track_of_instance)
        return result

    # ---- steps -------------------------------------------------------------------------------------
    def _predict(self, dt: float) -> None:
        config = self.config
        kinematics.predict(self.range_state, self.range_cov, dt, config.jerk_std)
        ranges = np.maximum(self.range_state[:, 0], 1.0)
        scale_std = config.jerk_std * self.scale_state[:, 0] / ranges  # y = r / (f size): its jerk is j y / r
        kinematics.predict(self.scale_state, self.scale_cov, dt, scale_std)

    def _associate(self, measured: dict, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """(track rows, instance columns) of the matched pairs."""
        if not self.count or not measured["near"].size:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        iou = box_iou(self.bbox, measured["bbox"])  # [T, n]
        track, seen = self.centroid, measured["centroid"]  # x, y are 0 where there was no K: depth alone
        squared = np.zeros((self.count, seen.shape[0]))  # [T, n]
        for axis in range(3):
            ahead = track[:, axis] + self.range_state[:, 1] * dt if axis == 2 else track[:, axis]  # z follows the range rate
            squared += np.square(ahead[:, None] - seen[None, :, axis])
        # a centroid without depth (NaN z): not near, but the boxes may still pair it
        distance = np.nan_to_num(np.sqrt(squared), nan=2.0 * self.config.gate_m)
        cost = (1.0 - iou) + distance / self.config.gate_m
        inside = (iou >= self.config.min_iou) | (distance <= self.config.gate_m)
        if self.stable_labels:
            same = self.label[:, None] == measured["id"][None, :]  # [T, n]
            cost -= LABEL_BONUS * same
            # a label the source still shows belongs to its track: no other track takes it, and the track
            # takes no other label; geometry pairs only tracks whose label is gone with labels new to us
            inside &= same | ~(same.any(axis=1)[:, None] | same.any(axis=0)[None, :])
        cost = np.where(inside, cost, _NO_PAIR)
        rows, columns = linear_sum_assignment(cost)
        paired = inside[rows, columns]
        return rows[paired], columns[paired]

    def _correct(self, rows, columns, measured, range_var, size, size_var) -> None:
        if not rows.size:
            return
        self.hits[rows] += 1
        self.misses[rows] = 0
        self.label[rows] = measured["id"][columns]
        self.bbox[rows] = measured["bbox"][columns]
        self.centroid[rows] = measured["centroid"][columns]
        for state, cov, value, variance in ((self.range_state, self.range_cov, measured["near"], range_var),
                                            (self.scale_state, self.scale_cov, size, size_var)):
            part_state, part_cov = state[rows], cov[rows]
            kinematics.update(part_state, part_cov, value[columns], variance[columns])
            state[rows], cov[rows] = part_state, part_cov
        # a track whose first sizes were cut off at the border starts its size filter at the first whole box
        sized = np.isfinite(size[columns])
        fresh = sized & (self.scale_hits[rows] == 0)
        if fresh.any():
            first = size[columns][fresh]
            to_size = first / np.maximum(self.range_state[rows][fresh, 0], 1.0)  # metres -> the size filter's units
            state, cov = kinematics.initial_state(first, size_var[columns][fresh], kinematics.INITIAL_RANGE_RATE_STD
                                                  * to_size, kinematics.INITIAL_ACCELERATION_STD * to_size)
            self.scale_state[rows[fresh]], self.scale_cov[rows[fresh]] = state, cov
        self.scale_hits[rows[sized]] += 1

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        for name in ("track_id", "hits", "misses", "label", "bbox", "centroid", "range_state", "range_cov",
                     "scale_state", "scale_cov", "scale_hits"):
            setattr(self, name, getattr(self, name)[keep])

    def _start(self, new, measured, range_var, size, size_var) -> None:
        if not new.size:
            return
        near = measured["near"][new]
        range_state, range_cov = kinematics.initial_state(near, range_var[new], kinematics.INITIAL_RANGE_RATE_STD,
                                                          kinematics.INITIAL_ACCELERATION_STD)
        # the same priors in the size filter's units: dy/dt = v y / r
        to_size = size[new] / np.maximum(near, 1.0)
        scale_state, scale_cov = kinematics.initial_state(size[new], size_var[new], kinematics.INITIAL_RANGE_RATE_STD
                                                          * to_size, kinematics.INITIAL_ACCELERATION_STD * to_size)
        count = new.size
        self.track_id = np.concatenate([self.track_id, np.zeros(count, dtype=np.uint32)])
        self.hits = np.concatenate([self.hits, np.ones(count, dtype=np.int64)])
        self.misses = np.concatenate([self.misses, np.zeros(count, dtype=np.int64)])
        self.label = np.concatenate([self.label, measured["id"][new]])
        self.bbox = np.concatenate([self.bbox, measured["bbox"][new]])
        self.centroid = np.concatenate([self.centroid, measured["centroid"][new]])
        self.range_state = np.concatenate([self.range_state, range_state])
        self.range_cov = np.concatenate([self.range_cov, range_cov])
        self.scale_state = np.concatenate([self.scale_state, scale_state])
        self.scale_cov = np.concatenate([self.scale_cov, scale_cov])
        self.scale_hits = np.concatenate([self.scale_hits, np.isfinite(size[new]).astype(np.int64)])

    def _report(self, result: np.ndarray, track_of_instance: np.ndarray) -> None:
        """Fill the rows of ``result`` whose instance belongs to a confirmed track."""
        has_track = track_of_instance >= 0
        tracks = track_of_instance[has_track]
        confirmed = self.track_id[tracks] > 0
        instances, tracks = np.flatnonzero(has_track)[confirmed], tracks[confirmed]
        if not tracks.size:
            return
        ttc, ttc_std = kinematics.time_to_contact(self.range_state[tracks], self.range_cov[tracks],
                                                  self.scale_state[tracks], self.scale_cov[tracks],
                                                  self.scale_hits[tracks] >= 2)
        result["track_id"][instances] = self.track_id[tracks]
        result["range"][instances] = self.range_state[tracks, 0]
        result["range_rate"][instances] = self.range_state[tracks, 1]
        result["range_std"][instances] = np.sqrt(self.range_cov[tracks, 0, 0])
        result["range_rate_std"][instances] = np.sqrt(self.range_cov[tracks, 1, 1])
        result["ttc"][instances], result["ttc_std"][instances] = ttc, ttc_std


def _measurements(instances: list[Instance]) -> dict[str, np.ndarray]:
    """The instance columns the tracker reads, as arrays [n] (bbox [n, 4], centroid [n, 3])."""
    n = len(instances)
    if not n:
        return {"id": np.zeros(0, dtype=np.int64), "bbox": np.zeros((0, 4)), "centroid": np.zeros((0, 3)),
                "near": np.zeros(0), "median": np.zeros(0), "pixel_count": np.zeros(0), "confidence": np.zeros(0)}
    ids, _, bbox, median, near, centroid, pixel_count, confidence = zip(*instances)
    centroid = np.asarray(centroid, dtype=np.float64)
    centroid[:, :2] = np.nan_to_num(centroid[:, :2])  # x, y NaN without camera_info: compared as equal
    return {"id": np.asarray(ids, dtype=np.int64), "bbox": np.asarray(bbox, dtype=np.float64),
            "centroid": centroid, "near": np.asarray(near, dtype=np.float64),
            "median": np.asarray(median, dtype=np.float64), "pixel_count": np.asarray(pixel_count, dtype=np.float64),
            "confidence": np.asarray(confidence, dtype=np.float64)}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [T, 4] and b [n, 4] (u0, v0, u1, v1; u1, v1 exclusive) -> [T, n]."""
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    overlap = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - overlap
    return np.where(union > 0, overlap / np.maximum(union, 1e-9), 0.0)
