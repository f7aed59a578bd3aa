"""The model's self-test: a reference input, what the fp32 export outputs for it, and the comparison.

TensorRT engines have been seen to compute wrong numbers without failing (a version's fp16 auto-cast, a
kernel on one GPU); a fingerprint catches a mismatched engine, not a wrong one. So every ONNX file
training/export.py writes carries, under the metadata key ``icm.self_test`` (contract.META_SELF_TEST),
a reference: a deterministic road scene at the model's input size and what the fp32 graph, run by
ONNX Runtime on the CPU, outputs for it. Whoever runs the model (the node at configure, replay_eval,
export.py after an engine build, the command below) runs its backend on the same input and compares:

    depth      abs_rel and max relative error against the fp32 reference, on the reference's grid
    clusters   agreement: the share of membership cells whose cluster (the membership's arg-max: the graph's
               ``cluster`` output, or computed from ``membership`` for older files) is the reference's

against a tolerance per precision the backend runs (TOLERANCES; measured, docs/export.md). The fp16 and
INT8 variants inherit the key from the fp32 file (training/exporting/variants.py copies the metadata),
so their reference is the fp32 model's, and an engine's fingerprint carries it in ``model_metadata``.

The reference (JSON, compact: 59 KB for the demo model at 96x320; at 352x1216 at most 110 KB, even for
incompressible outputs)::

    format      1
    input       {"generator": "road_scene_v1", "seed": 0, "height": H, "width": W, "sha256": hex}
                the image is not stored: ``reference_image`` renders it again, with integer arithmetic
                only (exact on every machine and NumPy version); the sha256 of its uint8 pixels is checked
    computed_with  "onnxruntime 1.32.0 (CPUExecutionProvider), fp32 graph"
    depth       {"stride": s, "shape": [h, w], "dtype": "float16", "data": zlib+base64}
                depth[::s, ::s] of the [H, W] output, s the smallest stride that keeps <= 32768 samples
                (1 for the demo model: every pixel; 4 at 352x1216); float16 keeps 11 significant bits,
                a relative error of at most 4.9e-4, below every tolerance
    membership  {"num_clusters": N, "argmax": {"dtype": "uint8", "shape": [H/4, W/4], "data": zlib+base64}}:
                each membership cell's arg-max cluster (uint16 for N > 255)

ROS-free, no PyTorch. ``onnx`` is needed only to write a reference into a file, ``onnxruntime`` only to
compute one. The command (exit 0 passed, 1 failed, 2 no reference or bad input)::

    python -m icm_depth_ros.inference.self_test MODEL [--backend B] [--precision P] [--onnx-path F]
    python -m icm_depth_ros.inference.self_test MODEL.onnx --write-reference [--out OUT.onnx]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icm_depth_ros.inference import contract
from icm_depth_ros.inference.contract import META_PRECISION, META_SELF_TEST, ModelLoadError

FORMAT = 1
GENERATOR = "road_scene_v1"
DEFAULT_SEED = 0
MAX_DEPTH_SAMPLES = 32768  # depth values kept: 64 KB of float16 before compression
POLICIES = ("refuse", "warn", "off")


@dataclass(frozen=True)
class Tolerance:
    """What a backend of one precision may differ from the fp32 reference by."""

    abs_rel: float  # mean |d - ref| / ref, at most
    max_rel: float  # max |d - ref| / ref, at most
    agreement: float  # share of membership cells with the reference's arg-max cluster, at least

    def describe(self) -> str:
        return f"abs_rel <= {self.abs_rel:g}, max relative error <= {self.max_rel:g}, cluster agreement >= {self.agreement:.1%}"


# Set from measurement on the shipped demo model (bench/self_test_tolerances.py; docs/export.md, "Self-test"):
# ONNX Runtime on the CPU, each precision's file against the fp32 reference, and the same model with its
# weights changed (what must fail). Each bound leaves a margin over the measured figure for other backends
# (TensorRT's kernels, the CUDA provider's TF32) and models, and stays far from the changed model's figures.
TOLERANCES = {
    "fp32": Tolerance(abs_rel=5e-3, max_rel=5e-2, agreement=0.98),
    "fp16": Tolerance(abs_rel=1e-2, max_rel=1e-1, agreement=0.95),
    "int8": Tolerance(abs_rel=1e-1, max_rel=1.0, agreement=0.85),
}


# ---- the reference input ---------------------------------------------------------------------------------


def _hash(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """A 32-bit integer hash per (x, y) lattice point, uint64 arithmetic masked to 32 bits: exact everywhere."""
    mask = np.uint64(0xFFFFFFFF)
    h = (x.astype(np.uint64) * np.uint64(374761393) + y.astype(np.uint64) * np.uint64(668265263)
         + np.uint64((seed * 2246822519 + 1013904223) & 0xFFFFFFFF)) & mask
    h = ((h ^ (h >> np.uint64(13))) * np.uint64(1274126177)) & mask
    return h ^ (h >> np.uint64(16))


def reference_image(height: int, width: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """A road scene, uint8 RGB [height, width, 3], drawn with integer arithmetic only.

    Sky, facades with windows on both sides, a road in perspective with lane and edge markings, pavement
    and grass, three cars at different distances and per-pixel texture noise. The same pixels on every
    machine and NumPy version (no floating point is involved), so a vehicle regenerates exactly the
    image the reference was computed on. Any size of at least 8x8 (models are multiples of 32; the
    bindings doubles' test models are 16x32).
    """
    if height < 8 or width < 8:
        raise ValueError(f"reference image {height}x{width}: needs at least 8x8")
    H, W = int(height), int(width)
    y, x = np.mgrid[0:H, 0:W].astype(np.int64)
    rgb = np.zeros((3, H, W), np.int64)
    horizon = H * 2 // 5
    ground = H - horizon  # rows below the horizon
    centre = W // 2

    # sky: brighter towards the horizon
    sky = y < horizon
    for channel, (top, change) in enumerate(((90, 80), (150, 60), (230, 15))):
        rgb[channel] = np.where(sky, top + change * y // max(horizon, 1), rgb[channel])

    # facades on both sides, above the horizon, with a grid of dark windows
    for left, right, top, colour in ((0, W * 28 // 100, H * 8 // 100, (178, 160, 120)),
                                     (W * 71 // 100, W, H * 16 // 100, (150, 148, 145))):
        facade = (x >= left) & (x < right) & (y >= top) & (y < horizon)
        window = facade & ((x * 24 // W) % 3 == 1) & (((y - top) * 32 // H) % 3 == 1)
        for channel in range(3):
            rgb[channel] = np.where(facade, colour[channel], rgb[channel])
            rgb[channel] = np.where(window, (40, 48, 60)[channel], rgb[channel])

    # the ground: lateral position u in per mille of the width at the bottom row, distance z ~ 1 / rows
    below = y >= horizon
    rows = np.maximum(y - horizon + 1, 1)
    u = (x - centre) * ground * 1000 // (rows * W)
    z = ground * 256 // rows
    road = below & (np.abs(u) < 420)
    pavement = below & ~road & (np.abs(u) < 540)
    grass = below & ~road & ~pavement
    dash = (z // 24) % 2 == 0
    marking = road & (((np.abs(u - 140) < 9) | (np.abs(u + 140) < 9)) & dash | (np.abs(u) >= 400))
    tiles = pavement & (((z // 12) % 2 == 0) ^ ((u // 40) % 2 == 0))
    for channel, (asphalt, paint, stone, tile, lawn) in enumerate(
            ((92, 222, 176, 160, 74), (94, 222, 172, 156, 128), (100, 214, 164, 150, 52))):
        rgb[channel] = np.where(road, asphalt, rgb[channel])
        rgb[channel] = np.where(marking, paint, rgb[channel])
        rgb[channel] = np.where(pavement, np.where(tiles, tile, stone), rgb[channel])
        rgb[channel] = np.where(grass, lawn + 12 * ((z // 16) % 2), rgb[channel])

    # cars, far to near (nearer ones drawn over): bottom row as a share of the ground, lane offset u, colour
    for share, lane, colour in ((18, -60, (230, 230, 235)), (38, 270, (200, 160, 30)), (72, -260, (150, 30, 30))):
        bottom = horizon + ground * share // 100
        scale = bottom - horizon + 1  # rows below the horizon at the car's wheels: its size in pixels
        half = scale * W * 100 // (ground * 1000)  # a 2 m wide car on a road 8.4 m wide
        middle = centre + lane * scale * W // (ground * 1000)
        top = bottom - half * 3 // 2
        body = (x >= middle - half) & (x < middle + half) & (y >= top) & (y < bottom)
        cabin = body & (y < top + (bottom - top) * 2 // 5)
        glass = cabin & (y > top + (bottom - top) // 10) & (np.abs(x - middle) < half * 3 // 4)
        wheels = body & (y >= bottom - (bottom - top) // 5) & (np.abs(x - middle) > half * 2 // 3)
        for channel in range(3):
            rgb[channel] = np.where(body, colour[channel], rgb[channel])
            rgb[channel] = np.where(cabin, colour[channel] * 3 // 4, rgb[channel])
            rgb[channel] = np.where(glass, (30, 38, 48)[channel], rgb[channel])
            rgb[channel] = np.where(wheels, 20, rgb[channel])

    # texture: +-10 per pixel (+-3 in the sky), the same noise in each channel
    noise = (_hash(x, y, seed) % np.uint64(21)).astype(np.int64) - 10
    rgb += np.where(sky, noise // 3, noise)[None]
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


def image_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()


def to_input(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> the rgb_float32_nchw_0_1 input [1, 3, H, W] in [0, 1] (correctly rounded: exact
    everywhere): how references of files in that format were computed."""
    return (np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)).astype(np.float32)


