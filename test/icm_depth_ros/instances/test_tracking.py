"""instances/tracking.py and kinematics.py: stamps, gaps, id rules, association, time-to-contact fusion and
the calibration of the stated standard deviations, on objects whose true motion is known."""
import math

import numpy as np
import pytest

from icm_depth_ros.instances import kinematics
from icm_depth_ros.instances.statistics import Instance
from icm_depth_ros.instances.tracking import InstanceTracker, TrackerConfig, TrackIds

FOCAL = 500.0  # pixels
IMAGE = (400, 1000)  # height, width
CENTRE = (500.0, 200.0)


def seen(label: int, range_m: float, x_m: float = 0.0, width_m: float = 1.8, height_m: float = 1.5,
         spread_m: float = 0.0, pixels: int | None = None, confidence: float = 1.0) -> Instance:
    """The instance a camera sees of a box ``width_m`` x ``height_m`` whose near face is ``range_m`` ahead."""
    u = CENTRE[0] + FOCAL * x_m / range_m
    half_w, half_h = FOCAL * width_m / range_m / 2, FOCAL * height_m / range_m / 2
    bbox = (int(round(u - half_w)), int(round(CENTRE[1] - half_h)), int(round(u + half_w)), int(round(CENTRE[1] + half_h)))
    count = pixels if pixels is not None else (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])
    return Instance(id=label, class_id=-1, bbox=bbox, median_depth=range_m + spread_m, near_depth=range_m,
                    centroid=(x_m, 0.0, range_m + spread_m), pixel_count=count, confidence=confidence)


def drive(tracker, frames):
    """frames: [(stamp, [Instance])] -> [TRACK_DTYPE [n]] per frame."""
    return [tracker.update(stamp, instances, IMAGE) for stamp, instances in frames]


def test_a_closing_object_gets_its_range_rate_and_time_to_contact():
    tracker = InstanceTracker(TrackerConfig(range_noise_fraction=0.02), TrackIds())  # exact depth here
    out = drive(tracker, [(0.1 * k, [seen(1, 40.0 - 1.0 * k)]) for k in range(25)])  # 10 m/s closing
    last = out[-1][0]
    assert last["track_id"] == 1
    assert last["range"] == pytest.approx(16.0, abs=0.1)
    assert last["range_rate"] == pytest.approx(-10.0, abs=0.3)
    assert last["ttc"] == pytest.approx(1.6, rel=0.08) and abs(last["ttc"] - 1.6) <= last["ttc_std"]
    assert 0 < last["ttc_std"] < 0.3 and 0 < last["range_rate_std"] < 2.0 and 0 < last["range_std"] < 1.0


def test_a_standing_object_reads_no_closing_speed_and_infinite_time_to_contact():
    rng = np.random.default_rng(0)
    tracker = InstanceTracker(TrackerConfig(), TrackIds())
    # the depth jitters by 0.5 % (10 cm at 20 m) from frame to frame
    out = drive(tracker, [(0.1 * k, [seen(1, 20.0 * (1 + 0.005 * rng.standard_normal()))]) for k in range(60)])
    rates = np.array([frame[0]["range_rate"] for frame in out[10:]])
    assert np.abs(rates).max() < 0.5
    ttc = np.array([frame[0]["ttc"] for frame in out[10:]])
    assert (np.isinf(ttc) | (ttc > 15)).all()  # never a time to contact that would warn


def test_not_closing_gives_infinite_time_to_contact_and_std():
    tracker = InstanceTracker(TrackerConfig(), TrackIds())
    out = drive(tracker, [(0.1 * k, [seen(1, 10.0 + 0.5 * k)]) for k in range(20)])  # receding at 5 m/s
    assert out[-1][0]["range_rate"] == pytest.approx(5.0, abs=0.3)
    assert math.isinf(out[-1][0]["ttc"]) and math.isinf(out[-1][0]["ttc_std"])


