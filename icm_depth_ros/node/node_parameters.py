"""Every parameter of depth_node in one table: name, default (which fixes the type), allowed values, meaning.

config/depth.yaml and the README mirror this table; test/icm_depth_ros/node/test_launch_config.py checks they agree.
Also here, free of rclpy: which parameters a running node applies at once (LIVE_PARAMETERS), the type a
value must have (``coerce_value``: an integer is taken for a double) and the value checks (``check_values``).
The ROS side (declaring, the params file's unknown names, run-time sets) is ros_parameters.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from icm_depth_ros.inference import BACKENDS, ONNXRUNTIME_PROVIDERS, PRECISIONS
from icm_depth_ros.inference.self_test import POLICIES as SELF_TEST_POLICIES
from icm_depth_ros.instances.tracking import TrackerConfig
from icm_depth_ros.processing.geometry import RESIZE_POLICIES
from icm_depth_ros.processing.pipeline import INSTANCE_SOURCES, OUTPUT_RESOLUTIONS, PipelineConfig

QOS_PROFILES = ("sensor_data", "reliable")
INPUT_QOS_PROFILES = ("auto", *QOS_PROFILES)  # auto: follow the publishers (transport.py)

# name: (default, allowed values or None, meaning)
PARAMETERS: dict[str, tuple[object, tuple | None, str]] = {
    "model_path": ("", None, "exported model: .onnx file, or a TensorRT .engine with its .fingerprint.json"),
    "backend": ("auto", BACKENDS, "inference backend; auto = TensorRT where it works, else ONNX Runtime (logged)"),
    "precision": ("fp16", PRECISIONS, "TensorRT engine precision (checked against the fingerprint); ONNX Runtime runs fp32"),
    "onnx_path": ("", None, "ONNX file for ONNX Runtime and engine rebuilds; empty = model_path, or <engine>.onnx beside an engine"),
    "allow_engine_build": (False, None, "rebuild a missing/mismatched TensorRT engine from onnx_path at configure (minutes)"),
    "onnxruntime_provider": ("auto", ONNXRUNTIME_PROVIDERS, "ONNX Runtime execution provider; auto = CUDA where present, else CPU"),
    "self_test": ("refuse", SELF_TEST_POLICIES, "at configure, run the backend on the model's reference input and compare with its fp32 reference (docs/node.md); refuse = a failure stops configure, warn = log it and run, off"),
    "inference_threads": (0, None, "ONNX Runtime intra-op threads; 0 = its default (all cores)"),
    "input_height": (0, None, "model input height; 0 = the model's own (exported graphs have a fixed size); else must match it"),
    "input_width": (0, None, "model input width; 0 = the model's own; else must match it"),
    "resize_policy": ("crop", RESIZE_POLICIES, "camera image -> model input: resize (stretch), crop (scale to cover, centre crop), letterbox (scale to fit, pad)"),
    "output_resolution": ("input", OUTPUT_RESOLUTIONS, "depth/image grid: input = the camera image's pixels (NaN outside a crop), model = the model's"),
    "min_depth": (0.0, None, "metres; depths are clamped to [min_depth, max_depth]; 0 = the model's range"),
    "max_depth": (0.0, None, "metres; 0 = the model's range"),
    "instance_source": ("clusters", INSTANCE_SOURCES, "clusters = the network's finest-scale depth clusters split into connected regions; topic = label image on 'instances'; none"),
    "min_instance_pixels": (50, None, "smallest instance reported, in depth/image pixels"),
    "max_instances": (64, None, "clusters: report at most this many regions, the largest; 0 = no limit"),
    "instance_label_divisor": (0, None, "topic: labels are class * divisor + instance (panoptic); 0 = class unknown (-1)"),
    "instance_timeout_s": (0.2, None, "topic: how long to wait for the label image with the frame's stamp"),
    "tracking": (True, None, "follow instances over frames: track_id, range, range_rate, ttc and their stds in depth/instances (false: those columns 0 / NaN)"),
    "track_confirm_hits": (3, None, "matched frames before a track is confirmed and gets an id (earlier: track_id 0)"),
    "track_max_misses": (5, None, "frames in a row without a match before a confirmed track ends (its id is not reused)"),
    "track_min_iou": (0.1, None, "association gate, overlap: an instance may pair with a track whose box it overlaps by at least this IoU (or whose centroid is within track_gate_m)"),
    "track_gate_m": (3.0, None, "association gate, distance: metres between the track's predicted 3-D centroid and the instance's; cost = (1 - IoU) + distance / track_gate_m, minimised by scipy's linear_sum_assignment"),
    "track_max_gap_s": (1.0, None, "a longer gap between image stamps ends every track of the camera"),
    "track_jerk_std": (10.0, None, "m/s^3, filter process noise (constant-acceleration filters): how fast objects change their braking or acceleration"),
    "track_range_noise_fraction": (0.08, None, "filter measurement noise: the depth's error between frames as a fraction of range (divided by the instance's confidence; plus the near percentile's sampling error); 0.08 fits the demo model, set it from replay_eval's calibration for yours"),
    "track_scale_noise_px": (0.5, None, "filter measurement noise of the image-size cue: std of each box edge between frames, pixels"),
    "use_compressed": (False, None, "subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image"),
    "input_qos": ("auto", INPUT_QOS_PROFILES, "reliability of the image, camera_info and instances subscriptions; auto = reliable when every publisher offers reliable (lost fragments of large images are resent), else best effort"),
    "input_qos_depth": (1, None, "subscription history depth (1: only the newest frame waits)"),
    "output_qos": ("reliable", QOS_PROFILES, "QoS of the published topics"),
    "output_qos_depth": (2, None, "publisher history depth"),
    "publish_colorized": (True, None, "publish depth/colorized (bgr8), only while someone subscribes"),
    "publish_markers": (True, None, "publish depth/instance_markers (MarkerArray), only while someone subscribes"),
    "publish_diagnostics": (True, None, "publish /diagnostics (rates, drops, latency, backend)"),
    "diagnostics_period_s": (1.0, None, "seconds between /diagnostics messages"),
    "max_input_pixels": (16_777_216, None, "images with more pixels are rejected (corrupt headers, wrong topic)"),
    "require_camera_info": (False, None, "reject images until a camera_info arrived; false: publish depth with an all-zero K"),
    "reject_out_of_order": (True, None, "reject images whose stamp is not newer than the last accepted one"),
    "error_throttle_s": (5.0, None, "log each kind of bad input at most once per this many seconds"),
    "autostart": (True, None, "configure and activate on start-up (false: wait for a lifecycle manager)"),
    "cameras": ([""], None, "camera namespaces this node serves, each with its own inputs and outputs (front/image -> front/depth/image); [\"\"] = one camera in the node's namespace"),
}


@dataclass(frozen=True)
class NodeSettings:
    """The node-side parameters (the pipeline's go to PipelineConfig)."""

    instance_source: str
    instance_timeout_s: float
    use_compressed: bool
    input_qos: str
    input_qos_depth: int
    output_qos: str
    output_qos_depth: int
    publish_colorized: bool
    publish_markers: bool
    publish_diagnostics: bool
    diagnostics_period_s: float
    max_input_pixels: int
    require_camera_info: bool
    reject_out_of_order: bool
    error_throttle_s: float
    self_test: str  # refuse | warn | off: the self-test at configure (inference/self_test.py)
    tracker: TrackerConfig | None  # None: tracking off


PIPELINE_PARAMETERS = {
    "model_path": "model_path", "backend": "backend", "precision": "precision", "onnx_path": "onnx_path",
    "allow_engine_build": "allow_engine_build", "onnxruntime_provider": "onnxruntime_provider",
    "inference_threads": "threads", "input_height": "input_height", "input_width": "input_width",
    "resize_policy": "resize_policy", "output_resolution": "output_resolution", "min_depth": "min_depth",
    "max_depth": "max_depth", "min_instance_pixels": "min_instance_pixels", "max_instances": "max_instances",
    "instance_label_divisor": "instance_label_divisor",
}
POSITIVE = ("instance_timeout_s", "input_qos_depth", "output_qos_depth", "diagnostics_period_s", "max_input_pixels")
NON_NEGATIVE = ("inference_threads", "input_height", "input_width", "min_instance_pixels", "max_instances",
                "instance_label_divisor", "min_depth", "max_depth", "error_throttle_s")


# Applied by a configured node between two frames; every other parameter is read at configure
# (STARTUP_PARAMETERS: when the process starts).
LIVE_PARAMETERS = frozenset({
    "min_depth", "max_depth", "min_instance_pixels", "max_instances", "instance_label_divisor", "instance_timeout_s",
    "publish_colorized", "publish_markers", "max_input_pixels", "require_camera_info", "reject_out_of_order",
    "error_throttle_s",
})
STARTUP_PARAMETERS = frozenset({"autostart"})
TYPE_NAMES = {bool: "bool", int: "integer", float: "double", str: "string", list: "string array"}


def type_name(value) -> str:
    return TYPE_NAMES.get(type(value), type(value).__name__)


def coerce_value(name: str, value):
    """``value`` as the type of ``name``'s default (an integer for a double becomes a float);
    ValueError, one line naming the parameter, the value and the type wanted, when it cannot be."""
    default = PARAMETERS[name][0]
    if type(value) is type(default):
        if isinstance(default, list) and not all(isinstance(item, str) for item in value):
            raise ValueError(f"parameter {name}={value!r} must be a list of strings")
        return value
    if isinstance(default, float) and type(value) is int:
        return float(value)
    example = f" (e.g. {name}: {default!r})" if not isinstance(default, list) else ' (e.g. ["front", "left"])'
    raise ValueError(f"parameter {name}={value!r} has type {type_name(value)}; it must be {type_name(default)}{example}")


def check_values(values: dict[str, object]) -> None:
    """ValueError naming the first parameter whose value is not allowed, and what is."""
    for name, (_, allowed, _) in PARAMETERS.items():
        if allowed is not None and values[name] not in allowed:
            raise ValueError(f"parameter {name}={values[name]!r} is not one of {', '.join(allowed)}")
    for name in POSITIVE:
        if not values[name] > 0:
            raise ValueError(f"parameter {name}={values[name]!r} must be > 0")
    for name in NON_NEGATIVE:
        if not values[name] >= 0:
            raise ValueError(f"parameter {name}={values[name]!r} must be >= 0")
    tracker_config(values)  # its own checks (ValueError naming track_<field>)


def tracker_config(values: dict[str, object]) -> TrackerConfig | None:
    """The track_* parameters as a TrackerConfig (None when tracking is off); ValueError names a bad one."""
    config = TrackerConfig(**{field: values[f"track_{field}"] for field in TrackerConfig.__dataclass_fields__})
    return config if values["tracking"] else None


def parse_parameters(values: dict[str, object]) -> tuple[PipelineConfig, NodeSettings]:
    """Parameter values by name -> configs; ValueError names the parameter and what is allowed."""
    check_values(values)
    if not values["model_path"]:
        raise ValueError("parameter model_path is empty: set it to an exported .onnx file or a TensorRT .engine")
    pipeline = PipelineConfig(**{field: values[name] for name, field in PIPELINE_PARAMETERS.items()})
    node = NodeSettings(**{field: values[field] for field in NodeSettings.__dataclass_fields__ if field != "tracker"},
                        tracker=tracker_config(values))
    return pipeline, node
