"""replay/track_scoring.py on hand-made tracks and truth: identity figures from motmetrics, errors by band,
standing objects, calibration shares and tracks.csv rows, each against numbers worked out here."""
from __future__ import annotations

import numpy as np
import pytest

from icm_depth_ros.instances.statistics import Instance
from icm_depth_ros.instances.tracking import TRACK_DTYPE
from icm_depth_ros.replay.track_truth import TRUTH_DTYPE


def instance(label: int, bbox) -> Instance:
    return Instance(label, -1, bbox, 10.0, 9.0, (0.0, 0.0, 10.0), 100, 1.0)


def tracks(*rows) -> np.ndarray:
    """rows: (track_id, range, range_rate, ttc, range_std, range_rate_std, ttc_std)."""
    return np.array(list(rows), dtype=TRACK_DTYPE)


def truth(*rows) -> np.ndarray:
    """rows: (id, range, range_rate, bbox, actor)."""
    array = np.zeros(len(rows), dtype=TRUTH_DTYPE)
    for row, (ident, range_m, rate, bbox, actor) in zip(array, rows):
        row["id"], row["range"], row["range_rate"], row["actor"] = ident, range_m, rate, actor
        row["ttc"] = range_m / -rate if rate < 0 else np.inf
        row["u0"], row["v0"], row["u1"], row["v1"] = bbox
        row["pixel_count"] = 100
    return array


BOX_A, BOX_B = (0, 0, 10, 10), (50, 0, 60, 10)


def test_identity_errors_and_calibration_against_hand_computed_values():
    pytest.importorskip("motmetrics", reason="track scoring needs motmetrics, a workstation package (requirements.txt)")
    from icm_depth_ros.replay.track_scoring import TrackScorer

    scorer = TrackScorer()
    # frame 0: track 1 on object 7 (closing, 5 m, true ttc 2.5 s), track 2 on object 8 (standing, 30 m)
    scorer.add(0.0, [instance(7, BOX_A), instance(8, BOX_B)],
               tracks((1, 5.5, -1.5, 2.4, 1.0, 1.0, 0.05), (2, 30.0, 0.3, np.inf, 0.5, 0.2, np.inf)),
               truth((7, 5.0, -2.0, BOX_A, 1), (8, 30.0, 0.0, BOX_B, 1)))
    # frame 1: object 7 is now on track 3 (an ID switch); object 8 is missed; a tentative instance (id 0)
    scorer.add(0.1, [instance(7, BOX_A), instance(8, BOX_B)],
               tracks((3, 4.0, -2.0, 2.0, 0.1, 0.1, 0.1), (0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan)),
               truth((7, 4.8, -2.0, BOX_A, 1), (8, 30.0, 0.0, BOX_B, 1)))
    scorer.add(0.2, [instance(7, BOX_A)], tracks((3, 4.6, -2.0, 2.3, 0.1, 0.1, 0.1)), None)  # no truth: not scored
    summary = scorer.summary()
    identity = summary["identity"]
    assert identity["num_switches"] == 1 and identity["actor_switches"] == 1
    assert identity["num_misses"] == 1 and identity["num_false_positives"] == 0 and identity["num_objects"] == 4
    assert identity["mota"] == pytest.approx(1 - (1 + 0 + 1) / 4)
    assert identity["actor_frames_tracked"] == 3 and identity["actor_frames_visible"] == 4
    errors = summary["errors"]
    # 0-10 m: object 7 twice: |range| 0.5, 0.8 -> 0.65; |rate| 0.5, 0 -> 0.25; ttc |2.4-2.5|/2.5, |2-2.4|/2.4
    assert errors["0-10 m"]["frames"] == 2
    assert errors["0-10 m"]["range_abs_error_m"] == pytest.approx(0.65)
    assert errors["0-10 m"]["range_rate_abs_error_mps"] == pytest.approx(0.25)
    assert errors["0-10 m"]["ttc_relative_error"] == pytest.approx(np.median([0.1 / 2.5, 0.4 / 2.4]), rel=1e-5)
    assert errors["20-40 m"]["frames"] == 1 and errors["20-40 m"]["ttc_frames"] == 0  # standing: no ttc scored
    assert summary["standing"] == {"frames": 1, "abs_range_rate_median_mps": pytest.approx(0.3),
                                   "abs_range_rate_max_mps": pytest.approx(0.3)}
    calibration = summary["calibration"]["actors"]
    # range: 0.5 <= 1.0 yes, 0 <= 0.5 yes, 0.8 <= 0.1 no; rate: 0.5 <= 1 yes, 0.3 <= 0.2 no, 0 <= 0.1 yes;
    # ttc (true < 6 s): 0.1 <= 0.05 no, 0.4 <= 0.1 no
    assert calibration["range"] == {"frames": 3, "within_one_std": pytest.approx(2 / 3)}
    assert calibration["range_rate"] == {"frames": 3, "within_one_std": pytest.approx(2 / 3)}
    assert calibration["ttc"] == {"frames": 2, "within_one_std": 0.0}
    rows = scorer.rows
    assert [(r["stamp"], r["track_id"], r["label"], r["true_id"]) for r in rows] == [
        ("0.000000000", 1, 7, 7), ("0.000000000", 2, 8, 8), ("0.100000000", 3, 7, 7), ("0.200000000", 3, 7, "")]
    assert rows[0]["true_ttc"] == pytest.approx(2.5) and rows[3]["true_range"] == ""


def test_without_truth_nothing_is_scored_and_motmetrics_is_not_imported():
    import subprocess
    import sys

    from icm_depth_ros.replay.track_scoring import TrackScorer

    scorer = TrackScorer()
    scorer.add(0.0, [instance(7, BOX_A)], tracks((4, 5.0, -1.0, 5.0, 0.1, 0.1, 0.1)), None)
    assert scorer.summary() == {"scored": False, "reason": "no frame has per-instance truth (--truth-topic)"}
    assert scorer.rows[0]["track_id"] == 4 and scorer.rows[0]["true_id"] == "" and scorer.accumulator is None
    # in a fresh interpreter: tracking and an unscored run leave motmetrics (and pandas) unimported
    code = ("import sys; from icm_depth_ros.replay.track_scoring import TrackScorer; "
            "from icm_depth_ros.node import camera_channel; s = TrackScorer(); s.summary(); "
            "print(sorted(m for m in ('motmetrics', 'pandas') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