def test_tracks_are_confirmed_after_k_hits_and_end_after_m_misses_and_ids_are_never_reused():
    tracker = InstanceTracker(TrackerConfig(confirm_hits=3, max_misses=2), TrackIds())
    frames = [(0.1 * k, [seen(1, 30.0)]) for k in range(4)]
    frames += [(0.1 * k, []) for k in range(4, 6)]  # two misses: the track ends
    frames += [(0.1 * k, [seen(1, 30.0)]) for k in range(6, 10)]  # the same object again: a new track
    out = drive(tracker, frames)
    ids = [int(frame[0]["track_id"]) if len(frame) else None for frame in out]
    assert ids == [0, 0, 1, 1, None, None, 0, 0, 2, 2]
    assert np.isnan(out[0][0]["range"])  # tentative: no kinematics reported


def test_one_miss_does_not_end_a_confirmed_track():
    tracker = InstanceTracker(TrackerConfig(confirm_hits=2, max_misses=3), TrackIds())
    out = drive(tracker, [(0.0, [seen(1, 30.0)]), (0.1, [seen(1, 29.0)]), (0.2, []), (0.3, [seen(1, 27.0)])])
    assert out[-1][0]["track_id"] == 1
    assert out[-1][0]["range_rate"] < -5  # the filter bridged the gap: still closing at ~10 m/s


def test_a_tentative_track_missed_once_is_dropped():
    tracker = InstanceTracker(TrackerConfig(confirm_hits=3), TrackIds())
    drive(tracker, [(0.0, [seen(1, 30.0)]), (0.1, [])])
    assert tracker.count == 0


def test_ids_are_unique_across_the_cameras_of_one_node():
    ids = TrackIds()
    front, left = InstanceTracker(TrackerConfig(confirm_hits=1), ids), InstanceTracker(TrackerConfig(confirm_hits=1), ids)
    a = front.update(0.0, [seen(1, 20.0), seen(2, 30.0, x_m=5.0)], IMAGE)
    b = left.update(0.0, [seen(1, 20.0)], IMAGE)
    assert sorted(a["track_id"].tolist() + b["track_id"].tolist()) == [1, 2, 3]


def test_renumbered_clusters_keep_their_tracks_by_geometry():
    """Network clusters: id 1 is whichever region is largest this frame. The ids swap; the tracks do not."""
    tracker = InstanceTracker(TrackerConfig(confirm_hits=1), TrackIds(), stable_labels=False)
    frames = []
    for k in range(10):
        near, far = seen(0, 15.0 - 0.5 * k, x_m=-3.0), seen(0, 25.0, x_m=3.0)
        labels = (1, 2) if k % 2 == 0 else (2, 1)
        frames.append((0.1 * k, [near._replace(id=labels[0]), far._replace(id=labels[1])]))
    out = drive(tracker, frames)
    assert {tuple(frame["track_id"]) for frame in out} == {(1, 2)}


def test_stable_label_ids_decide_between_two_objects_that_pass_each_other():
    """Two equal objects crossing at the same range: geometry alone cannot tell them apart where their
    boxes coincide; a panoptic tracker's ids can."""
    def frames():
        for k in range(11):
            x = -2.0 + 0.4 * k
            yield 0.1 * k, [seen(7, 20.0, x_m=x), seen(9, 20.0, x_m=-x)]

    tracker = InstanceTracker(TrackerConfig(confirm_hits=1), TrackIds(), stable_labels=True)
    out = drive(tracker, frames())
    assert {tuple(frame["track_id"]) for frame in out} == {(1, 2)}