# ---- the reference ---------------------------------------------------------------------------------------


def _pack(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "data": base64.b64encode(zlib.compress(array.tobytes(), 9)).decode("ascii")}


def _unpack(packed: dict, name: str) -> np.ndarray:
    dtype = np.dtype(packed["dtype"])
    if dtype not in (np.dtype(np.float16), np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"{name}: dtype {dtype} is not one a reference uses")
    shape = tuple(int(n) for n in packed["shape"])
    data = zlib.decompress(base64.b64decode(packed["data"]))
    if len(data) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{name}: {len(data)} bytes for shape {list(shape)} of {dtype}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def depth_stride(height: int, width: int, budget: int = MAX_DEPTH_SAMPLES) -> int:
    """The smallest stride s with ceil(H/s) * ceil(W/s) <= budget."""
    stride = 1
    while -(-height // stride) * -(-width // stride) > budget:
        stride += 1
    return stride


def stored_clusters(cluster: np.ndarray, num_clusters: int) -> np.ndarray:
    """cluster [h, w] (each cell's arg-max cluster) -> the stored form: uint8, or uint16 for N > 255."""
    return np.asarray(cluster).astype(np.uint8 if num_clusters <= 255 else np.uint16)


@dataclass(frozen=True)
class Reference:
    """A model's self-test reference (see the module docstring for the stored form)."""

    height: int
    width: int
    seed: int
    input_sha256: str
    depth_stride: int
    depth: np.ndarray  # float32 [ceil(H/s), ceil(W/s)], the stored float16 values
    argmax: np.ndarray  # [H/4, W/4], uint8 (uint16 for more than 255 clusters)
    num_clusters: int
    computed_with: str = ""

    def pixels(self) -> np.ndarray:
        """The reference image, uint8 [H, W, 3]; ValueError when it does not render to the stored sha256."""
        image = reference_image(self.height, self.width, self.seed)
        if image_sha256(image) != self.input_sha256:
            raise ValueError(f"the reference input ({GENERATOR}, seed {self.seed}, {self.height}x{self.width}) "
                             "renders differently here than where the reference was computed (sha256 differs)")
        return image

    def input(self, pixel_format: str = contract.PIXEL_FORMAT) -> np.ndarray:
        """The reference input as a graph of ``pixel_format`` takes it (contract.py): uint8 [1, H, W, 3], or
        float32 [1, 3, H, W] in [0, 1]."""
        return model_input(self.pixels(), pixel_format)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT,
            "input": {"generator": GENERATOR, "seed": self.seed, "height": self.height, "width": self.width,
                      "sha256": self.input_sha256},
            "computed_with": self.computed_with,
            "depth": {"stride": self.depth_stride, **_pack(self.depth.astype(np.float16))},
            "membership": {"num_clusters": self.num_clusters, "argmax": _pack(self.argmax)},
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "Reference":
        """Parse a stored reference; ValueError naming ``source`` and what is wrong."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, this reader knows {FORMAT}")
            given = data["input"]
            if given.get("generator") != GENERATOR:
                raise ValueError(f"input generator {given.get('generator')!r}, this reader knows {GENERATOR!r}")
            depth = _unpack(data["depth"], "depth").astype(np.float32)
            membership = data["membership"]
            reference = cls(height=int(given["height"]), width=int(given["width"]), seed=int(given["seed"]),
                            input_sha256=str(given["sha256"]), depth_stride=int(data["depth"]["stride"]),
                            depth=depth, argmax=_unpack(membership["argmax"], "argmax"),
                            num_clusters=int(membership["num_clusters"]),
                            computed_with=str(data.get("computed_with", "")))
        except (KeyError, TypeError, ValueError, zlib.error, json.JSONDecodeError) as error:
            message = f"{type(error).__name__}: {error}" if isinstance(error, (KeyError, TypeError)) else str(error)
            raise ValueError(f"{source}: metadata {META_SELF_TEST} is not a readable self-test reference ({message})") from None
        stride = reference.depth_stride
        expected = (-(-reference.height // stride), -(-reference.width // stride))
        cells = (reference.height // contract.MEMBERSHIP_STRIDE, reference.width // contract.MEMBERSHIP_STRIDE)
        if stride < 1 or reference.depth.shape != expected or reference.argmax.shape != cells \
                or not np.all(reference.depth > 0):
            raise ValueError(f"{source}: metadata {META_SELF_TEST}: shapes do not fit a {reference.height}x"
                             f"{reference.width} input (depth {list(reference.depth.shape)}, stride {stride}, "
                             f"membership {list(reference.argmax.shape)}) or depths are not > 0")
        return reference


def model_input(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """uint8 [H, W, 3] -> the input [1, ...] of a graph of ``pixel_format``."""
    if pixel_format == contract.PIXEL_FORMAT_FLOAT32:
        return to_input(image)
    if pixel_format != contract.PIXEL_FORMAT_UINT8:
        raise ValueError(f"pixel format {pixel_format!r} is not one of {contract.PIXEL_FORMATS}")
    return np.ascontiguousarray(image[None])


def make_reference(depth: np.ndarray, cluster: np.ndarray, num_clusters: int, *, seed: int = DEFAULT_SEED,
                   computed_with: str = "") -> Reference:
    """A reference from outputs for ``reference_image(H, W, seed)``: depth [1, 1, H, W] (or [H, W]) and
    cluster [1, H/4, W/4] (or [H/4, W/4]), each cell's arg-max cluster of ``num_clusters``."""
    depth = np.asarray(depth, dtype=np.float32).reshape(depth.shape[-2:])
    cluster = np.asarray(cluster).reshape(cluster.shape[-2:])
    height, width = depth.shape
    stride = depth_stride(height, width)
    sampled = depth[::stride, ::stride].astype(np.float16).astype(np.float32)
    return Reference(height=height, width=width, seed=seed,
                     input_sha256=image_sha256(reference_image(height, width, seed)), depth_stride=stride,
                     depth=sampled, argmax=stored_clusters(cluster, num_clusters), num_clusters=int(num_clusters),
                     computed_with=computed_with)


def read_reference(metadata: dict, source: str = "model") -> Reference | None:
    """The reference in ``metadata`` (an ONNX file's metadata_props, or an engine fingerprint's model_metadata);
    None when the model has none (exported before the self-test existed); ValueError when it is unreadable
    or does not fit the model's input size."""
    text = metadata.get(META_SELF_TEST)
    if text is None:
        return None
    reference = Reference.from_json(text, source)
    size = (metadata.get(contract.META_INPUT_HEIGHT), metadata.get(contract.META_INPUT_WIDTH))
    if size != (str(reference.height), str(reference.width)):
        raise ValueError(f"{source}: the self-test reference is for {reference.height}x{reference.width}, "
                         f"the model's input is {size[0]}x{size[1]}")
    return reference


def compute_reference(onnx_path: str | Path, seed: int = DEFAULT_SEED) -> Reference:
    """The reference of an fp32 ONNX file: ONNX Runtime (CPU) runs it on the reference input."""
    import onnxruntime  # noqa: PLC0415 - only writing a reference needs it

    metadata = _onnx_metadata(onnx_path)
    if metadata.get(META_PRECISION, "fp32") != "fp32":
        raise ValueError(f"{onnx_path} is the {metadata[META_PRECISION]} variant: a reference is computed on the fp32 "
                         "export (variants inherit it)")
    info = contract.ModelInfo.from_metadata(metadata, source=str(onnx_path))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    image = model_input(reference_image(info.input_height, info.input_width, seed), info.pixel_format)
    depth, cluster, _ = contract.reduced_outputs(
        info.pixel_format, session.run(list(info.outputs), {contract.INPUT_NAME: image}))
    return make_reference(depth, cluster, info.num_clusters, seed=seed,
                          computed_with=f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider), fp32 graph")


def write_reference(onnx_path: str | Path, out_path: str | Path | None = None,
                    reference: Reference | None = None) -> Reference:
    """Put ``reference`` (default: ``compute_reference(onnx_path)``) into the file's metadata under
    ``icm.self_test``; the graph, the weights and the other metadata stay as they are. Writes ``out_path``
    (default: in place). Note that the file's sha256 changes: engines built from it must be rebuilt."""
    import onnx  # noqa: PLC0415

    reference = reference if reference is not None else compute_reference(onnx_path)
    model = onnx.load(str(onnx_path))
    kept = [prop for prop in model.metadata_props if prop.key != META_SELF_TEST]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_SELF_TEST, reference.to_json()
    onnx.save(model, str(out_path or onnx_path))
    return reference


def write_perturbed_copy(source: str | Path, target: str | Path, scale: float, seed: int = 0) -> Path:
    """``source`` with Gaussian noise (``scale`` x each tensor's spread) on every float weight, metadata kept:
    a model that runs and declares itself the same but predicts otherwise, which the self-test must refuse
    (the tests' and the tolerance benchmark's stand-in for a corrupted or mismatched file)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    rng = np.random.default_rng(seed)
    for initializer in model.graph.initializer:
        weights = numpy_helper.to_array(initializer)
        if weights.dtype == np.float32 and weights.size > 1:
            noisy = weights + rng.normal(0.0, scale * float(weights.std()) + 1e-6, weights.shape).astype(np.float32)
            initializer.CopyFrom(numpy_helper.from_array(noisy, initializer.name))
    onnx.save(model, str(target))
    return Path(target)


def _onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    from icm_depth_ros.inference.onnx_precision import onnx_metadata  # noqa: PLC0415

    return onnx_metadata(onnx_path)


# ---- the comparison --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    abs_rel: float
    max_rel: float
    agreement: float

    def within(self, tolerance: Tolerance) -> bool:
        return (self.abs_rel <= tolerance.abs_rel and self.max_rel <= tolerance.max_rel
                and self.agreement >= tolerance.agreement)

    def describe(self) -> str:
        return (f"depth abs_rel {self.abs_rel:.2e}, max relative error {self.max_rel:.2e}, "
                f"cluster agreement {self.agreement:.1%}")


def compare(reference: Reference, depth: np.ndarray, cluster: np.ndarray, num_clusters: int) -> Figures:
    """Figures of outputs for the reference input (depth [1, 1, H, W], cluster [1, H/4, W/4] of a model with
    ``num_clusters``) against it. A non-finite depth counts as an infinite error; a model of another cluster
    count has no agreement."""
    depth = np.asarray(depth, dtype=np.float32)
    cluster = np.asarray(cluster)
    cells = reference.argmax.shape
    if depth.shape[-2:] != (reference.height, reference.width) or cluster.shape[-2:] != cells:
        raise ValueError(f"outputs depth {list(depth.shape)}, cluster {list(cluster.shape)} do not fit the "
                         f"reference ({reference.height}x{reference.width}, membership {list(cells)})")
    sampled = depth.reshape(depth.shape[-2:])[::reference.depth_stride, ::reference.depth_stride]
    relative = np.abs(sampled - reference.depth) / reference.depth
    relative = np.where(np.isfinite(relative), relative, np.inf)
    if num_clusters != reference.num_clusters:
        agreement = 0.0
    else:
        agreement = float(np.mean(cluster.reshape(cells) == reference.argmax))
    return Figures(abs_rel=float(np.mean(relative)), max_rel=float(np.max(relative)), agreement=agreement)


@dataclass(frozen=True)
class Result:
    figures: Figures
    tolerance: Tolerance
    precision: str
    backend: str  # the backend's description and versions
    model: str

    @property
    def passed(self) -> bool:
        return self.figures.within(self.tolerance)

    def line(self) -> str:
        """One line: 'self-test passed: ...' or 'self-test failed: ...' with figures, tolerance, backend and advice."""
        where = f"{self.backend}, precision {self.precision}, model {self.model}"
        if self.passed:
            return f"self-test passed: {self.figures.describe()} against the fp32 reference ({where}; tolerance {self.tolerance.describe()})"
        return (f"self-test failed: {self.figures.describe()} against the fp32 reference; tolerance for {self.precision}: "
                f"{self.tolerance.describe()} ({where}). {advice(self.backend, self.precision)}")


def advice(backend: str, precision: str) -> str:
    """What to try when the self-test fails."""
    if backend.startswith("tensorrt"):
        tips = {"fp32": "the engine does not compute what the ONNX file does: rebuild it (training/export.py --engine, "
                        "or allow_engine_build:=true after deleting it), try another TensorRT release (10.3 on JetPack "
                        "6.2 is known to give wrong outputs for some models), or run backend:=onnxruntime",
                "fp16": "precision:=fp32 (an fp16 overflow or a TensorRT fp16 bug), another TensorRT release, or "
                        "backend:=onnxruntime",
                "int8": "precision:=fp16, or re-export the INT8 variant calibrated on frames of this camera "
                        "(training/export.py --int8-out ... --calib DIR)"}
        return "Try: " + tips.get(precision, tips["fp32"]) + "."
    if precision == "fp32":
        cuda = "; on the CUDA provider, also onnxruntime_provider:=cpu" if "CUDA" in backend else ""
        return ("Try: the weights or graph are not those the reference was computed from (a changed or corrupt "
                f"file?): re-export the model with training/export.py{cuda}.")
    return (f"Try: the fp32 export (model.onnx) instead of this {precision} variant, or re-export the variant "
            "(training/export.py --fp16-out / --int8-out --calib DIR).")


class SelfTestFailed(ModelLoadError):
    """The backend's outputs for the reference input are outside the tolerance; the message is the line."""


def backend_precision(backend, requested: str | None = None) -> str:
    """The precision the backend computes in: its own ``precision`` (ONNX Runtime: the file's), else the one
    the engine was opened for (TensorRT: checked against its fingerprint)."""
    return getattr(backend, "precision", None) or requested or "fp32"


def backend_label(backend) -> str:
    """The backend's description with the versions that matter: 'onnxruntime 1.23.2 (CPUExecutionProvider)',
    'tensorrt 10.3.0 (model.engine, batch 1)'."""
    description = getattr(backend, "description", getattr(backend, "name", "backend"))
    if getattr(backend, "name", "") == "onnxruntime" and description.startswith("onnxruntime ("):
        try:
            import onnxruntime  # noqa: PLC0415

            description = description.replace("onnxruntime", f"onnxruntime {onnxruntime.__version__}", 1)
        except ImportError:
            pass
    return description


def run(backend, reference: Reference, precision: str, model: str = "model") -> Result:
    """Run ``backend`` (infer(input) -> (depth, cluster, firmness); its ``info`` the model's contract) on the
    reference input and compare."""
    if precision not in TOLERANCES:
        raise ValueError(f"precision {precision!r} is not one of {tuple(TOLERANCES)}")
    depth, cluster, _ = backend.infer(reference.input(backend.info.pixel_format))
    figures = compare(reference, depth, cluster, backend.info.num_clusters)
    return Result(figures, TOLERANCES[precision], precision, backend_label(backend),
                  Path(model).name if model else "model")


def backend_metadata(backend) -> dict:
    """The metadata the backend's model carries (ONNX metadata_props, or the engine fingerprint's model_metadata)."""
    metadata = getattr(backend, "metadata", None)
    if metadata is not None:
        return dict(metadata)
    session = getattr(backend, "session", None)
    return dict(session.get_modelmeta().custom_metadata_map) if session is not None else {}


NO_REFERENCE = ("self-test: {model} carries no reference ({key}; exported before the self-test existed?): its output "
                "cannot be verified on this backend; re-export it with training/export.py, or add one to the fp32 "
                "file with python -m icm_depth_ros.inference.self_test {model} --write-reference")


def check_backend(backend, policy: str, logger, model: str = "model", precision: str | None = None) -> Result | None:
    """The self-test as the node and replay_eval run it, before the model serves anything.

    policy "off": nothing. A pass logs ``self-test passed: ...`` (info). A failure raises SelfTestFailed (its
    message the ``self-test failed: ...`` line) under "refuse", and logs that line as a warning under "warn".
    A model without a reference, or whose reference input cannot be rendered here, logs a warning that its
    output cannot be verified. A backend that raises a RuntimeError on the reference input (CUDA, TensorRT)
    gives a ModelLoadError naming it, whatever the policy. Returns the result (None when nothing was compared).
    """
    if policy not in POLICIES:
        raise ValueError(f"self_test {policy!r} is not one of {', '.join(POLICIES)}")
    if policy == "off":
        return None
    try:
        reference = read_reference(backend_metadata(backend), source=model)
    except ValueError as error:
        logger.warning(f"self-test: {error}; the output cannot be verified")
        return None
    if reference is None:
        logger.warning(NO_REFERENCE.format(model=model, key=META_SELF_TEST))
        return None
    try:
        result = run(backend, reference, backend_precision(backend, precision), model)
    except ValueError as error:  # the input does not render to its sha256, or outputs of another shape
        logger.warning(f"self-test: {error}; the output cannot be verified")
        return None
    except ModelLoadError:
        raise
    except RuntimeError as error:  # the backend failed on the reference input (a CUDA or TensorRT error)
        raise ModelLoadError(f"self-test: {backend_label(backend)} failed on the reference input: "
                             f"{type(error).__name__}: {error}") from error
    if result.passed:
        logger.info(result.line())
    elif policy == "refuse":
        raise SelfTestFailed(result.line())
    else:
        logger.warning(result.line() + " (self_test: warn, so the model runs anyway)")
    return result


# ---- the command -----------------------------------------------------------------------------------------


class _Printer:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)
        print(text)

    warning = info


def main(argv: list[str] | None = None) -> int:
    from icm_depth_ros.inference.selection import BACKENDS, PRECISIONS, open_backend  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m icm_depth_ros.inference.self_test",
        description="Run a model's backend on its self-test reference input and compare with the fp32 reference "
                    "(exit 0 passed, 1 failed, 2 no reference in the model or bad input).")
    parser.add_argument("model", help="an exported .onnx file (or variant), or a TensorRT engine with its fingerprint")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="as the node's parameter (default onnxruntime)")
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="TensorRT: the engine's precision (default: its fingerprint's); ONNX Runtime runs the file's")
    parser.add_argument("--onnx-path", default="", help="the ONNX file beside an engine (as the node's onnx_path)")
    parser.add_argument("--provider", default="cpu", choices=("auto", "cpu", "cuda"),
                        help="ONNX Runtime execution provider (default cpu)")
    parser.add_argument("--write-reference", action="store_true",
                        help="instead: compute the reference with ONNX Runtime and write it into this fp32 .onnx "
                             "file's metadata (only for a file you trust: exported before the self-test existed)")
    parser.add_argument("--out", default="", help="with --write-reference: write the file with its reference here")
    args = parser.parse_args(argv)
    model = Path(args.model)
    if not model.is_file():
        print(f"self_test: error: {model}: no such file", file=sys.stderr)
        return 2
    if args.write_reference:
        return _write_command(args, model)
    if args.out:
        print("self_test: error: --out applies to --write-reference only", file=sys.stderr)
        return 2
    precision = args.precision
    if precision is None and args.backend != "onnxruntime":
        precision = _fingerprint_precision(model) or "fp16"
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        backend = open_backend(args.backend, str(model), precision=precision or "fp16", onnx_path=args.onnx_path,
                               onnxruntime_provider=args.provider, logger=logging.getLogger("self_test"))
    except ModelLoadError as error:
        print(f"self_test: error: {error}", file=sys.stderr)
        return 2
    try:
        reference = read_reference(backend_metadata(backend), source=str(model))
    except ValueError as error:
        print(f"self_test: error: {error}", file=sys.stderr)
        return 2
    if reference is None:
        print(f"self_test: {model} carries no reference ({META_SELF_TEST}): nothing to compare; re-export it, or "
              "add one with --write-reference", file=sys.stderr)
        return 2
    try:
        result = run(backend, reference, backend_precision(backend, precision), str(model))
    except ValueError as error:
        print(f"self_test: error: {error}", file=sys.stderr)
        return 2
    print(result.line())
    return 0 if result.passed else 1


def _write_command(args, model: Path) -> int:
    if args.backend != "onnxruntime" or args.precision or args.onnx_path or args.provider != "cpu":
        print("self_test: error: --write-reference computes with ONNX Runtime on the CPU; --backend, --precision, "
              "--onnx-path and --provider would be ignored", file=sys.stderr)
        return 2
    try:
        reference = write_reference(model, args.out or None)
    except (ValueError, ModelLoadError) as error:
        print(f"self_test: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote the self-test reference into {args.out or model} ({len(reference.to_json())} bytes of metadata; "
          f"{reference.computed_with})")
    return 0


def _fingerprint_precision(model: Path) -> str | None:
    from icm_depth_ros.inference import fingerprint  # noqa: PLC0415

    if not fingerprint.is_engine_path(model):
        return None
    try:
        return fingerprint.read_fingerprint(model).get("precision")
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
