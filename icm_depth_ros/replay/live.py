"""Live replay: play a bag's camera topics into a ROS graph and score what a running depth_node publishes.

The player publishes, for every frame that has ground truth (pairing.py), the camera_info, the
instance labels (when --instances-topic is given) and the image to ``NS/camera_info``,
``NS/instances`` and ``NS/image`` at the recorded rate times ``rate``, each re-stamped with the
current ROS time, as a camera driver would. It listens to ``NS/depth/image`` (and ``NS/depth/instances``),
finds each output's frame by the header stamp the node copies, and scores it like the offline mode.

    stamp_to_publication latency = arrival time of the depth image - its header stamp (one clock)
    dropped = published frames with no depth image within ``drain_s`` seconds of their publication

Per-instance errors need the node to run with ``instance_source:=topic`` (it then reports the label
ids it was given); with clusters the ids do not correspond and the band table is meaningless.
The node's own tracks (the track columns of its depth/instances) go to tracks.csv and, where the bag has
per-instance truth (--truth-topic), are scored as offline (track_scoring.py); a frame whose cloud did not
arrive is left out of them.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from icm_depth_ros.processing.image_conversion import image_to_array
from icm_depth_ros.instances.statistics import Instance
from icm_depth_ros.instances.tracking import TRACK_DTYPE
from icm_depth_ros.replay.bag_reader import BagSource, DecodeError, TopicSelection, default_typestore
from icm_depth_ros.replay.evaluation import Evaluation, evenly_spaced
from icm_depth_ros.replay.pairing import FrameAssembler, plan_frames
from icm_depth_ros.replay.report import write_outputs
from icm_depth_ros.replay.scoring import ReplayScorer
from icm_depth_ros.replay.track_scoring import TrackScorer

SETTLE_S = 0.25  # a received depth image waits this long for its instance cloud before it is scored


@dataclass
class LiveOptions:
    bag: str
    topics: TopicSelection
    node_namespace: str = ""  # the depth_node's namespace: we publish NS/image and listen to NS/depth/image
    rate: float = 1.0  # multiple of the recorded rate
    min_depth: float = 1e-3
    max_depth: float = 80.0
    crop: str = "none"
    stamp_tolerance_s: float = 0.005
    out: str = "replay_out"
    samples: int = 4
    wait_for_node_s: float = 30.0  # the node must be subscribed and publishing within this
    drain_s: float = 2.0  # seconds a published frame may take to come back before it counts as dropped


@dataclass
class _Pending:
    index: int
    recorded_stamp_ns: int
    published_s: float  # monotonic
    gt: np.ndarray | None  # None: the drive has no ground truth (run, not scored)
    size: tuple[int, int]  # (height, width) of the camera image
    labels: np.ndarray | None
    K: np.ndarray | None
    rgb: np.ndarray | None  # kept only for report sample frames
    truth: np.ndarray | None  # per-instance truth (track_truth.py), None: the frame's tracks are not scored


class _Part:
    __slots__ = ("value", "msg", "raw", "connection")

    def __init__(self, value, msg, raw, connection):
        self.value, self.msg, self.raw, self.connection = value, msg, raw, connection


def run_live(options: LiveOptions) -> dict:
    """Play, listen, score; writes options.out and returns the metrics.json contents.

    Raises TimeoutError when no depth_node is found under ``node_namespace`` within ``wait_for_node_s``.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    started = time.perf_counter()
    scorer = ReplayScorer(options.min_depth, options.max_depth, options.crop)
    with BagSource(options.bag, options.topics) as source:
        for note in options.topics.missing_notes():
            print(f"replay_eval: {note}", file=sys.stderr, flush=True)
        stamps = source.stamps()
        plans, skips, without_instances = plan_frames(stamps, round(options.stamp_tolerance_s * 1e9))
        evaluation = Evaluation(scorer, {plans[i].index for i in evenly_spaced(len(plans), options.samples)})
        evaluation.frames_without_instances = without_instances
        for skip in skips:
            evaluation.skip(skip.reason, skip.detail, skip.index, skip.stamp_ns)

        context = Context()
        rclpy.init(args=[], context=context)
        node = rclpy.create_node("replay_eval_live", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, name="replay_eval_spin", daemon=True)
        try:
            player = _Player(node, source, options, evaluation, TrackScorer())
            spinner.start()
            player.wait_for_node()
            player.play(plans)
            live = player.finish()
        finally:
            executor.shutdown(timeout_sec=2.0)
            node.destroy_node()
            rclpy.shutdown(context=context)
            spinner.join(timeout=2.0)
        summary = evaluation.summary(frames_read=len(stamps["image"]))
        if not options.topics.depth:
            summary["metrics_unavailable"] = "the drive has no ground truth (--depth-topic '')"
        summary["instances_reported"] = len(evaluation.instance_rows)
        summary["live"] = live
        summary["tracks"] = player.tracks.summary()  # the node's own tracks (its depth/instances track columns)
        summary["run"] = {
            "mode": "live", "bag": str(options.bag), "storage": source.storage, "topics": asdict(options.topics),
            "model": "(the running depth_node's)", "backend": "(the running depth_node's)",
            "node_namespace": options.node_namespace, "min_depth": options.min_depth,
            "max_depth": options.max_depth, "crop": options.crop, "stamp_tolerance_s": options.stamp_tolerance_s,
            "elapsed_s": round(time.perf_counter() - started, 3), "notes": options.topics.missing_notes(),
        }
    write_outputs(Path(options.out), summary, evaluation.rows, evaluation.samples, evaluation.instance_rows,
                  player.tracks)
    return summary


