"""Read the topics a replay evaluation needs from a rosbag2 (sqlite3, mcap) or ROS 1 bag, without ROS.

``rosbags``' AnyReader reads all three. Two passes over the bag keep memory bounded on long drives:
``BagSource.stamps`` reads every selected message once for its header stamp only, the pairing is
decided on stamps (pairing.py), and ``BagSource.messages`` then streams the messages again so that
each frame is assembled and dropped as soon as its parts have arrived.

Arrays follow the node's conventions (image_conversion.py): colour as uint8 [H, W, 3] RGB, ground
truth as float32 [H, W] metres with NaN where there is no measurement, instance labels as [H, W] int.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from icm_depth_ros.processing.image_conversion import COLOR_ENCODINGS, LABEL_ENCODINGS, image_to_array, to_rgb
from icm_depth_ros.replay.track_truth import truth_from_cloud

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
GT_ENCODINGS = ("32FC1", "16UC1")  # REP 118: metres as float, or millimetres with 0 = no measurement


class BagError(ValueError):
    """The bag cannot be evaluated as asked (missing file, topic or wrong type); the text says what to change."""


class DecodeError(ValueError):
    """One message cannot be turned into an array; the frame that needs it is skipped and counted."""


@dataclass(frozen=True)
class TopicSelection:
    """The bag topics of one camera. ``camera_info``, ``depth`` (ground truth) and ``instances`` are
    optional ('' = none): without ground truth the drive is run but not scored, without camera_info
    instance centroids have no x/y. ``truth``: per-instance truth over time (track_truth.py), for
    scoring tracks; optional."""

    image: str
    camera_info: str
    depth: str
    instances: str = ""
    truth: str = ""

    def roles(self) -> dict[str, str]:
        """role -> topic for the topics in use (role: 'image', 'camera_info', 'depth', 'instances', 'truth')."""
        roles = {"image": self.image, "camera_info": self.camera_info, "depth": self.depth,
                 "instances": self.instances, "truth": self.truth}
        return {role: topic for role, topic in roles.items() if topic or role == "image"}

    def missing_notes(self) -> list[str]:
        """One sentence per optional topic left out, said once per run (stderr, metrics.json, report.md)."""
        notes = []
        if not self.depth:
            notes.append("no ground-truth topic: frames are run and reported, depth metrics are not available")
        if not self.camera_info:
            notes.append("no camera_info topic: depth is predicted (and scored) as usual, instance centroids x/y "
                         "are NaN")
        return notes


EXPECTED_TYPES = {"image": IMAGE_TYPE, "camera_info": CAMERA_INFO_TYPE, "depth": IMAGE_TYPE, "instances": IMAGE_TYPE,
                  "truth": POINT_CLOUD_TYPE}


def default_typestore():
    """Types for bags that do not embed their message definitions (old sqlite3 rosbag2)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


