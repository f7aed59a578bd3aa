"""Tracks scored against per-instance truth over time (track_truth.py): identity, kinematics, calibration.

``TrackScorer.add`` takes each frame's instances, their track columns (instances/tracking.py) and the
frame's truth; ``summary()`` gives

    identity      motmetrics' MOTA, IDF1, ID switches and fragmentations over every visible truth instance
                  (confirmed tracks only; a track matches a truth instance where their boxes overlap by
                  IoU >= 0.5), and the ID switches of the scripted closing objects ("actors") alone
    errors        for the actors, by true range band (0-10, 10-20, 20-40, 40-80 m): median |range error|,
                  median |range-rate error|, median relative time-to-contact error where the true time
                  to contact is under 6 s (an estimate of +inf there counts as a 100 % error)
    standing      |range rate| of tracks on truth that is not moving relative to the camera (|true rate| < 0.1)
    calibration   the share of matched frames whose error lies within one stated std, for range, range
                  rate and time to contact (true ttc < 6 s), actors and all matched tracks

and ``rows`` are tracks.csv: one row per confirmed track per frame. A frame without truth (None) is
written to tracks.csv but not scored; a run without any truth has no figures (``summary()`` says so).

motmetrics is imported here only, and only once a frame with truth arrives: by replay_eval and the
bench, never by the node (requirements.txt pins it).
"""
from __future__ import annotations

import numpy as np

from icm_depth_ros.instances.tracking import box_iou
from icm_depth_ros.replay.track_truth import TRUTH_DTYPE

RANGE_BANDS = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 80.0))
TTC_SCORED_BELOW_S = 6.0  # time to contact matters (and is scored) below this
STANDING_RATE = 0.1  # m/s: truth slower than this relative to the camera is "standing"
MIN_IOU = 0.5
TRACK_COLUMNS = ("stamp", "track_id", "label", "range", "range_rate", "ttc", "range_std", "range_rate_std",
                 "ttc_std", "true_id", "true_range", "true_range_rate", "true_ttc", "actor")


class TrackScorer:
    def __init__(self):
        self._motmetrics = None
        self.accumulator = None
        self.rows: list[dict] = []
        self._frames: list[tuple[float, dict, dict]] = []  # (stamp, track id -> row, truth id -> truth row)
        self.actors: set[int] = set()

    def add(self, stamp_s: float, instances: list, tracks: np.ndarray, truth: np.ndarray | None) -> None:
        """One frame: Instance records [n], TRACK_DTYPE [n] (aligned), TRUTH_DTYPE [m] or None (not scored)."""
        confirmed = [(instance, track) for instance, track in zip(instances, tracks) if track["track_id"] > 0]
        by_track = {int(track["track_id"]): {"instance": instance, "track": track} for instance, track in confirmed}
        frame = len(self._frames)
        if truth is None:  # not scored: tracks.csv only
            self._frames.append((stamp_s, by_track, None))
            return
        if self.accumulator is None:
            import motmetrics

            self._motmetrics, self.accumulator = motmetrics, motmetrics.MOTAccumulator(auto_id=False)
        self.actors |= {int(row["id"]) for row in truth if row["actor"]}
        if truth.size or by_track:
            # motmetrics' own iou_matrix calls np.asfarray, which NumPy 2 removed: the same distances here
            hypotheses = np.array([entry["instance"].bbox for entry in by_track.values()], np.float64).reshape(-1, 4)
            objects = np.stack([truth[c] for c in ("u0", "v0", "u1", "v1")], axis=1).astype(np.float64).reshape(-1, 4)
            iou = box_iou(objects, hypotheses)  # [m, n]
            distances = np.where(iou >= MIN_IOU, 1.0 - iou, np.nan)  # NaN: may not pair
            self.accumulator.update([int(i) for i in truth["id"]], list(by_track), distances, frameid=frame)
        self._frames.append((stamp_s, by_track, {int(row["id"]): row for row in truth}))

    def summary(self) -> dict:
        """The figures of the module docstring; also fills ``rows`` (tracks.csv)."""
        if self.accumulator is None:
            self.rows = [_row(stamp, track_id, entry, None, None) for stamp, by_track, _ in self._frames
                         for track_id, entry in by_track.items()]
            return {"scored": False, "reason": "no frame has per-instance truth (--truth-topic)"}
        motmetrics = self._motmetrics
        names = ["mota", "idf1", "num_switches", "num_fragmentations", "num_frames", "num_objects",
                 "num_false_positives", "num_misses", "mostly_tracked", "num_unique_objects"]
        table = motmetrics.metrics.create().compute(self.accumulator, metrics=names, name="drive")
        identity = {name: _plain(table[name].iloc[0]) for name in names}
        events = self.accumulator.mot_events
        pairs = events[events["Type"].isin(["MATCH", "SWITCH"])]
        matched = {(int(frame), int(hyp)): int(obj) for (frame, _), obj, hyp in
                   zip(pairs.index, pairs["OId"], pairs["HId"])}
        switches = events[events["Type"] == "SWITCH"]
        identity["actor_switches"] = int(sum(int(obj) in self.actors for obj in switches["OId"]))
        identity["actor_frames_tracked"] = sum(1 for obj in matched.values() if obj in self.actors)
        identity["actor_frames_visible"] = sum(1 for _, _, truth in self._frames for obj in truth or {}
                                               if obj in self.actors)

        self.rows, scored = [], []
        for index, (stamp, by_track, truth) in enumerate(self._frames):
            for track_id, entry in by_track.items():
                true_id = matched.get((index, track_id))
                true = truth.get(true_id) if true_id is not None else None
                self.rows.append(_row(stamp, track_id, entry, true_id, true))
                if true is not None:
                    scored.append((entry["track"], true))
        actors = [(track, true) for track, true in scored if true["actor"]]
        return {"scored": True, "identity": identity, "errors": _errors_by_band(actors), "standing": _standing(scored),
                "calibration": {"actors": _calibration(actors), "all": _calibration(scored)}}

    def series(self, truth_id: int) -> dict[str, np.ndarray]:
        """The matched track's estimates and the truth of one truth instance over time (for plots):
        stamp, range, range_std, ttc, ttc_std, true_range, true_ttc (NaN where not matched)."""
        keys = ("range", "range_std", "ttc", "ttc_std", "true_range", "true_ttc")
        series = {key: [] for key in ("stamp", *keys)}
        by_stamp = {}
        for row in self.rows:
            if row["true_id"] == truth_id:
                by_stamp[row["stamp"]] = row
        for stamp, _, truth in self._frames:
            if truth is None or truth_id not in truth:
                continue
            row = by_stamp.get(f"{stamp:.9f}")
            series["stamp"].append(stamp)
            for key in ("range", "range_std", "ttc", "ttc_std"):
                series[key].append(np.nan if row is None else row[key])
            series["true_range"].append(float(truth[truth_id]["range"]))
            series["true_ttc"].append(float(truth[truth_id]["ttc"]))
        return {key: np.asarray(values, dtype=np.float64) for key, values in series.items()}


