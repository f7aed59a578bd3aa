"""A private ROS 2 graph on this machine, for the demo, benchmarks and tests: environment and node stop.

Plain Python (no rclpy import), so scripts can prepare a child process's environment before ROS starts.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

# What depth_node applies to itself (transport.py); given to both sides here, as a camera driver on the
# same host should have it, so that best-effort 1.4 MB images arrive whole.
FASTDDS_PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_shm_udp.xml"
# ROS_DOMAIN_ID ranges kept apart, so a demo, a benchmark and the tests running at once never see each
# other's nodes. Fast DDS's port rule (7400 + 250 x domain + ...) keeps ids at or below 232.
TEST_DOMAIN_IDS = range(100, 170)
BENCH_DOMAIN_IDS = range(170, 200)
DEMO_DOMAIN_IDS = range(200, 233)


def pick_domain_id(ids: range = TEST_DOMAIN_IDS) -> int:
    """A random ROS_DOMAIN_ID from ``ids`` (one of the ranges above)."""
    return random.choice(ids)


def local_ros_environment(domain_id: int | None = None, shm: bool = True,
                          base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default os.environ) plus a private ROS_DOMAIN_ID (random from TEST_DOMAIN_IDS unless given),
    localhost-only discovery, Fast DDS, unbuffered output and, with ``shm``, the package's Fast DDS profile
    (16 MB shared memory + UDPv4) for every process of the graph."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else pick_domain_id())
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    if shm:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    return env


# The variables by which a user chooses a Fast DDS configuration (transport.py leaves the choice to them).
FASTDDS_CHOICE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
                            "FASTDDS_BUILTIN_TRANSPORTS", "ICM_DEPTH_ROS_FASTDDS_PROFILE")

# A participant with UDPv4 only: stands in for a process on another host (or in a container without this
# host's /dev/shm), which shares no memory segment with the node.
UDP_ONLY_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <transport_descriptors><transport_descriptor>
    <transport_id>udp_only</transport_id><type>UDPv4</type>
  </transport_descriptor></transport_descriptors>
  <participant profile_name="udp_only_participant" is_default_profile="true"><rtps>
    <userTransports><transport_id>udp_only</transport_id></userTransports>
    <useBuiltinTransports>false</useBuiltinTransports>
  </rtps></participant>
</profiles></dds>
"""


def default_fastdds_environment(domain_id: int | None = None) -> dict[str, str]:
    """A private localhost graph with no Fast DDS configuration chosen: what a user's shell has."""
    env = local_ros_environment(domain_id, shm=False)
    for variable in FASTDDS_CHOICE_VARIABLES:
        env.pop(variable, None)
    return env


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGINT (a node shuts down cleanly), then kill if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode
