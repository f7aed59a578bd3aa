"""How depth_node talks to the ROS graph: the Fast DDS profile it brings, and input QoS that follows the camera.

Two measured problems (docs/node.md, "Transport"), one answer each:

* A 1242x375 rgb8 image (1.4 MB) is larger than Fast DDS's default shared-memory segment (512 kB), so
  it goes out in 64 kB fragments; best effort loses the whole image whenever one fragment is lost.
  ``apply_default_fastdds_profile`` therefore points Fast DDS at ``config/fastdds_shm_udp.xml`` (one
  16 MB shared-memory segment for this host, plus UDPv4 so that other hosts still see every topic)
  before rclpy.init, unless the user chose a Fast DDS configuration or opted out.
* The node cannot change how a camera driver's own participant sends. What it can choose is the
  reliability of its subscription: a reliable subscription has lost fragments resent, but does not
  match a best-effort publisher at all. ``input_qos: auto`` subscribes reliable exactly when every
  publisher of the topic offers reliable (what rclcpp and image_transport publishers default to), else
  best effort (REP 2003), and re-checks as publishers come and go. History stays keep-last with
  ``input_qos_depth`` (1): a slow model still drops old frames instead of queueing them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

PROFILE_NAME = "fastdds_shm_udp.xml"
OPT_OUT_VARIABLE = "ICM_DEPTH_ROS_FASTDDS_PROFILE"  # "off": leave Fast DDS as it is
FASTDDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
# Fast DDS also reads this file from the working directory by itself: a user's choice too.
FASTDDS_WORKING_DIRECTORY_FILE = "DEFAULT_FASTDDS_PROFILES.xml"
INPUT_QOS_CHOICES = ("auto", "sensor_data", "reliable")


def package_profile() -> Path:
    """config/fastdds_shm_udp.xml: beside the sources, else in the installed share/icm_depth_ros."""
    source = Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME
    if source.is_file():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("icm_depth_ros")) / "config" / PROFILE_NAME


@dataclass(frozen=True)
class TransportChoice:
    applied: bool  # True: this process now uses the package profile
    message: str  # one line for the log: what is used, and how to change it


def apply_default_fastdds_profile(environ=None, working_directory: Path | None = None) -> TransportChoice:
    """Set FASTDDS_DEFAULT_PROFILES_FILE to the package profile in ``environ`` (default os.environ) unless
    another RMW is selected, the user chose a Fast DDS configuration, or opted out. Call before rclpy.init."""
    environ = os.environ if environ is None else environ
    working_directory = Path.cwd() if working_directory is None else working_directory
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw not in FASTDDS_RMWS:
        return TransportChoice(False, f"transport: {rmw} as configured (the package's Fast DDS profile applies to "
                                      "Fast DDS only; see docs/node.md for large images with other RMWs)")
    if environ.get(OPT_OUT_VARIABLE, "").lower() in ("off", "0", "false", "no"):
        return TransportChoice(False, f"transport: Fast DDS defaults ({OPT_OUT_VARIABLE}={environ[OPT_OUT_VARIABLE]}); "
                                      "images over 512 kB may then be lost between processes")
    for variable in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
        if environ.get(variable):
            return TransportChoice(False, f"transport: your Fast DDS configuration ({variable}={environ[variable]}), "
                                          "not the package profile")
    if (working_directory / FASTDDS_WORKING_DIRECTORY_FILE).is_file():
        return TransportChoice(False, f"transport: your Fast DDS profile {working_directory / FASTDDS_WORKING_DIRECTORY_FILE}"
                                      " (read by Fast DDS from the working directory), not the package profile")
    profile = package_profile()
    environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return TransportChoice(True, f"transport: Fast DDS profile {profile} (16 MB shared memory on this host + UDPv4 "
                                 "for other hosts), so that large images arrive whole; opt out with "
                                 f"{OPT_OUT_VARIABLE}=off or choose your own with FASTDDS_DEFAULT_PROFILES_FILE")


def reliability_for(offered: list[ReliabilityPolicy]) -> ReliabilityPolicy:
    """Subscription reliability for publishers offering ``offered``: reliable only when there are publishers
    and all of them are reliable (a reliable subscription never matches a best-effort publisher)."""
    if offered and all(policy == ReliabilityPolicy.RELIABLE for policy in offered):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def input_qos(reliability: ReliabilityPolicy, depth: int) -> QoSProfile:
    """Keep-last ``depth``, volatile: only the newest frames wait, whatever the reliability."""
    return QoSProfile(reliability=reliability, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST, depth=depth)


def output_qos(profile: str, depth: int) -> QoSProfile:
    """Publishers: 'reliable' (matches every subscriber) or 'sensor_data' (best effort)."""
    reliability = ReliabilityPolicy.BEST_EFFORT if profile == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(reliability=reliability, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST, depth=depth)


class InputSubscription:
    """One input subscription whose reliability follows ``mode``: 'auto' (the publishers', see
    reliability_for), 'sensor_data' (best effort) or 'reliable'. ``refresh()`` re-creates it when the
    publishers' offer changes the choice; the node calls it from a timer."""

    def __init__(self, node, message_type, topic: str, callback, mode: str, depth: int):
        self.node, self.message_type, self.callback = node, message_type, callback
        self.mode, self.depth = mode, depth
        self.topic_name = node.resolve_topic_name(topic)
        self.reliability = self._wanted()
        self._subscription = node.create_subscription(message_type, topic, callback,
                                                      input_qos(self.reliability, depth))

    def _wanted(self) -> ReliabilityPolicy:
        if self.mode == "reliable":
            return ReliabilityPolicy.RELIABLE
        if self.mode == "sensor_data":
            return ReliabilityPolicy.BEST_EFFORT
        offered = [info.qos_profile.reliability for info in self.node.get_publishers_info_by_topic(self.topic_name)]
        return reliability_for(offered)

    def refresh(self) -> bool:
        """Re-subscribe if the publishers now call for the other reliability; True when it did."""
        if self.mode != "auto" or self._subscription is None:
            return False
        wanted = self._wanted()
        if wanted == self.reliability:
            return False
        self.node.destroy_subscription(self._subscription)
        self.reliability = wanted
        self._subscription = self.node.create_subscription(self.message_type, self.topic_name, self.callback,
                                                           input_qos(wanted, self.depth))
        why = ("every publisher offers reliable: lost fragments are resent" if wanted == ReliabilityPolicy.RELIABLE
               else "a best-effort publisher (or none) is on the topic")
        self.node.get_logger().info(f"{self.topic_name}: subscription now {self.describe()} ({why})")
        return True

    def describe(self) -> str:
        kind = "reliable" if self.reliability == ReliabilityPolicy.RELIABLE else "best effort"
        return f"{kind}, keep last {self.depth}" + (", input_qos auto" if self.mode == "auto" else "")

    def destroy(self) -> None:
        if self._subscription is not None:
            self.node.destroy_subscription(self._subscription)
            self._subscription = None