class _Player:
    """Publishes frames on schedule (main thread); the executor thread queues what the node sends back."""

    def __init__(self, node, source: BagSource, options: LiveOptions, evaluation: Evaluation, tracks: TrackScorer):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.node, self.source, self.options, self.evaluation = node, source, options, evaluation
        self.tracks = tracks  # the node's tracks from its depth/instances, scored where the bag has truth
        namespace = options.node_namespace.rstrip("/")
        if namespace and not namespace.startswith("/"):
            namespace = "/" + namespace
        self.topics = {"image": f"{namespace}/image", "camera_info": f"{namespace}/camera_info",
                       "instances": f"{namespace}/instances", "depth": f"{namespace}/depth/image",
                       "cloud": f"{namespace}/depth/instances"}
        # Reliable publishers serve reliable and best-effort subscribers alike; best-effort subscriptions
        # accept either kind of publisher (the node's output_qos may be sensor_data or reliable).
        publish_qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=5)
        listen_qos = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=50)
        self.types = {"image": Image, "camera_info": CameraInfo, "instances": Image}
        self.publishers = {role: node.create_publisher(kind, self.topics[role], publish_qos)
                           for role, kind in self.types.items()
                           if role != "instances" or options.topics.instances}
        self.received: deque = deque()  # (stamp ns, arrival s monotonic, arrival ns ROS, depth msg)
        self.clouds: dict[int, object] = {}
        node.create_subscription(Image, self.topics["depth"], self._on_depth, listen_qos)
        node.create_subscription(PointCloud2, self.topics["cloud"], self._on_cloud, listen_qos)
        self.pending: dict[int, _Pending] = {}
        self.converters: dict[tuple[str, str], object] = {}
        self.counts = {"published": 0, "received": 0, "dropped": 0, "unexpected": 0, "late_publications": 0}

    # ---- executor thread ---------------------------------------------------------------------------
    def _on_depth(self, msg) -> None:
        self.received.append((_stamp_ns(msg.header.stamp), time.monotonic(), self._now_ns(), msg))

    def _on_cloud(self, msg) -> None:
        self.clouds[_stamp_ns(msg.header.stamp)] = msg

    def _now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    # ---- main thread -------------------------------------------------------------------------------
    def wait_for_node(self) -> None:
        deadline = time.monotonic() + self.options.wait_for_node_s
        while time.monotonic() < deadline:
            if (self.publishers["image"].get_subscription_count() > 0
                    and self.node.count_publishers(self.topics["depth"]) > 0):
                time.sleep(0.5)  # discovery of the remaining endpoints (camera_info, instances) settles
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"--live: no depth_node found within {self.options.wait_for_node_s:g} s: nothing subscribes to "
            f"{self.topics['image']!r} and publishes {self.topics['depth']!r}. Is the node running and active, "
            "in that --node-namespace, with the same ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE?")

    def play(self, plans) -> None:
        assembler = FrameAssembler(plans)
        clock = None  # (monotonic start, recorded stamp of the first frame)
        for role, index, _, connection, raw in self.source.messages():
            if not assembler.wants(role, index):
                continue
            try:
                value, msg = self.source.decode(role, connection, raw)
            except DecodeError as error:
                for plan in assembler.fail(role, index):
                    self.evaluation.skip(f"undecodable_{role}", str(error), plan.index, plan.stamp_ns)
                continue
            for plan, parts in assembler.add(role, index, _Part(value, msg, raw, connection)):
                if clock is None:
                    clock = (time.monotonic(), plan.stamp_ns)
                due = clock[0] + (plan.stamp_ns - clock[1]) * 1e-9 / self.options.rate
                wait = due - time.monotonic()
                if wait > 0:
                    self._score_received(until=due)
                    time.sleep(max(0.0, due - time.monotonic()))
                elif wait < -0.01:
                    self.counts["late_publications"] += 1  # reading the bag cannot keep up with the rate
                self._publish(plan, parts)
                self._score_received()
        for plan in assembler.leftovers():
            self.evaluation.skip("incomplete", f"frame {plan.index}: a paired message was never read",
                                 plan.index, plan.stamp_ns)

    def finish(self) -> dict:
        """Wait for the last outputs (at most drain_s), score them; returns the live figures."""
        deadline = time.monotonic() + self.options.drain_s
        while self.pending and time.monotonic() < deadline:
            self._score_received()
            time.sleep(0.02)
        self._score_received(final=True)
        for stamp in list(self.pending):
            self._drop(stamp)
        return {**self.counts, "rate": self.options.rate, "node_namespace": self.options.node_namespace,
                "topics": self.topics}

    def _publish(self, plan, parts: dict) -> None:
        from builtin_interfaces.msg import Time

        stamp_ns = self._now_ns()
        while stamp_ns in self.pending:  # the node needs strictly newer stamps
            stamp_ns += 1
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        for role in ("camera_info", "instances", "image"):  # labels and K before the image that needs them
            if role not in parts or role not in self.publishers:
                continue
            msg = self._ros_message(role, parts[role])
            msg.header.stamp = stamp
            self.publishers[role].publish(msg)
        keep_rgb = plan.index in self.evaluation.sample_indices
        labels = parts["instances"].value if "instances" in parts else None
        gt = parts["depth"].value if "depth" in parts else None
        K = parts["camera_info"].value if "camera_info" in parts else None
        self.pending[stamp_ns] = _Pending(plan.index, plan.stamp_ns, time.monotonic(), gt,
                                          parts["image"].value.shape[:2], labels, K,
                                          parts["image"].value if keep_rgb else None,
                                          parts["truth"].value if "truth" in parts else None)
        self.counts["published"] += 1

    def _ros_message(self, role: str, part: _Part):
        """The bag's message as an rclpy message (ROS 1 messages converted to ROS 2 wire format first)."""
        from rclpy.serialization import deserialize_message

        raw = part.raw
        if self.source.is_ros1:
            key = (part.connection.topic, part.connection.msgtype)
            if key not in self.converters:
                from rosbags.convert.converter import generate_message_converter

                self.converters[key] = generate_message_converter(
                    self.source.reader.typestore, default_typestore(), part.connection.msgtype,
                    part.connection.msgtype, {}, src_is2=False, dst_is2=True)
            raw = bytes(self.converters[key](raw))
        return deserialize_message(bytes(raw), self.types[role])

    def _score_received(self, until: float | None = None, final: bool = False) -> None:
        """Score outputs that have settled; stop early at monotonic time ``until``; drop overdue frames."""
        now = time.monotonic()
        while self.received and (final or now - self.received[0][1] >= SETTLE_S):
            if until is not None and time.monotonic() >= until:
                return
            stamp, _, arrival_ns, msg = self.received.popleft()
            frame = self.pending.pop(stamp, None)
            if frame is None:
                self.counts["unexpected"] += 1  # not ours, a duplicate, or already counted as dropped
                continue
            self.counts["received"] += 1
            try:
                depth = image_to_array(msg, allowed=("32FC1",)).astype(np.float32)
            except ValueError as error:
                self.evaluation.skip("undecodable_output", f"{self.topics['depth']}: {error}", frame.index,
                                     frame.recorded_stamp_ns)
                continue
            if depth.shape != frame.size:
                self.evaluation.skip("size_mismatch", f"frame {frame.index}: node output {depth.shape[::-1]}, camera "
                                     f"image {frame.size[::-1]} (width, height); run the node with "
                                     "output_resolution:=input", frame.index, frame.recorded_stamp_ns)
                continue
            cloud = self.clouds.pop(stamp, None)
            instances = _cloud_instances(cloud) if cloud is not None else None
            if cloud is not None:  # the node's tracks, on the drive's recorded stamps
                self.tracks.add(frame.recorded_stamp_ns * 1e-9, instances, _cloud_tracks(cloud), frame.truth)
            self.evaluation.add_frame(frame.index, frame.recorded_stamp_ns, frame.rgb, depth, frame.gt,
                                      frame.labels, instances, frame.K,
                                      {"stamp_to_publication": (arrival_ns - stamp) * 1e-9})
        for stamp, frame in list(self.pending.items()):
            if now - frame.published_s > self.options.drain_s:
                self._drop(stamp)
        for stamp in [s for s in self.clouds if s not in self.pending and all(s != r[0] for r in self.received)]:
            del self.clouds[stamp]  # clouds of frames already scored or dropped

    def _drop(self, stamp: int) -> None:
        frame = self.pending.pop(stamp)
        self.counts["dropped"] += 1
        self.evaluation.skip("dropped", f"frame {frame.index}: no {self.topics['depth']} within "
                             f"{self.options.drain_s:g} s of publication", frame.index, frame.recorded_stamp_ns)


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _cloud_tracks(cloud) -> np.ndarray:
    """The track columns of a depth/instances cloud, TRACK_DTYPE [n]."""
    from icm_depth_ros.instances.messages import cloud_to_array

    rows = cloud_to_array(cloud)
    tracks = np.zeros(rows.size, dtype=TRACK_DTYPE)
    for name in TRACK_DTYPE.names:
        tracks[name] = rows[name]
    return tracks


def _cloud_instances(cloud) -> list[Instance]:
    """A depth/instances cloud -> Instance records (the fields the scorer reads are id and median)."""
    from icm_depth_ros.instances.messages import cloud_to_array

    return [Instance(id=int(row["id"]), class_id=int(row["class"]),
                     bbox=(int(row["u0"]), int(row["v0"]), int(row["u1"]), int(row["v1"])),
                     median_depth=float(row["median"]), near_depth=float(row["near"]),
                     centroid=(float(row["x"]), float(row["y"]), float(row["z"])),
                     pixel_count=int(row["pixel_count"]), confidence=float(row["confidence"]))
            for row in cloud_to_array(cloud)]
