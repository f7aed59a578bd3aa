"""depth_node: camera images in; metric depth and per-instance depth out (lifecycle node).

ROS glue only: messages -> arrays -> DepthPipeline (pipeline.py) -> messages. Topics and parameters:
docs/node.md and node_parameters.py. configure loads and validates the model and parameters,
activate subscribes; ``autostart`` (default true) does both at start-up. The ``cameras`` parameter
names the camera namespaces served (one CameraChannel each, camera_channel.py); one inference thread
(inference_worker.py) takes their newest frames in turn (frame_scheduler.py): frames the model cannot
keep up with are dropped.
"""
from __future__ import annotations

import sys

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from icm_depth_ros.instances import detections as detections_module
from icm_depth_ros.instances import statistics as instance_statistics_module
from icm_depth_ros.instances.tracking import TrackIds
from icm_depth_ros.node.camera_channel import CameraChannel, camera_names
from icm_depth_ros.node.frame_scheduler import RoundRobinFrames
from icm_depth_ros.inference import ModelLoadError
from icm_depth_ros.inference.self_test import SelfTestFailed, check_backend
from icm_depth_ros.inference.tensorrt_backend import BUILDS, EngineBuilding
from icm_depth_ros.node.inference_worker import InferenceWorker
from icm_depth_ros.node.node_parameters import PARAMETERS, parse_parameters
from icm_depth_ros.processing.pipeline import DepthPipeline
from icm_depth_ros.node.ros_parameters import ParameterError, ParameterUpdates, declare_node_parameters
from icm_depth_ros.node.signal_stop import SignalStop, spin_until_stopped
from icm_depth_ros.node.transport import apply_default_fastdds_profile, output_qos

QOS_REFRESH_S = 1.0  # input_qos auto: how often the publishers' reliability is looked at
BUILD_POLL_S = 1.0  # autostart during a background engine build: how often the build is looked at
BUILD_PROGRESS_S = 60.0  # ... and how often "still building" is logged


class DepthNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("depth_node", **kwargs)
        for warning in declare_node_parameters(self):  # ParameterError: a value of the wrong type
            self.get_logger().warning(warning)
        self.add_on_set_parameters_callback(ParameterUpdates(self))
        self._qos_timer = None
        self.autostart = self.get_parameter("autostart").value
        self.pipeline: DepthPipeline | None = None
        self.settings = None
        self.channels: list[CameraChannel] = []  # one per camera namespace
        self.track_ids = TrackIds()  # one for the process: track ids unique across cameras, never reused
        self._diagnostics_publisher, self._timer = None, None
        self._worker: InferenceWorker | None = None
        self.exit_status = 0  # main()'s: EXIT_BACKEND_FAILED / EXIT_BUG when the worker stopped serving
        self.request_exit = None  # main() sets it: ends the spin loop (the worker stopped serving)
        self.configure_when_built = False  # main() sets it with autostart: configure + activate after a build
        self._build_timer, self._build_progress_at = None, 0.0

    # ---- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        try:
            pipeline_config, self.settings = parse_parameters(values)
            cameras = camera_names(values["cameras"])
            pipeline_config.engine_max_batch = len(cameras)  # an engine rebuilt here batches every camera
            pipeline_config.engine_build_in_background = True  # never block the executor for a build
            self.pipeline = DepthPipeline.from_config(pipeline_config, logger=self.get_logger())
        except EngineBuilding as error:
            self.get_logger().error(f"configure failed: {error}")
            if self.configure_when_built and self._build_timer is None:
                self._build_progress_at, engine_path = 0.0, error.engine_path
                self._build_timer = self.create_timer(BUILD_POLL_S, lambda: self._configure_when_built(engine_path))
            return TransitionCallbackReturn.FAILURE
        except (ValueError, ModelLoadError) as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        try:  # before the model serves anything: its backend against the reference the model carries
            check_backend(self.pipeline.backend, self.settings.self_test, self.get_logger(),
                          model=pipeline_config.model_path, precision=pipeline_config.precision)
        except SelfTestFailed as error:  # self_test: refuse; the one 'self-test failed: ...' line
            self.get_logger().error(str(error))
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        except ModelLoadError as error:  # the backend failed on the reference input
            self.get_logger().error(f"configure failed: {error}")
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        qos = output_qos(self.settings.output_qos, self.settings.output_qos_depth)
        frames = RoundRobinFrames(len(cameras))
        self.channels = [CameraChannel(self, name, index, frames, self.settings, self.pipeline, self.track_ids)
                         for index, name in enumerate(cameras)]
        for channel in self.channels:
            channel.open_outputs(qos)
        if self.settings.publish_diagnostics:
            self._diagnostics_publisher = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        info = self.pipeline.backend.info
        self.get_logger().info(
            f"configured: {self.pipeline.backend.description}, model {pipeline_config.model_path} "
            f"({info.config_name}, input {info.input_height}x{info.input_width}, {pipeline_config.resize_policy}), "
            f"instances from {self.settings.instance_source}; "
            f"cameras: {', '.join(c.topic('image') for c in self.channels)} (batches of up to "
            f"{min(self.pipeline.max_batch, len(self.channels))})"
        )
        if not detections_module.AVAILABLE:
            self.get_logger().info(
                "vision_msgs is not importable: depth/detections (vision_msgs/Detection3DArray) is not offered; "
                "install it with rosdep (ros-<distro>-vision-msgs) for that topic")
        if self.settings.instance_source != "none" and not instance_statistics_module.compiled_kernel_available():
            self.get_logger().warning(
                "instance statistics: the compiled kernel icm_depth_ros/instances/_instance_kernel is not built, using "
                "NumPy (same numbers, 2-3x slower); build the package (colcon build, or pip install -e .)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        frames = RoundRobinFrames(len(self.channels))  # a fresh set of slots: none left from a deactivation
        topics = []
        for channel in self.channels:
            channel.frames = frames
            topics += channel.subscribe()
        self._qos_timer = self.create_timer(QOS_REFRESH_S, self._refresh_input_qos)
        if self.settings.publish_diagnostics:
            self._timer = self.create_timer(self.settings.diagnostics_period_s, self._publish_diagnostics)
        self._worker = InferenceWorker(self.pipeline, self.channels, frames, self.settings.instance_source,
                                       logger=self.get_logger(), on_stop=self._worker_stopped)
        self._worker.start()
        self.get_logger().info(f"active: subscribed to {', '.join(topics)}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        for channel in self.channels:
            channel.close_outputs()
        if self._diagnostics_publisher is not None:
            self.destroy_lifecycle_publisher(self._diagnostics_publisher)
        close = getattr(self.pipeline.backend, "close", None) if self.pipeline is not None else None
        if close is not None:  # TensorRT: the stream and buffers now, not whenever the object is collected
            close()
        self.channels, self._diagnostics_publisher, self.pipeline = [], None, None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_inputs()
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        for channel in self.channels:
            channel.unsubscribe()
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._worker is not None:
            self._worker.stop(timeout=10.0)
            self._worker = None

    def _configure_when_built(self, engine_path) -> None:
        """autostart while an engine builds in the background: configure and activate once it is done."""
        elapsed = BUILDS.elapsed_s(engine_path)
        if BUILDS.running(engine_path):
            if elapsed - self._build_progress_at >= BUILD_PROGRESS_S:
                self._build_progress_at = elapsed
                self.get_logger().info(f"still building TensorRT engine {engine_path}: {elapsed:.0f} s so far")
            return
        self.destroy_timer(self._build_timer)
        self._build_timer = None
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()
        elif self._build_timer is None and self.request_exit is not None:  # failed, and no new build started
            self.get_logger().fatal("depth_node could not configure after the engine build (see the error above); exiting")
            self.exit_status = 1
            self.request_exit()

    def _worker_stopped(self, reason: str, exit_status: int) -> None:
        """The inference worker stopped serving (its thread calls this): /diagnostics ERROR, then the process
        ends with ``exit_status`` (docs/node.md: a lost CUDA context recovers only in a new process)."""
        self.exit_status = exit_status
        if self._diagnostics_publisher is not None:
            self._publish_diagnostics()
        if self.request_exit is not None:
            self.get_logger().fatal(f"depth_node exits with status {exit_status}: {reason}")
            self.request_exit()

    def _refresh_input_qos(self) -> None:
        for channel in self.channels:
            channel.refresh_subscriptions()

    def _publish_diagnostics(self) -> None:
        """One status per camera (its rates, counts, latency, inference time)."""
        backend = self.pipeline.backend.description if self.pipeline else "none"
        name = self.get_fully_qualified_name()
        array = DiagnosticArray(status=[channel.diagnostic_status(name, backend) for channel in self.channels])
        problem = self._worker.status() if self._worker is not None else None
        if problem is not None:  # the backend failing, or the worker stopped: every camera's status says so
            for status in array.status:
                status.level, status.message = DiagnosticStatus.ERROR, problem[1]
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_publisher.publish(array)


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM (any number: exit 0, no traceback); 1 when it cannot start; 3 when
    the backend kept failing, 4 after a programming error in the processing threads (docs/node.md)."""
    transport = apply_default_fastdds_profile()  # before rclpy.init: Fast DDS reads it when the participant starts
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = SignalStop().install()
    try:
        node = DepthNode()
    except ParameterError as error:
        rclpy.logging.get_logger("depth_node").fatal(f"{error}; exiting")
        rclpy.try_shutdown()
        return 1
    node.get_logger().info(transport.message)
    node.request_exit = stop.request
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.autostart:
            node.configure_when_built = True
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            elif node._build_timer is None:  # not waiting for a background engine build
                node.get_logger().fatal("depth_node could not configure (see the error above); exiting")
                return 1
        spin_until_stopped(executor, stop, node.context)
    except ExternalShutdownException:
        pass
    finally:
        if stop.received:
            node.get_logger().info(f"{stop.received[0]} received: shutting down")
        node._stop_inputs()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
        stop.ignore_further()
    return node.exit_status


if __name__ == "__main__":
    sys.exit(main())