@pytest.mark.parametrize("stamp", [0.2, 0.15], ids=["repeated", "out_of_order"])
def test_a_stamp_that_is_not_newer_is_not_tracked_and_changes_nothing(stamp):
    tracker = InstanceTracker(TrackerConfig(confirm_hits=1), TrackIds())
    drive(tracker, [(0.1, [seen(1, 30.0)]), (0.2, [seen(1, 29.0)])])
    before = (tracker.range_state.copy(), tracker.range_cov.copy(), tracker.hits.copy())
    out = tracker.update(stamp, [seen(1, 10.0)], IMAGE)
    assert out["track_id"].tolist() == [0] and np.isnan(out["range"][0])
    assert tracker.skipped_stamps == 1 and tracker.last_stamp == 0.2
    for kept, now in zip(before, (tracker.range_state, tracker.range_cov, tracker.hits)):
        np.testing.assert_array_equal(kept, now)


def test_a_large_gap_in_stamps_ends_every_track():
    tracker = InstanceTracker(TrackerConfig(confirm_hits=1, max_gap_s=1.0), TrackIds())
    out = drive(tracker, [(0.0, [seen(1, 30.0)]), (0.1, [seen(1, 29.0)]), (5.0, [seen(1, 29.0)])])
    assert [int(frame["track_id"][0]) for frame in out] == [1, 1, 2]
    assert out[-1]["range_rate"][0] == 0.0  # a new filter: no speed carried over 4.9 s


def test_an_instance_without_depth_starts_no_track():
    tracker = InstanceTracker(TrackerConfig(confirm_hits=1), TrackIds())
    out = tracker.update(0.0, [seen(1, 30.0)._replace(near_depth=float("nan"), median_depth=float("nan"),
                                                        centroid=(float("nan"),) * 3)], IMAGE)
    assert out["track_id"].tolist() == [0] and tracker.count == 0


def test_time_to_contact_fuses_the_two_cues_by_their_variances():
    def covariance(rate_variance):
        return np.diag([0.0, rate_variance, 1.0])[None]

    range_state = np.array([[20.0, -5.0, 0.0]])  # range cue: eta = 5 / 20 = 0.25 per second
    range_cov = covariance(0.01)  # var(eta) = var(v) / r^2 = 0.01 / 400
    scale_state = np.array([[2.0, -1.0, 0.0]])  # scale cue: eta = 1 / 2; var(eta) = var(rate) / 2^2
    for scale_var, expected_eta in ((4 * 0.01 / 400, 0.375), (1e9, 0.25)):
        ttc, ttc_std = kinematics.time_to_contact(range_state, range_cov, scale_state, covariance(scale_var),
                                                  np.array([True]))
        assert ttc[0] == pytest.approx(1 / expected_eta, rel=1e-6)
    eta_std = math.sqrt(1 / (400 / 0.01 + 400 / 0.01))
    ttc, ttc_std = kinematics.time_to_contact(range_state, range_cov, scale_state, covariance(4 * 0.01 / 400),
                                              np.array([True]))
    assert ttc_std[0] == pytest.approx(eta_std / 0.375 ** 2, rel=1e-6)
    ttc, _ = kinematics.time_to_contact(range_state, range_cov, scale_state, covariance(1e-12), np.array([False]))  # scale filter not ready: the range cue alone
    assert ttc[0] == pytest.approx(4.0)


def test_the_scale_cue_is_immune_to_a_metric_bias_in_depth():
    """Depth that reads 30 % short with a bias that drifts over time: the scale cue carries the truth in."""
    truth = [40.0 - 1.0 * k for k in range(30)]
    biased = [r * (0.7 + 0.01 * k) for k, r in enumerate(truth)]  # the bias changes by 1 % per frame
    out_biased = drive(InstanceTracker(TrackerConfig(), TrackIds()),
                       [(0.1 * k, [seen(1, truth[k])._replace(near_depth=b, median_depth=b)]) for k, b in enumerate(biased)])
    true_ttc = truth[-1] / 10.0
    range_only = biased[-1] / -((biased[-1] - biased[-2]) / 0.1)  # what the range cue alone would say
    assert abs(out_biased[-1][0]["ttc"] - true_ttc) < abs(range_only - true_ttc)


