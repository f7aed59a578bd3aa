"""Closing-object drives: scripted motion, the per-instance truth over time, and its bag topic."""
from __future__ import annotations

import numpy as np
import pytest

from training.data.synthetic.closing import SCENARIOS, build_closing_scene, render_closing_drive
from training.data.synthetic.render import PartTable, part_centers

SIZE = (96, 320)


@pytest.fixture(scope="module")
def braking():
    return render_closing_drive("lead_braking", SIZE, seed=0)


def actor_rows(frames):
    return [frame["truth"][frame["truth"]["actor"] == 1] for frame in frames]


def test_a_part_accelerates_only_in_its_phase_and_keeps_the_speed_it_reached():
    scene, actors = build_closing_scene("lead_braking", seed=0)
    table = PartTable(scene.parts)
    part = np.flatnonzero(table.instance == next(iter(actors)))[0]
    z = [part_centers(table, t)[part, 2] - table.center[part, 2] for t in (0.5, 1.0, 2.0, 4.0, 5.0)]
    # 12 m/s, braking at 4 m/s^2 from t = 1 s for 3 s (to a standstill), then standing
    assert z == pytest.approx([6.0, 12.0, 24.0 - 2.0, 48.0 - 18.0, 60.0 - 18.0 - 12.0 * 1.0])


def test_braking_lead_truth_follows_the_script(braking):
    rows = actor_rows(braking)
    assert all(len(row) == 1 for row in rows)  # the lead car is seen in every frame, one instance
    assert len({int(row["id"][0]) for row in rows}) == 1  # one stable id over the drive
    first = rows[0][0]
    for time_s, row in ((0.5, rows[5][0]), (2.0, rows[20][0]), (3.5, rows[35][0])):
        braking_for = max(time_s - 1.0, 0.0)  # the ego keeps 12 m/s, the lead loses 4 m/s per second
        assert row["range_rate"] == pytest.approx(-4.0 * braking_for, abs=1e-3)
        assert row["range"] == pytest.approx(first["range"] - 2.0 * braking_for ** 2, abs=1e-3)
        expected_ttc = np.inf if braking_for == 0 else row["range"] / (4.0 * braking_for)
        assert row["ttc"] == pytest.approx(expected_ttc, rel=1e-4)
    assert first["class"] == 13 and first["pixel_count"] > 0  # Cityscapes car
    labels = braking[20]["instances"]
    rows_, columns = np.nonzero(labels == rows[20][0]["id"])
    assert (rows[20][0]["u0"], rows[20][0]["v1"]) == (columns.min(), rows_.max() + 1)


def test_the_true_range_is_the_near_surface_the_rendered_depth_shows(braking):
    """The truth comes from geometry; the rendered depth of the object's nearest pixels agrees with it."""
    for frame, row in zip(braking[::10], actor_rows(braking)[::10]):
        depth = frame["depth"][frame["instances"] == row["id"][0]]
        assert depth.min() == pytest.approx(float(row["range"][0]), abs=0.05)


def test_standing_scenario_has_no_motion_relative_to_the_camera():
    frames = render_closing_drive("standing", SIZE, seed=0)
    rows = np.concatenate(actor_rows(frames))
    assert len(rows) >= len(frames) and np.abs(rows["range_rate"]).max() < 1e-6 and np.isinf(rows["ttc"]).all()


def test_every_scenario_closes_in_and_an_unknown_one_is_named():
    for name, scenario in SCENARIOS.items():
        if scenario.ego_speed > 0:
            scene, actors = build_closing_scene(name, seed=1)
            assert actors and scene.ego_speed == scenario.ego_speed
    with pytest.raises(ValueError, match="scenario 'tailgate' is not one of lead_braking"):
        build_closing_scene("tailgate")


def test_the_bag_carries_the_truth_topic(tmp_path, braking):
    from pathlib import Path

    from rosbags.highlevel import AnyReader

    from icm_depth_ros.replay.track_truth import truth_from_cloud
    from training.data.synthetic import write_bag

    write_bag(tmp_path / "bag", braking[:3])
    with AnyReader([Path(tmp_path / "bag")]) as reader:
        assert reader.topics["/camera/instances_truth"].msgtype == "sensor_msgs/msg/PointCloud2"
        connections = [c for c in reader.connections if c.topic == "/camera/instances_truth"]
        read = [truth_from_cloud(reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages(connections)]
    for frame, truth in zip(braking[:3], read):
        np.testing.assert_array_equal(truth, frame["truth"])


def test_several_scenarios_make_one_drive_with_unique_ids_and_a_gap(tmp_path):
    from training.data.synthetic.closing import ID_OFFSET, SCENARIO_GAP_S, main, render_closing_drives

    frames = render_closing_drives(["standing", "oncoming"], SIZE, seed=0)
    assert len(frames) == SCENARIOS["standing"].frames + SCENARIOS["oncoming"].frames
    first, second = frames[: SCENARIOS["standing"].frames], frames[SCENARIOS["standing"].frames:]
    gap_ns = second[0]["stamp_ns"] - first[-1]["stamp_ns"]
    assert gap_ns == int(SCENARIO_GAP_S * 1e9)
    ids_first = {int(i) for f in first for i in f["truth"]["id"]}
    ids_second = {int(i) for f in second for i in f["truth"]["id"]}
    assert not ids_first & ids_second and min(ids_second) > ID_OFFSET
    for frame in second:  # the label image carries the same offset ids as the truth
        assert set(np.unique(frame["instances"])) - {0} == {int(i) for i in frame["truth"]["id"]}
    assert main(["--out", str(tmp_path / "bag"), "--size", "48x160", "--scenarios", "standing"]) == 0
    assert (tmp_path / "bag" / "metadata.yaml").is_file()