def _row(stamp: float, track_id: int, entry: dict, true_id, true) -> dict:
    """One tracks.csv row (TRACK_COLUMNS); the true_* columns empty where no truth instance matched."""
    track = entry["track"]
    return {"stamp": f"{stamp:.9f}", "track_id": track_id, "label": int(entry["instance"].id),
            **{name: float(track[name]) for name in ("range", "range_rate", "ttc", "range_std", "range_rate_std",
                                                     "ttc_std")},
            "true_id": "" if true is None else true_id,
            "true_range": "" if true is None else float(true["range"]),
            "true_range_rate": "" if true is None else float(true["range_rate"]),
            "true_ttc": "" if true is None else float(true["ttc"]),
            "actor": "" if true is None else int(true["actor"])}


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _median(values) -> float | None:
    return float(np.median(values)) if len(values) else None


def _ttc_relative_errors(pairs) -> list[float]:
    errors = []
    for track, true in pairs:
        if np.isfinite(true["ttc"]) and true["ttc"] < TTC_SCORED_BELOW_S:
            estimate = float(track["ttc"])
            errors.append(abs(estimate - true["ttc"]) / true["ttc"] if np.isfinite(estimate) else 1.0)
    return errors


def _errors_by_band(pairs) -> dict:
    result = {}
    for low, high in RANGE_BANDS:
        inside = [(t, g) for t, g in pairs if low <= g["range"] < high]
        result[f"{low:g}-{high:g} m"] = {
            "frames": len(inside),
            "range_abs_error_m": _median([abs(t["range"] - g["range"]) for t, g in inside]),
            "range_rate_abs_error_mps": _median([abs(t["range_rate"] - g["range_rate"]) for t, g in inside]),
            "ttc_frames": len(_ttc_relative_errors(inside)),
            "ttc_relative_error": _median(_ttc_relative_errors(inside)),
        }
    ttc = _ttc_relative_errors(pairs)
    result["all"] = {"frames": len(pairs), "ttc_frames": len(ttc), "ttc_relative_error": _median(ttc),
                     "range_rate_abs_error_mps": _median([abs(t["range_rate"] - g["range_rate"]) for t, g in pairs])}
    return result


def _standing(pairs) -> dict:
    rates = [abs(float(t["range_rate"])) for t, g in pairs if abs(g["range_rate"]) < STANDING_RATE]
    return {"frames": len(rates), "abs_range_rate_median_mps": _median(rates),
            "abs_range_rate_max_mps": float(max(rates)) if rates else None}


def _calibration(pairs) -> dict:
    """Share of frames whose |error| <= the stated std (a calibrated 1-sigma holds about 68 %)."""
    def share(flags):
        return {"frames": len(flags), "within_one_std": float(np.mean(flags)) if flags else None}

    ttc_flags = [abs(float(t["ttc"]) - g["ttc"]) <= float(t["ttc_std"]) if np.isfinite(t["ttc"]) else False
                 for t, g in pairs if np.isfinite(g["ttc"]) and g["ttc"] < TTC_SCORED_BELOW_S]
    return {"range": share([abs(t["range"] - g["range"]) <= t["range_std"] for t, g in pairs]),
            "range_rate": share([abs(t["range_rate"] - g["range_rate"]) <= t["range_rate_std"] for t, g in pairs]),
            "ttc": share(ttc_flags)}
