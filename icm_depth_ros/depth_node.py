"""depth_node: camera images in; metric depth and per-instance depth out (lifecycle node).

ROS glue only: messages -> arrays -> DepthPipeline (pipeline.py) -> messages. Topics and parameters:
docs/node.md and node_parameters.py. configure loads and validates the model and parameters,
activate subscribes; ``autostart`` (default true) does both at start-up. Inference runs on its own
thread fed by a latest-frame slot (frame_flow.py): frames the model cannot keep up with are dropped.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rcl_interfaces.msg import ParameterDescriptor
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from icm_depth_ros.inference import ModelLoadError
from icm_depth_ros.frame_flow import FrameStatistics, LatestFrameSlot, ProblemThrottle
from icm_depth_ros.image_conversion import fill_image
from icm_depth_ros.input_checks import (
    InputError, check_camera_info, decode_color_image, decode_compressed_image, decode_label_image, stamp_seconds,
)
from icm_depth_ros.instance_message import instance_markers, instances_to_cloud
from icm_depth_ros.node_parameters import PARAMETERS, parse_parameters
from icm_depth_ros.pipeline import DepthPipeline

LABEL_BUFFER = 16  # label images kept for stamp matching (about half a second at 30 Hz)


@dataclass
class Frame:
    header: object
    rgb: np.ndarray  # uint8 [H, W, 3]
    camera_info: object | None  # the CameraInfo message describing rgb, or None
    K: np.ndarray | None
    P: np.ndarray | None


class DepthNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("depth_node", **kwargs)
        for name, (default, allowed, meaning) in PARAMETERS.items():
            text = meaning + (f" (one of: {', '.join(allowed)})" if allowed else "")
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        self.autostart = self.get_parameter("autostart").value
        self.pipeline: DepthPipeline | None = None
        self.settings = None
        self.stats = FrameStatistics()
        self._input_subscriptions, self._publishers_out, self._timer = [], {}, None
        self._worker: threading.Thread | None = None
        self._slot = LatestFrameSlot()
        self._camera: tuple | None = None  # (CameraInfo, K, P) of the latest valid camera_info
        self._last_stamp: float | None = None
        self._labels: dict[tuple[int, int], np.ndarray] = {}
        self._labels_arrived = threading.Condition()

    # ---- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        try:
            pipeline_config, self.settings = parse_parameters(values)
            self.pipeline = DepthPipeline.from_config(pipeline_config, logger=self.get_logger())
        except (ValueError, ModelLoadError) as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self._throttle = ProblemThrottle(self.settings.error_throttle_s)
        qos = self._qos(self.settings.output_qos, self.settings.output_qos_depth)
        outputs = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/instances": PointCloud2}
        if self.settings.publish_colorized:
            outputs["depth/colorized"] = Image
        if self.settings.publish_markers:
            outputs["depth/instance_markers"] = MarkerArray
        self._publishers_out = {topic: self.create_lifecycle_publisher(kind, topic, qos) for topic, kind in outputs.items()}
        if self.settings.publish_diagnostics:
            self._publishers_out["/diagnostics"] = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        info = self.pipeline.backend.info
        self.get_logger().info(
            f"configured: {self.pipeline.backend.description}, model {pipeline_config.model_path} "
            f"({info.config_name}, input {info.input_height}x{info.input_width}, {pipeline_config.resize_policy}), "
            f"instances from {self.settings.instance_source}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        qos = self._qos(self.settings.input_qos, self.settings.input_qos_depth)
        if self.settings.use_compressed:
            self._input_subscriptions.append(self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, qos))
        else:
            self._input_subscriptions.append(self.create_subscription(Image, "image", self._on_image, qos))
        self._input_subscriptions.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos))
        if self.settings.instance_source == "topic":
            self._input_subscriptions.append(self.create_subscription(Image, "instances", self._on_labels, qos))
        if self.settings.publish_diagnostics:
            self._timer = self.create_timer(self.settings.diagnostics_period_s, self._publish_diagnostics)
        self._slot = LatestFrameSlot()
        self._worker = threading.Thread(target=self._run_worker, args=(self._slot,), name="inference", daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: subscribed to {', '.join(s.topic_name for s in self._input_subscriptions)}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        for publisher in self._publishers_out.values():
            self.destroy_lifecycle_publisher(publisher)
        self._publishers_out, self.pipeline = {}, None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_inputs()
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        for subscription in self._input_subscriptions:
            self.destroy_subscription(subscription)
        self._input_subscriptions = []
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None

    @staticmethod
    def _qos(profile: str, depth: int) -> QoSProfile:
        if profile == "sensor_data":  # REP 2003: best effort, keep last
            qos = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in ("reliability", "durability")},
                             history=HistoryPolicy.KEEP_LAST, depth=depth)
            return qos
        return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=depth)

    # ---- inputs (executor thread: cheap checks, then hand over) ------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._accept(msg.header, lambda: decode_color_image(msg, self._topic("image"), self.settings.max_input_pixels))

    def _on_compressed(self, msg: CompressedImage) -> None:
        topic = self._topic("image/compressed")
        self._accept(msg.header, lambda: decode_compressed_image(msg, topic, self.settings.max_input_pixels))

    def _accept(self, header, decode) -> None:
        self.stats.on_input()
        try:
            stamp = stamp_seconds(header.stamp)
            if self.settings.reject_out_of_order and self._last_stamp is not None and stamp <= self._last_stamp:
                raise InputError("stamp_order", f"{self._topic('image')}: stamp {stamp:.6f} is not newer than the "
                                                f"previous frame's {self._last_stamp:.6f} (out of order or repeated)")
            rgb = decode()
            camera = self._camera
            if camera is None and self.settings.require_camera_info:
                raise InputError("no_camera_info", f"no valid camera_info received yet on {self._topic('camera_info')}")
            if camera is not None and (camera[0].height, camera[0].width) != rgb.shape[:2]:
                raise InputError("camera_info_mismatch", f"{self._topic('camera_info')} describes "
                                 f"{camera[0].width}x{camera[0].height} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
        except InputError as error:
            self._reject(error)
            return
        self._last_stamp = stamp
        info, K, P = camera if camera is not None else (None, None, None)
        if self._slot.put(Frame(header, rgb, info, K, P)):
            self.stats.on_dropped()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            K, P = check_camera_info(msg, self._topic("camera_info"))
        except InputError as error:
            self._reject(error)
            return
        self._camera = (msg, K, P)

    def _on_labels(self, msg: Image) -> None:
        try:
            labels = decode_label_image(msg, self._topic("instances"), self.settings.max_input_pixels)
        except InputError as error:
            self._reject(error)
            return
        with self._labels_arrived:
            self._labels[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = labels
            while len(self._labels) > LABEL_BUFFER:
                self._labels.pop(next(iter(self._labels)))
            self._labels_arrived.notify_all()

    def _reject(self, error: InputError) -> None:
        self.stats.on_rejected(error.kind)
        allowed, suppressed = self._throttle.allow(error.kind)
        if allowed:
            more = f" ({suppressed} more like it since the last report)" if suppressed else ""
            self.get_logger().error(f"dropped input [{error.kind}]: {error}{more}")

    def _topic(self, name: str) -> str:
        return self.resolve_topic_name(name)

    # ---- inference thread ---------------------------------------------------------------------------
    def _run_worker(self, slot: LatestFrameSlot) -> None:
        while True:
            frame = slot.take(timeout=0.5)
            if frame is None:
                if slot.closed:
                    return
                continue
            try:
                self._process(frame)
            except InputError as error:
                self._reject(error)
            except Exception as error:  # keep the node alive; a bad frame must not end it
                self._reject(InputError("processing", f"processing the frame stamped "
                                        f"{stamp_seconds(frame.header.stamp):.6f} failed: {error!r}"))

    def _process(self, frame: Frame) -> None:
        labels = None
        if self.settings.instance_source == "topic":
            labels = self._wait_for_labels(frame.header.stamp)
            if labels is not None and labels.shape != frame.rgb.shape[:2]:
                raise InputError("label_size", f"{self._topic('instances')}: label image {labels.shape[1]}x"
                                 f"{labels.shape[0]} differs from the image {frame.rgb.shape[1]}x{frame.rgb.shape[0]}")
        result = self.pipeline.process(frame.rgb, frame.K, labels, self.settings.instance_source)
        header = frame.header
        self._publishers_out["depth/image"].publish(fill_image(Image(header=header), result.depth, "32FC1"))
        self._publishers_out["depth/camera_info"].publish(self._depth_camera_info(frame, result))
        self._publishers_out["depth/instances"].publish(instances_to_cloud(result.instances, header))
        colorized = self._publishers_out.get("depth/colorized")
        if colorized is not None and colorized.get_subscription_count() > 0:
            colorized.publish(fill_image(Image(header=header), self._colorize(result.depth), "bgr8"))
        markers = self._publishers_out.get("depth/instance_markers")
        if markers is not None and markers.get_subscription_count() > 0:
            markers.publish(instance_markers(result.instances, header))
        now = self.get_clock().now().nanoseconds * 1e-9
        self.stats.on_output(now - stamp_seconds(header.stamp), result.timings["inference"])

    def _wait_for_labels(self, stamp) -> np.ndarray | None:
        key = (stamp.sec, stamp.nanosec)
        with self._labels_arrived:
            self._labels_arrived.wait_for(lambda: key in self._labels, timeout=self.settings.instance_timeout_s)
            labels = self._labels.pop(key, None)
        if labels is None:
            self._reject(InputError("no_labels", f"{self._topic('instances')}: no label image stamped "
                                    f"{stamp_seconds(stamp):.6f} within {self.settings.instance_timeout_s} s; "
                                    "published depth without instances"))
        return labels

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

    def _publish_diagnostics(self) -> None:
        summary = self.stats.summary()
        backend = self.pipeline.backend.description if self.pipeline else "none"
        level, message = DiagnosticStatus.OK, "running"
        if summary["rejected_frames"]:
            level, message = DiagnosticStatus.WARN, f"rejected input: {dict(self.stats.rejected)}"
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: depth",
                                  message=message, hardware_id=backend)
        status.values = [KeyValue(key="backend", value=backend)] + [
            KeyValue(key=key, value=f"{value:.2f}" if isinstance(value, float) else str(value))
            for key, value in summary.items()
        ]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._publishers_out["/diagnostics"].publish(array)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = DepthNode()
    try:
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("depth_node could not configure (see the error above); exiting")
                return 1
            node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._stop_inputs()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