def test_the_stated_std_covers_68_percent_of_errors_when_the_motion_fits_the_model():
    """Monte Carlo: objects whose jerk changes every frame with the std the filter assumes, depth noise of
    the size it assumes. A consistent filter has about 68 % of its errors within one std. (How well that
    holds on drives that do not fit the model is measured by bench/tracking.py, not asserted.)"""
    rng = np.random.default_rng(1)
    rate_inside, ttc_inside = [], []
    for run in range(60):
        tracker = InstanceTracker(TrackerConfig(jerk_std=10.0, range_noise_fraction=0.02), TrackIds())
        r, v, a = 45.0, -8.0, 0.0
        for k in range(60):
            measured = r * (1 + 0.02 * rng.standard_normal())
            out = tracker.update(0.1 * k, [seen(1, r)._replace(near_depth=measured, median_depth=measured)], IMAGE)[0]
            if k >= 10:
                rate_inside.append(abs(out["range_rate"] - v) <= out["range_rate_std"])
                if v < 0 and r / -v < 6.0:
                    ttc_inside.append(abs(out["ttc"] - r / -v) <= out["ttc_std"])
            j, dt = 10.0 * rng.standard_normal(), 0.1  # constant over the step, as the process noise model
            r, v, a = r + v * dt + a * dt ** 2 / 2 + j * dt ** 3 / 6, v + a * dt + j * dt ** 2 / 2, a + j * dt
            if r < 5:
                break
    assert len(rate_inside) > 1500 and len(ttc_inside) > 500
    assert 0.62 <= np.mean(rate_inside) <= 0.76, np.mean(rate_inside)
    assert 0.55 <= np.mean(ttc_inside) <= 0.8, np.mean(ttc_inside)


def test_a_braking_lead_vehicle_is_followed_without_lag():
    """Constant deceleration for seconds (the case forward collision warning is for): the constant-
    acceleration filter closes its lag once it has seen the deceleration (here 2.5 s after the onset,
    with the default measurement noise), where a constant-velocity one would lag by a fixed amount."""
    tracker = InstanceTracker(TrackerConfig(), TrackIds())
    r, v = 30.0, 0.0
    rates = []
    for k in range(45):
        out = tracker.update(0.1 * k, [seen(1, r)], IMAGE)[0]
        if k >= 35:
            rates.append((out["range_rate"], v))
        if k >= 10:  # brakes at 4 m/s^2 from 1 s on
            r, v = r + v * 0.1 - 2.0 * 0.01, v - 0.4
        else:
            r += v * 0.1
    assert max(abs(estimate - true) for estimate, true in rates) < 0.3


@pytest.mark.parametrize("field, value, message", [
    ("confirm_hits", 0, "track_confirm_hits=0 must be >= 1"),
    ("min_iou", 1.5, "track_min_iou=1.5 must be in (0, 1]"),
    ("gate_m", -1.0, "track_gate_m=-1.0 must be > 0"),
])
def test_bad_tracking_parameters_are_refused_with_their_name_and_value(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        TrackerConfig(**{field: value})


def test_with_stable_labels_a_shown_label_stays_with_its_track_and_a_new_label_may_continue_a_lost_one():
    tracker = InstanceTracker(TrackerConfig(confirm_hits=1), TrackIds(), stable_labels=True)
    first = tracker.update(0.0, [seen(7, 20.0, x_m=0.0), seen(9, 20.5, x_m=0.8)], IMAGE)
    # label 7 is gone; 9 now sits where 7 was: it stays on its own track, 7's track is missed
    second = tracker.update(0.1, [seen(9, 20.0, x_m=0.0)], IMAGE)
    assert first["track_id"].tolist() == [1, 2] and second["track_id"].tolist() == [2]
    # the segmentation renumbers the lost object 7 as 12: geometry continues track 1
    third = tracker.update(0.2, [seen(9, 20.0, x_m=0.0), seen(12, 20.0, x_m=0.1)], IMAGE)
    assert third["track_id"].tolist() == [2, 1]