class BagSource:
    """An open bag restricted to the topics of ``selection``; use as a context manager.

    Raises BagError when the bag cannot be opened, or a selected topic is missing (the text lists the
    topics the bag has, with their types) or has the wrong message type.
    """

    def __init__(self, path: str | Path, selection: TopicSelection):
        from rosbags.highlevel import AnyReader, AnyReaderError

        self.path = Path(path)
        self.selection = selection
        if not self.path.exists():
            raise BagError(f"bag {str(self.path)!r}: no such file or directory")
        try:
            self.reader = AnyReader([self.path], default_typestore=default_typestore())
            self.reader.open()
        except (AnyReaderError, OSError, ValueError) as error:
            raise BagError(f"bag {str(self.path)!r}: rosbags cannot open it: {error}") from None
        try:
            self._check_topics()
        except BagError:
            self.reader.close()
            raise
        self.connections = {
            role: [c for c in self.reader.connections if c.topic == topic]
            for role, topic in selection.roles().items()
        }
        self._role_of_topic = {topic: role for role, topic in selection.roles().items()}

    def __enter__(self) -> "BagSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.reader.close()

    @property
    def is_ros1(self) -> bool:
        return not self.reader.is2

    @property
    def storage(self) -> str:
        """'ros1', 'sqlite3' or 'mcap'."""
        if self.is_ros1:
            return "ros1"
        return "mcap" if any(p.suffix == ".mcap" for p in self.path.rglob("*")) else "sqlite3"

    def topic_table(self) -> str:
        """'  /topic (type, N msgs)' lines for every topic of the bag, for error messages and --list."""
        lines = [f"  {name} ({info.msgtype}, {info.msgcount} msgs)" for name, info in sorted(self.reader.topics.items())]
        return "\n".join(lines) or "  (none)"

    def _check_topics(self) -> None:
        topics = self.reader.topics
        for role, topic in self.selection.roles().items():
            option = "--" + role.replace("_", "-") + "-topic"
            if topic not in topics:
                hint = "" if role == "image" else f" (or {option} '' to run without one)"
                raise BagError(
                    f"bag {str(self.path)!r} has no topic {topic!r} ({option}){hint}; its topics are:\n"
                    f"{self.topic_table()}"
                )
            if topics[topic].msgtype != EXPECTED_TYPES[role]:
                raise BagError(
                    f"bag {str(self.path)!r}: {option} {topic!r} carries {topics[topic].msgtype}, "
                    f"expected {EXPECTED_TYPES[role]}"
                )

    def message_count(self) -> int:
        return sum(c.msgcount for conns in self.connections.values() for c in conns)

    def _raw_messages(self, all_topics: bool = False) -> Iterator[tuple[str | None, int, int, object, bytes]]:
        """(role, index within the role's topic, log time ns, connection, raw bytes) in log-time order.

        all_topics: also the bag's other topics, with role None and index -1 (for copying the bag).
        """
        counters = dict.fromkeys(self.connections, 0)
        wanted = self.reader.connections if all_topics else [c for conns in self.connections.values() for c in conns]
        for connection, log_time, raw in self.reader.messages(connections=wanted):
            role = self._role_of_topic.get(connection.topic)
            if role is None:
                yield None, -1, log_time, connection, raw
                continue
            index = counters[role]
            counters[role] += 1
            yield role, index, log_time, connection, raw

    def stamps(self, progress=None) -> dict[str, list[int | None]]:
        """role -> header stamp (ns) of each of its messages in bag order; None where it does not decode."""
        stamps: dict[str, list[int | None]] = {role: [] for role in self.connections}
        for role, _, _, connection, raw in self._raw_messages():
            try:
                stamp = self.reader.deserialize(raw, connection.msgtype).header.stamp
                stamps[role].append(int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec))
            except Exception:  # noqa: BLE001 - a corrupt message of any kind is counted, never fatal
                stamps[role].append(None)
            if progress is not None:
                progress.update(1)
        return stamps

    def messages(self, all_topics: bool = False) -> Iterator[tuple[str | None, int, int, object, bytes]]:
        """Second pass: (role, index, log time ns, connection, raw bytes); decode with ``decode``."""
        return self._raw_messages(all_topics)

    def decode(self, role: str, connection, raw: bytes):
        """Raw message of ``role`` -> (array or K, message). Raises DecodeError with the reason.

        image -> uint8 [H, W, 3] RGB; depth -> float32 [H, W] metres, NaN invalid;
        instances -> int [H, W] labels; camera_info -> float64 K [3, 3] (None when K is all zero);
        truth -> TRUTH_DTYPE [n] (track_truth.py).
        """
        try:
            msg = self.reader.deserialize(raw, connection.msgtype)
        except Exception as error:  # noqa: BLE001 - rosbags raises several types for corrupt bytes
            raise DecodeError(f"{connection.topic}: cannot deserialize {connection.msgtype}: {error}") from None
        try:
            if role == "image":
                return to_rgb(image_to_array(msg, allowed=COLOR_ENCODINGS), msg.encoding), msg
            if role == "depth":
                return ground_truth_metres(msg), msg
            if role == "instances":
                return image_to_array(msg, allowed=LABEL_ENCODINGS), msg
            if role == "truth":
                return truth_from_cloud(msg), msg
            K = np.asarray(msg.k if hasattr(msg, "k") else msg.K, dtype=np.float64).reshape(3, 3)  # ROS 1: K
            return (K if K.any() else None), msg
        except ValueError as error:
            raise DecodeError(f"{connection.topic}: {error}") from None


def ground_truth_metres(msg) -> np.ndarray:
    """Depth image message -> float32 [H, W] metres, NaN where there is no measurement.

    32FC1 is metres (non-finite or <= 0 = no measurement, REP 117/118); 16UC1 is millimetres, 0 = none.
    """
    if msg.encoding not in GT_ENCODINGS:
        raise DecodeError(
            f"ground-truth encoding {msg.encoding!r}: expected 32FC1 (metres) or 16UC1 (millimetres)"
        )
    array = image_to_array(msg, allowed=GT_ENCODINGS)
    if msg.encoding == "16UC1":
        depth = array.astype(np.float32) / np.float32(1000.0)
        depth[array == 0] = np.nan
        return depth
    depth = array.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth
