"""The contract between an exported ICM model and whoever runs it (the node, replay evaluation, tests).

One home for it: training/export.py writes models that follow it, icm_depth_ros/ reads them with it
(``ModelLoadError`` is what a runner raises when a file does not).
NumPy only: no PyTorch, no ROS.

Graph interface (ONNX and TensorRT engine alike). The metadata key ``icm.pixel_format`` says which of
the two a file has; runners take both.

``rgb_uint8_nhwc`` (PIXEL_FORMAT_UINT8, what training/export.py writes since issue 21): the graph does the
pixel work itself, so that TensorRT runs it on the GPU and the host uploads the camera's bytes:
    input  ``image``       uint8 [B, H, W, 3], RGB, the camera's pixels at the model's input size; the graph
                           converts to float, scales to [0, 1] (x * float32(1/255)), transposes to NCHW and
                           applies the ImageNet normalisation.
    output ``depth``       float32 [B, 1, H, W], metres along the optical axis, > 0.
    output ``cluster``     int32 [B, H/4, W/4], each membership cell's most likely cluster (arg-max of the
                           finest-scale membership A1 over its N clusters; the first on a tie).
    output ``firmness``    float32 [B, H/4, W/4], that cluster's membership (the maximum over N).

``rgb_float32_nchw_0_1`` (PIXEL_FORMAT_FLOAT32, files exported before issue 21):
    input  ``image``       float32 [B, 3, H, W], RGB, values in [0, 1]; ImageNet normalisation inside.
    output ``depth``       as above.
    output ``membership``  float32 [B, N, H/4, W/4], the finest-scale cluster membership A1 (softmax over
                           the N clusters); runners reduce it to cluster and firmness themselves
                           (``reduce_membership``), on the host.

Both backends return (depth, cluster, firmness) for either format. Everything else the runner needs
travels as ONNX metadata (string key/values) under the keys below.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_NAME = "image"
DEPTH_OUTPUT = "depth"
MEMBERSHIP_OUTPUT = "membership"  # rgb_float32_nchw_0_1 files only
CLUSTER_OUTPUT = "cluster"  # rgb_uint8_nhwc files
FIRMNESS_OUTPUT = "firmness"
MEMBERSHIP_STRIDE = 4  # the finest feature map F3 is 1/4 of the input
PIXEL_FORMAT_UINT8 = "rgb_uint8_nhwc"
PIXEL_FORMAT_FLOAT32 = "rgb_float32_nchw_0_1"
PIXEL_FORMATS = (PIXEL_FORMAT_UINT8, PIXEL_FORMAT_FLOAT32)
PIXEL_FORMAT = PIXEL_FORMAT_UINT8  # what training/export.py writes
PIXEL_SCALE = np.float32(1.0 / 255.0)  # uint8 -> [0, 1]: the same multiplication in the graph and on the host
# The graph's outputs per pixel format, in the order a backend returns what it derives from them.
OUTPUTS = {
    PIXEL_FORMAT_UINT8: (DEPTH_OUTPUT, CLUSTER_OUTPUT, FIRMNESS_OUTPUT),
    PIXEL_FORMAT_FLOAT32: (DEPTH_OUTPUT, MEMBERSHIP_OUTPUT),
}

# Metadata keys written into the ONNX file (metadata_props) and copied into engine fingerprints.
META_INPUT_HEIGHT = "icm.input_height"
META_INPUT_WIDTH = "icm.input_width"
META_PIXEL_FORMAT = "icm.pixel_format"
META_MIN_DEPTH = "icm.min_depth"
META_MAX_DEPTH = "icm.max_depth"
META_NUM_CLUSTERS = "icm.num_clusters"
META_MEMBERSHIP_STRIDE = "icm.membership_stride"
META_CONFIG_NAME = "icm.config_name"
META_CHECKPOINT_SHA256 = "icm.checkpoint_sha256"
META_PACKAGE_VERSION = "icm.package_version"
META_DYNAMIC_BATCH = "icm.dynamic_batch"
# Only in the fp16 / INT8 variants of an export (onnx_precision.py): the precision the graph carries
# (absent = fp32) and the sha256 of the fp32 file the variant was made from (the model's identity).
META_PRECISION = "icm.precision"
META_FP32_ONNX_SHA256 = "icm.fp32_onnx_sha256"
# The self-test reference (self_test.py): a reference input and the fp32 model's outputs for it, JSON. Written
# by training/export.py into every export; variants and engine fingerprints inherit it. Optional: files
# exported before it existed lack it.
META_SELF_TEST = "icm.self_test"

REQUIRED_KEYS = (
    META_INPUT_HEIGHT,
    META_INPUT_WIDTH,
    META_PIXEL_FORMAT,
    META_MIN_DEPTH,
    META_MAX_DEPTH,
    META_NUM_CLUSTERS,
    META_MEMBERSHIP_STRIDE,
    META_CONFIG_NAME,
    META_CHECKPOINT_SHA256,
    META_PACKAGE_VERSION,
)


@dataclass(frozen=True)
class ModelInfo:
    """What a runner must know about an exported model, parsed from its metadata."""

    input_height: int
    input_width: int
    pixel_format: str
    min_depth: float
    max_depth: float
    num_clusters: int
    membership_stride: int
    config_name: str
    checkpoint_sha256: str
    package_version: str
    dynamic_batch: bool = False

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph's output names for this pixel format."""
        return OUTPUTS[self.pixel_format]

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        """The graph input's shape for ``batch`` frames."""
        if self.pixel_format == PIXEL_FORMAT_UINT8:
            return (batch, self.input_height, self.input_width, 3)
        return (batch, 3, self.input_height, self.input_width)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.pixel_format == PIXEL_FORMAT_UINT8 else np.float32)

    def to_metadata(self) -> dict[str, str]:
        return {
            META_INPUT_HEIGHT: str(self.input_height),
            META_INPUT_WIDTH: str(self.input_width),
            META_PIXEL_FORMAT: self.pixel_format,
            META_MIN_DEPTH: repr(float(self.min_depth)),
            META_MAX_DEPTH: repr(float(self.max_depth)),
            META_NUM_CLUSTERS: str(self.num_clusters),
            META_MEMBERSHIP_STRIDE: str(self.membership_stride),
            META_CONFIG_NAME: self.config_name,
            META_CHECKPOINT_SHA256: self.checkpoint_sha256,
            META_PACKAGE_VERSION: self.package_version,
            META_DYNAMIC_BATCH: "true" if self.dynamic_batch else "false",
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> "ModelInfo":
        """Parse metadata; a missing or malformed key raises ValueError naming ``source`` and the key."""
        missing = [key for key in REQUIRED_KEYS if key not in metadata]
        if missing:
            raise ValueError(
                f"{source}: metadata lacks {', '.join(missing)}; was it written by training/export.py?"
            )

        def number(key: str, kind):
            try:
                return kind(metadata[key])
            except ValueError:
                raise ValueError(f"{source}: metadata {key}={metadata[key]!r} is not a {kind.__name__}") from None

        info = cls(
            input_height=number(META_INPUT_HEIGHT, int),
            input_width=number(META_INPUT_WIDTH, int),
            pixel_format=metadata[META_PIXEL_FORMAT],
            min_depth=number(META_MIN_DEPTH, float),
            max_depth=number(META_MAX_DEPTH, float),
            num_clusters=number(META_NUM_CLUSTERS, int),
            membership_stride=number(META_MEMBERSHIP_STRIDE, int),
            config_name=metadata[META_CONFIG_NAME],
            checkpoint_sha256=metadata[META_CHECKPOINT_SHA256],
            package_version=metadata[META_PACKAGE_VERSION],
            dynamic_batch=metadata.get(META_DYNAMIC_BATCH, "false") == "true",
        )
        if info.pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"{source}: pixel format {info.pixel_format!r}; this runner takes {' or '.join(PIXEL_FORMATS)}")
        if info.input_height <= 0 or info.input_width <= 0:
            raise ValueError(f"{source}: input size {info.input_height}x{info.input_width} is not positive")
        if not 0 < info.min_depth < info.max_depth:
            raise ValueError(f"{source}: depth range [{info.min_depth}, {info.max_depth}] is not 0 < min < max")
        return info


class ModelLoadError(RuntimeError):
    """The model cannot be used: missing file, wrong contract, mismatched engine. The text says which."""


class InferenceError(RuntimeError):
    """A backend failed while running a loaded model (a CUDA or TensorRT error, not a bad input): the frame
    is lost; the next call may succeed (a transient error) or fail the same way (a lost CUDA context).
    The text names the CUDA/TensorRT error. The node's inference thread counts these (docs/node.md)."""


def check_io_names(inputs: list[str], outputs: list[str], source: str, info: ModelInfo) -> None:
    """The graph must have the contract's tensor names for its pixel format."""
    wanted = info.outputs
    if INPUT_NAME not in inputs or any(name not in outputs for name in wanted):
        raise ModelLoadError(
            f"{source}: tensors are inputs {inputs}, outputs {outputs}; the contract for pixel format "
            f"{info.pixel_format!r} needs input {INPUT_NAME!r} and outputs {', '.join(map(repr, wanted))}"
        )


def model_input(info: ModelInfo, rgb: np.ndarray) -> np.ndarray:
    """Camera pixels uint8 [B, H, W, 3] (RGB, at the model's input size) -> the graph's input, contiguous.

    rgb_uint8_nhwc: the pixels themselves. rgb_float32_nchw_0_1: x * float32(1/255), transposed to
    [B, 3, H, W], which is what the pixel format's graphs do inside.
    """
    rgb = np.asarray(rgb)
    expected = (info.input_height, info.input_width, 3)
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[1:] != expected:
        raise ValueError(f"model input must be uint8 [B, {expected[0]}, {expected[1]}, 3] RGB pixels, got "
                         f"{rgb.dtype} {list(rgb.shape)}")
    if info.pixel_format == PIXEL_FORMAT_UINT8:
        return np.ascontiguousarray(rgb)
    return unit_float(rgb)


def unit_float(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 pixels [..., H, W, 3] -> float32 [..., 3, H, W] in [0, 1], x * PIXEL_SCALE: what a rgb_uint8_nhwc
    graph does inside (Cast, Mul, Transpose), and the input of a rgb_float32_nchw_0_1 one. ``out``: where to
    write it (a new C-contiguous array without it); returned."""
    pixels = np.asarray(pixels)
    if out is None:
        out = np.empty(pixels.shape[:-3] + (3,) + pixels.shape[-3:-1], dtype=np.float32)
    return np.multiply(np.moveaxis(pixels, -1, -3), PIXEL_SCALE, out=out)



def pixels_from_unit_float(image: np.ndarray) -> np.ndarray:
    """Images float [B, 3, H, W] in [0, 1] that came from uint8 pixels (x / 255: dataset and calibration frames)
    -> those pixels, uint8 [B, H, W, 3] (rounded: exact for such images)."""
    image = np.asarray(image)
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"images must be float [B, 3, H, W] in [0, 1], got {image.dtype} {list(image.shape)}")
    return np.ascontiguousarray(np.clip(np.rint(image.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8))


def reduce_membership(membership: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """membership [B, N, h, w] -> (cluster int32 [B, h, w], firmness float32 [B, h, w]): what a
    rgb_uint8_nhwc graph outputs itself, computed on the host for rgb_float32_nchw_0_1 files."""
    membership = np.asarray(membership)
    return membership.argmax(axis=1).astype(np.int32), membership.max(axis=1).astype(np.float32, copy=False)


def reduced_outputs(pixel_format: str, outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A graph's outputs in ``OUTPUTS[pixel_format]`` order -> (depth, cluster, firmness), what every backend
    returns: a rgb_float32_nchw_0_1 file's membership reduced here, on the host."""
    if pixel_format == PIXEL_FORMAT_FLOAT32:
        depth, membership = outputs
        return (depth, *reduce_membership(membership))
    depth, cluster, firmness = outputs
    return depth, cluster, firmness
