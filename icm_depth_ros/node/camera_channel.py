"""One camera of a depth_node: its subscriptions, publishers, frame hand-over, statistics and bad-input log.

A node serves one camera (topics ``image``, ``depth/image``, ... relative to its namespace) or several
(``front/image`` -> ``front/depth/image``, ...; the ``cameras`` parameter). Each camera is one
CameraChannel; they share the node, the pipeline and the inference thread (inference_worker.py) but
nothing else: their own camera_info, stamp order, label buffer, counters and log throttle, so a bad
input on one camera is rejected, logged and counted there and the others go on.

Callbacks run on the executor thread and only validate and convert (zero-copy for unpadded rgb8),
then put the frame into the camera's slot of the shared RoundRobinFrames (frame_scheduler.py).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from icm_depth_ros.node.frame_flow import FrameStatistics, ProblemThrottle
from icm_depth_ros.node.frame_scheduler import RoundRobinFrames
from icm_depth_ros.processing.image_conversion import fill_image
from icm_depth_ros.node.input_checks import (
    InputError, check_camera_info, decode_color_image, decode_compressed_image, decode_label_image, stamp_seconds,
)
from icm_depth_ros.instances import detections
from icm_depth_ros.instances.messages import instance_markers, instances_to_cloud
from icm_depth_ros.instances.tracking import InstanceTracker, TrackIds
from icm_depth_ros.node.transport import InputSubscription

LABEL_BUFFER = 16  # label images kept for stamp matching (about half a second at 30 Hz)
_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # one segment of a ROS name


def camera_names(cameras) -> list[str]:
    """The ``cameras`` parameter -> namespaces ('/front/' -> 'front'); [''] when it names none (one camera).

    ValueError names the parameter and the bad entry (not a relative ROS namespace, or repeated)."""
    names = [str(name).strip().strip("/") for name in cameras]
    names = [name for name in names if name]
    for name in names:
        if not all(_NAME_TOKEN.fullmatch(token) for token in name.split("/")):
            raise ValueError(f"parameter cameras: {name!r} is not a ROS namespace (letters, digits, '_' and '/', "
                             "each part starting with a letter or '_')")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"parameter cameras names {', '.join(repeated)} more than once")
    return names or [""]


@dataclass
class Frame:
    header: object
    rgb: np.ndarray  # uint8 [H, W, 3]
    camera_info: object | None  # the CameraInfo message describing rgb, or None
    K: np.ndarray | None
    P: np.ndarray | None


class CameraChannel:
    """Camera ``name`` ('' = the node's own namespace) of ``node``; frames go to slot ``index`` of ``frames``.

    ``track_ids``: the node's one source of track ids, shared by its cameras (ids unique across them)."""

    def __init__(self, node, name: str, index: int, frames: RoundRobinFrames, settings, pipeline,
                 track_ids: TrackIds | None = None):
        self.node, self.name, self.index = node, name, index
        self.tracker = (InstanceTracker(settings.tracker, track_ids or TrackIds(),
                                        stable_labels=settings.instance_source == "topic")
                        if settings.tracker is not None else None)
        self.settings, self.pipeline = settings, pipeline
        self.frames = frames
        self.stats = FrameStatistics()
        self._throttle = ProblemThrottle(settings.error_throttle_s)
        self._prefix = f"{name}/" if name else ""
        self._subscriptions: list = []
        self._publishers: dict[str, object] = {}
        self._camera: tuple | None = None  # (CameraInfo, K, P) of the latest valid camera_info
        self._last_stamp: float | None = None
        self._labels: dict[tuple[int, int], np.ndarray] = {}
        self._labels_arrived = threading.Condition()

    # ---- set-up ------------------------------------------------------------------------------------
    def topic(self, name: str) -> str:
        """The fully resolved name of this camera's topic ``name`` (e.g. 'image' -> '/front/image')."""
        return self.node.resolve_topic_name(self._prefix + name)

    def open_outputs(self, qos) -> None:
        # colorized and markers always exist: publish_colorized / publish_markers switch them live
        outputs = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/instances": PointCloud2,
                   "depth/colorized": Image, "depth/instance_markers": MarkerArray}
        if detections.AVAILABLE:  # vision_msgs is optional (the node logs its absence at configure)
            outputs["depth/detections"] = detections.Detection3DArray
        self._publishers = {topic: self.node.create_lifecycle_publisher(kind, self._prefix + topic, qos)
                            for topic, kind in outputs.items()}

    def close_outputs(self) -> None:
        for publisher in self._publishers.values():
            self.node.destroy_lifecycle_publisher(publisher)
        self._publishers = {}

    def subscribe(self) -> list[str]:
        """Create this camera's subscriptions (reliability per input_qos, transport.py); returns
        'topic (qos)' for each."""
        inputs = [("image/compressed", CompressedImage, self.on_compressed) if self.settings.use_compressed
                  else ("image", Image, self.on_image), ("camera_info", CameraInfo, self.on_camera_info)]
        if self.settings.instance_source == "topic":
            inputs.append(("instances", Image, self.on_labels))
        self._subscriptions = [InputSubscription(self.node, kind, self._prefix + topic, callback,
                                                 self.settings.input_qos, self.settings.input_qos_depth)
                               for topic, kind, callback in inputs]
        return [f"{s.topic_name} ({s.describe()})" for s in self._subscriptions]

    def refresh_subscriptions(self) -> None:
        """input_qos auto: follow the publishers' reliability as they come and go."""
        for subscription in self._subscriptions:
            subscription.refresh()

    def unsubscribe(self) -> None:
        for subscription in self._subscriptions:
            subscription.destroy()
        self._subscriptions = []

    def update_settings(self, settings) -> None:
        """New node settings while running (parameters applied live, ros_parameters.py)."""
        self.settings = settings
        self._throttle.period_s = settings.error_throttle_s

    # ---- inputs (executor thread: cheap checks, then hand over) ------------------------------------
    def on_image(self, msg: Image) -> None:
        self._accept(msg.header, lambda: decode_color_image(msg, self.topic("image"), self.settings.max_input_pixels))

    def on_compressed(self, msg: CompressedImage) -> None:
        topic = self.topic("image/compressed")
        self._accept(msg.header, lambda: decode_compressed_image(msg, topic, self.settings.max_input_pixels))

    def _accept(self, header, decode) -> None:
        self.stats.on_input()
        try:
            stamp = stamp_seconds(header.stamp)
            if self.settings.reject_out_of_order and self._last_stamp is not None and stamp <= self._last_stamp:
                raise InputError("stamp_order", f"{self.topic('image')}: stamp {stamp:.6f} is not newer than the "
                                                f"previous frame's {self._last_stamp:.6f} (out of order or repeated)")
            rgb = decode()
            camera = self._camera
            if camera is None and self.settings.require_camera_info:
                raise InputError("no_camera_info", f"no valid camera_info received yet on {self.topic('camera_info')}")
            if camera is not None and (camera[0].height, camera[0].width) != rgb.shape[:2]:
                raise InputError("camera_info_mismatch", f"{self.topic('camera_info')} describes "
                                 f"{camera[0].width}x{camera[0].height} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
        except InputError as error:
            self.reject(error)
            return
        self._last_stamp = stamp
        info, K, P = camera if camera is not None else (None, None, None)
        if self.frames.put(self.index, Frame(header, rgb, info, K, P)):
            self.stats.on_dropped()

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            K, P = check_camera_info(msg, self.topic("camera_info"))
        except InputError as error:
            self.reject(error)
            return
        self._camera = (msg, K, P)

    def on_labels(self, msg: Image) -> None:
        try:
            labels = decode_label_image(msg, self.topic("instances"), self.settings.max_input_pixels)
        except InputError as error:
            self.reject(error)
            return
        with self._labels_arrived:
            self._labels[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = labels
            while len(self._labels) > LABEL_BUFFER:
                self._labels.pop(next(iter(self._labels)))
            self._labels_arrived.notify_all()

    def reject(self, error: InputError) -> None:
        """Count ``error`` and log it (at most once per error_throttle_s per kind)."""
        self.stats.on_rejected(error.kind)
        allowed, suppressed = self._throttle.allow(error.kind)
        if allowed:
            more = f" ({suppressed} more like it since the last report)" if suppressed else ""
            self.node.get_logger().error(f"dropped input [{error.kind}]: {error}{more}")

    # ---- inference thread ---------------------------------------------------------------------------
    def labels_for(self, frame: Frame) -> np.ndarray | None:
        """instance_source 'topic': the label image with the frame's stamp (waits instance_timeout_s), else None."""
        if self.settings.instance_source != "topic":
            return None
        stamp = frame.header.stamp
        key = (stamp.sec, stamp.nanosec)
        with self._labels_arrived:
            self._labels_arrived.wait_for(lambda: key in self._labels, timeout=self.settings.instance_timeout_s)
            labels = self._labels.pop(key, None)
        if labels is None:
            self.reject(InputError("no_labels", f"{self.topic('instances')}: no label image stamped "
                                   f"{stamp_seconds(stamp):.6f} within {self.settings.instance_timeout_s} s; "
                                   "published depth without instances"))
        elif labels.shape != frame.rgb.shape[:2]:
            raise InputError("label_size", f"{self.topic('instances')}: label image {labels.shape[1]}x"
                             f"{labels.shape[0]} differs from the image {frame.rgb.shape[1]}x{frame.rgb.shape[0]}")
        return labels

    def publish(self, frame: Frame, result) -> None:
        """All of the frame's outputs (publish_depth, then publish_instances)."""
        self.publish_depth(frame, result)
        self.publish_instances(frame, result)

    def publish_depth(self, frame: Frame, result) -> None:
        """depth/image, depth/camera_info (and depth/colorized), with the image's header: as soon as the
        depth exists, before the instance statistics are computed."""
        header = frame.header
        self._publishers["depth/image"].publish(fill_image(Image(header=header), result.depth, "32FC1"))
        self._publishers["depth/camera_info"].publish(self._depth_camera_info(frame, result))
        colorized = self._publishers.get("depth/colorized")
        if self.settings.publish_colorized and colorized is not None and colorized.get_subscription_count() > 0:
            colorized.publish(fill_image(Image(header=header), self._colorize(result.depth), "bgr8"))

    def publish_instances(self, frame: Frame, result) -> None:
        """Track the frame's instances (tracking on), publish depth/instances (and depth/instance_markers,
        depth/detections while subscribed);
        then the frame's latency (stamp -> its last output) into the statistics. Runs on the instance
        thread only, so a camera's tracker sees its frames one at a time, in order."""
        header = frame.header
        tracks = (self.tracker.update(stamp_seconds(header.stamp), result.instances, result.depth.shape)
                  if self.tracker is not None else None)
        self._publishers["depth/instances"].publish(instances_to_cloud(result.instances, header, tracks))
        markers = self._publishers.get("depth/instance_markers")
        if self.settings.publish_markers and markers is not None and markers.get_subscription_count() > 0:
            markers.publish(instance_markers(result.instances, header, tracks=tracks))
        detected = self._publishers.get("depth/detections")
        if detected is not None and detected.get_subscription_count() > 0:
            detected.publish(detections.instances_to_detections(result.instances, header, result.K, tracks))
        now = self.node.get_clock().now().nanoseconds * 1e-9
        self.stats.on_output(now - stamp_seconds(header.stamp), result.timings["inference"])

    def _depth_camera_info(self, frame: Frame, result) -> CameraInfo:
        height, width = result.depth.shape
        info = CameraInfo(header=frame.header, height=height, width=width)
        if frame.camera_info is not None:
            source = frame.camera_info
            info.distortion_model, info.d, info.r = source.distortion_model, source.d, source.r
            info.k = result.K.ravel().tolist()
            info.p = self.pipeline.output_K(frame.rgb.shape[:2], frame.P).ravel().tolist()
        return info

    def _colorize(self, depth: np.ndarray) -> np.ndarray:
        """Depth -> bgr8 (turbo; near = red, far = blue, log scale over the depth range); NaN -> black."""
        low, high = np.log(max(self.pipeline.min_depth, 0.5)), np.log(self.pipeline.max_depth)
        with np.errstate(invalid="ignore"):
            scaled = (high - np.log(np.nan_to_num(depth, nan=1.0))) / (high - low)
        colours = cv2.applyColorMap((np.clip(scaled, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
        colours[np.isnan(depth)] = 0
        return colours

    # ---- diagnostics --------------------------------------------------------------------------------
    def diagnostic_status(self, node_name: str, backend: str) -> DiagnosticStatus:
        """This camera's line of /diagnostics: '<node>: depth' for a node's only camera, '<node>: <camera> depth'."""
        summary = self.stats.summary()
        level, message = DiagnosticStatus.OK, "running"
        if summary["rejected_frames"]:
            level, message = DiagnosticStatus.WARN, f"rejected input: {dict(self.stats.rejected)}"
        label = f"{self.name} depth" if self.name else "depth"
        status = DiagnosticStatus(level=level, name=f"{node_name}: {label}", message=message, hardware_id=backend)
        status.values = [KeyValue(key="backend", value=backend), KeyValue(key="camera", value=self.topic("image"))] + [
            KeyValue(key=key, value=f"{value:.2f}" if isinstance(value, float) else str(value))
            for key, value in summary.items()
        ]
        return status
