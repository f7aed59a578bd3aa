"""RoundRobinFrames: latest-frame slots per camera, taken in turn (no ROS)."""
import threading
import time

import pytest

from icm_depth_ros.node.frame_scheduler import RoundRobinFrames


def test_one_camera_keeps_only_the_newest_frame_and_counts_drops():
    frames = RoundRobinFrames(1)
    assert frames.put(0, "a") is False and frames.put(0, "b") is True and frames.put(0, "c") is True
    assert frames.take(1, 0.1) == [(0, "c")] and frames.take(1, 0.01) == []
    taken = []
    worker = threading.Thread(target=lambda: taken.append(frames.take(1, 5.0)))
    worker.start()
    frames.put(0, "d")  # wakes the waiting taker
    worker.join(5)
    assert taken == [[(0, "d")]]
    frames.close()
    assert frames.take(1, 5.0) == [] and frames.closed


def test_cameras_take_turns_when_every_camera_always_has_a_frame():
    frames = RoundRobinFrames(3)
    served = []
    for turn in range(9):
        for camera in range(3):
            frames.put(camera, (camera, turn))
        served += [camera for camera, _ in frames.take(1)]
    assert served == [0, 1, 2] * 3  # every camera's newest frame gets its turn


def test_a_flooding_camera_does_not_starve_a_slow_one():
    """Camera 0 sends before every take, camera 1 every second, camera 2 every fourth: 2 gets every frame served."""
    frames = RoundRobinFrames(3)
    served = {0: 0, 1: 0, 2: 0}
    offered_2 = 0
    for turn in range(40):
        frames.put(0, turn)
        if turn % 2 == 0:
            frames.put(1, turn)
        if turn % 4 == 0:
            frames.put(2, turn)
            offered_2 += 1
        for camera, _ in frames.take(1):
            served[camera] += 1
    for _ in range(3):  # drain what still waits
        for camera, _ in frames.take(1, 0.0):
            served[camera] += 1
    assert served[2] == offered_2 == 10
    # 70 frames offered, 40 turns (+1 drained): camera 2 loses none; cameras 0 and 1 share the rest evenly
    assert served == {0: 16, 1: 15, 2: 10}


def test_batches_take_every_waiting_camera_and_rotate_the_first():
    frames = RoundRobinFrames(3)
    for camera in range(3):
        frames.put(camera, f"f{camera}")
    assert frames.take(3) == [(0, "f0"), (1, "f1"), (2, "f2")]
    frames.put(1, "g1")
    frames.put(2, "g2")
    assert frames.take(3) == [(1, "g1"), (2, "g2")]  # only the cameras with a frame; none waits for the others
    for camera in range(3):
        frames.put(camera, f"h{camera}")
    assert frames.take(2) == [(0, "h0"), (1, "h1")]  # the turn after camera 2 starts at camera 0
    assert frames.take(2) == [(2, "h2")]


def test_needs_a_camera():
    with pytest.raises(ValueError, match="at least one camera"):
        RoundRobinFrames(0)


def test_an_engine_smaller_than_the_camera_count_serves_every_camera_in_turn():
    """Three cameras always sending, an engine taking 2 (TensorRT --max-batch 2): each camera served equally often."""
    frames = RoundRobinFrames(3)
    served = {0: 0, 1: 0, 2: 0}
    for turn in range(30):
        for camera in range(3):
            frames.put(camera, (camera, turn))
        batch = frames.take(2)
        assert len(batch) == 2  # what is there, up to the engine's maximum
        for camera, _ in batch:
            served[camera] += 1
    assert served == {0: 20, 1: 20, 2: 20}


def test_a_batch_never_waits_for_a_camera_whose_frame_has_not_arrived():
    frames = RoundRobinFrames(3)
    frames.put(2, "only")
    start = time.monotonic()
    assert frames.take(3, timeout=5.0) == [(2, "only")]
    assert time.monotonic() - start < 1.0
