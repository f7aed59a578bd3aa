"""The node's transport and parameter rules without a ROS graph: which Fast DDS profile it applies and when
not, the input reliability it picks for the publishers it sees, how values are typed and run-time sets
judged, and that signals are recorded instead of raised."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from rclpy.qos import ReliabilityPolicy  # noqa: E402

from icm_depth_ros.node.node_parameters import LIVE_PARAMETERS, PARAMETERS, coerce_value  # noqa: E402
from icm_depth_ros.node.ros_parameters import CONFIGURE_HINT, check_change, unknown_parameter_warning  # noqa: E402
from icm_depth_ros.node.signal_stop import SignalStop  # noqa: E402
from icm_depth_ros.node.transport import (  # noqa: E402
    OPT_OUT_VARIABLE, apply_default_fastdds_profile, package_profile, reliability_for,
)

DEFAULTS = {name: default for name, (default, _, _) in PARAMETERS.items()}


def test_profile_is_applied_only_when_the_user_chose_none(tmp_path):
    environ = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    choice = apply_default_fastdds_profile(environ, tmp_path)
    assert choice.applied and environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(package_profile())
    assert OPT_OUT_VARIABLE in choice.message and "UDPv4" in choice.message

    mine = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"}
    choice = apply_default_fastdds_profile(mine, tmp_path)
    assert not choice.applied and mine["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/my_profile.xml"
    assert "/etc/my_profile.xml" in choice.message

    for environ in ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, {OPT_OUT_VARIABLE: "off"},
                    {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}):
        before = dict(environ)
        assert not apply_default_fastdds_profile(environ, tmp_path).applied
        assert environ == before, environ

    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")  # Fast DDS reads it from the cwd itself
    environ = {}
    assert not apply_default_fastdds_profile(environ, tmp_path).applied and environ == {}


def test_input_reliability_follows_the_publishers():
    reliable, best_effort = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
    assert reliability_for([reliable]) == reliable
    assert reliability_for([reliable, reliable]) == reliable
    assert reliability_for([reliable, best_effort]) == best_effort  # reliable would not match the second
    assert reliability_for([]) == best_effort  # nobody yet: the choice that matches anyone


def test_values_are_typed_like_the_defaults():
    assert coerce_value("max_depth", 80) == 80.0 and type(coerce_value("max_depth", 80)) is float
    assert coerce_value("input_qos_depth", 3) == 3
    with pytest.raises(ValueError, match=r"parameter input_qos_depth='one' has type string; it must be integer"):
        coerce_value("input_qos_depth", "one")
    with pytest.raises(ValueError, match=r"parameter publish_markers=1 has type integer; it must be bool"):
        coerce_value("publish_markers", 1)
    with pytest.raises(ValueError, match="min_depth"):
        coerce_value("min_depth", "near")
    assert unknown_parameter_warning("resize_polcy").endswith("did you mean 'resize_policy'?")
    assert "did you mean" not in unknown_parameter_warning("completely_different")


def test_run_time_sets_are_checked_then_applied_live_or_refused_with_what_to_do():
    assert check_change(DEFAULTS, {"max_depth": 40.0, "publish_colorized": False}, configured=True) is None
    reason = check_change(DEFAULTS, {"output_resolution": "model"}, configured=True)
    assert CONFIGURE_HINT in reason and reason.startswith("output_resolution")
    assert check_change(DEFAULTS, {"output_resolution": "model"}, configured=False) is None  # read at configure
    assert "not one of resize, crop, letterbox" in check_change(DEFAULTS, {"resize_policy": "stretch"}, configured=False)
    assert "must be >= 0" in check_change(DEFAULTS, {"max_depth": -5.0}, configured=True)
    assert "read when the node starts" in check_change(DEFAULTS, {"autostart": False}, configured=False)
    assert {"min_depth", "max_depth", "publish_colorized", "publish_markers", "error_throttle_s"} <= LIVE_PARAMETERS


def test_signals_are_recorded_not_raised():
    # whatever this process had before: the default handler in a terminal, SIG_IGN when started in the
    # background (`cmd &`, nohup), where SIGINT is inherited as ignored
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    stop = SignalStop().install()
    try:
        for number in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), number)  # the handler runs before kill returns to Python code
        assert stop.requested and stop.received == ["SIGINT", "SIGINT", "SIGTERM"]
    finally:
        stop.restore()
    assert {number: signal.getsignal(number) for number in before} == before


def test_signals_are_recorded_when_the_process_started_with_sigint_ignored():
    """A suite started as a background job inherits SIGINT ignored; installing and restoring keeps that."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop = SignalStop().install()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == ["SIGINT"]
        stop.restore()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_package_profile_is_the_shipped_file():
    assert package_profile() == Path(__file__).resolve().parents[3] / "config" / "fastdds_shm_udp.xml"


def test_demo_benchmarks_and_tests_use_ros_domain_ranges_apart():
    from icm_depth_ros.node.local_graph import BENCH_DOMAIN_IDS, DEMO_DOMAIN_IDS, TEST_DOMAIN_IDS

    ranges = [set(TEST_DOMAIN_IDS), set(BENCH_DOMAIN_IDS), set(DEMO_DOMAIN_IDS)]
    assert all(not a & b for i, a in enumerate(ranges) for b in ranges[i + 1:])
    assert max(DEMO_DOMAIN_IDS) <= 232  # Fast DDS's port rule
    root = Path(__file__).resolve().parents[3]
    assert "pick_domain_id(DEMO_DOMAIN_IDS)" in (root / "scripts" / "demo.py").read_text()
    for bench in ("node_transport.py", "node_realtime.py"):
        assert "pick_domain_id(BENCH_DOMAIN_IDS)" in (root / "bench" / bench).read_text()
    by_hand = [path.name for path in (root / "test").rglob("*.py")
               if path != Path(__file__).resolve() and "random.randint(1" in path.read_text()]
    assert by_hand == []  # the tests take their ids from TEST_DOMAIN_IDS (pick_domain_id's default)
