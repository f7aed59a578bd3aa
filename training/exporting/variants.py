"""Precision variants of an exported fp32 graph: fp16 weights/compute, and INT8 with symmetric Q/DQ nodes.

TensorRT builds strongly typed engines, whose precision is the graph's, so these files ARE the fp16
and int8 engines' sources (icm_depth_ros/inference/onnx_precision.py names them model.fp16.onnx and
model.int8.onnx beside model.onnx). The INT8 file is also what ONNX Runtime runs on the CPU: one
quantized artifact for both backends. Both keep the contract's I/O exactly (``image`` uint8 pixels in,
``depth``/``firmness`` float32 and ``cluster`` int32 out; or, for files of the older pixel format,
``image`` float32 in and ``depth``/``membership`` float32 out) and copy the metadata, adding ``icm.precision`` and
``icm.fp32_onnx_sha256`` (the export they come from); their cost in accuracy is measured by
bench/precision_variants.py (demo and Swin-L models) and recorded in docs/export.md.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from icm_depth_ros.inference import contract
from icm_depth_ros.inference.fingerprint import file_sha256

# Kept in float32 inside the fp16 graph, as torch.autocast does: sums of squares and exponentials
# overflow float16 (max 65504) and normalisations lose their statistics.
KEEP_FLOAT32_OPS = frozenset(
    {
        "Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
        "BatchNormalization", "ReduceSum", "ReduceMean", "ReduceProd", "ReduceL2", "ReduceLogSumExp",
        "ReduceSumSquare", "Pow", "Exp", "Log", "CumSum",
    }
)
# INT8: the layers with weights, which carry nearly all of the arithmetic (Conv in CNN encoders,
# MatMul/Gemm in Swin's attention projections and MLPs), and the residual Adds, whose Q/DQ lets
# TensorRT fuse the Add into the INT8 layer before it instead of adding reformat layers (TensorRT's
# developer guide, "Q/DQ Layer-Placement Recommendations"). MatMuls between two activations (the
# attention products Q.K^T and A.V, cluster x pixel in the ICM heads) stay in float: 8-bit logits
# change the soft memberships, and they are a small share of the work.
DEFAULT_INT8_OPS = ("Conv", "MatMul", "Gemm", "Add")
WEIGHTED_OPS = frozenset({"MatMul", "Gemm"})


def convert_to_float16(model: onnx.ModelProto, keep_float32_ops: Iterable[str] = KEEP_FLOAT32_OPS) -> onnx.ModelProto:
    """float32 graph -> float16 graph whose inputs and outputs stay float32, by ONNX Runtime's float16 tool.

    ``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)`` with its default
    block list (ops without float16 kernels or with float32-only inputs, e.g. Resize) plus
    ``keep_float32_ops``: those run in float32 with Casts around them. Weights are stored in float16,
    clamped to the float16 range. Why this tool and not onnxconverter-common's or the project's former
    hand-written converter: docs/export.md, "fp16 converter" (bench/fp16_converters.py).
    """
    from onnxruntime.transformers import float16  # noqa: PLC0415
    from onnxruntime.transformers.onnx_model import OnnxModel  # noqa: PLC0415

    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_float32_ops))
    converted = onnx.ModelProto()
    converted.CopyFrom(model)  # the tool edits the graph it is given
    converted = float16.convert_float_to_float16(converted, keep_io_types=True, op_block_list=block)
    OnnxModel(converted).topological_sort()  # the tool appends its input Casts last; ONNX and TensorRT want order
    source_io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    changed = [v.name for v in [*converted.graph.input, *converted.graph.output]
               if v.type.tensor_type.elem_type != source_io.get(v.name)]
    if changed:
        raise ValueError(f"float16 conversion changed the type of graph inputs/outputs {changed}; they must stay as exported")
    onnx.checker.check_model(converted)
    return converted


def write_float16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """fp32 ONNX file -> fp16 ONNX file (I/O float32, metadata kept, precision and source recorded)."""
    model = onnx.load(str(fp32_path))
    converted = convert_to_float16(model)
    _set_variant_metadata(converted, model, "fp16", fp32_path)
    converted.doc_string = (model.doc_string + " [float16 variant]").strip()
    onnx.save(converted, str(out_path))
    return Path(out_path)


def _set_variant_metadata(variant: onnx.ModelProto, source: onnx.ModelProto, precision: str, fp32_path) -> None:
    metadata = {p.key: p.value for p in source.metadata_props}
    metadata[contract.META_PRECISION] = precision
    metadata[contract.META_FP32_ONNX_SHA256] = file_sha256(fp32_path)
    del variant.metadata_props[:]
    helper.set_model_props(variant, metadata)


class ImageCalibrationReader:
    """onnxruntime.quantization CalibrationDataReader over float32 [3, H, W] images in [0, 1] (uint8 / 255),
    fed as the graph of ``pixel_format`` takes them: the pixels uint8 [1, H, W, 3] they came from, or the
    float images themselves for the older rgb_float32_nchw_0_1 form."""

    def __init__(self, images: Iterable[np.ndarray], pixel_format: str = contract.PIXEL_FORMAT_UINT8):
        self._images: Iterator[np.ndarray] = iter(images)
        self._pixels = pixel_format == contract.PIXEL_FORMAT_UINT8

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        if image is None:
            return None
        image = np.ascontiguousarray(image[None], dtype=np.float32)  # [1, 3, H, W]
        if self._pixels:
            image = contract.pixels_from_unit_float(image)
        return {contract.INPUT_NAME: image}


def int8_nodes(model: onnx.ModelProto, op_types: Iterable[str] = DEFAULT_INT8_OPS) -> list[str]:
    """Names of the nodes ``write_int8`` quantizes: every Conv; MatMul/Gemm with a constant weight
    (input B); Adds of two activations (residual Adds, not bias Adds). Only ops in ``op_types``."""
    wanted = frozenset(op_types)
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    chosen = []
    for node in model.graph.node:
        if node.op_type not in wanted:
            continue
        if node.op_type in WEIGHTED_OPS and node.input[1] not in constants:
            continue  # activation x activation: the attention products
        if node.op_type == "Add" and any(name in constants for name in node.input):
            continue  # a bias or a constant offset
        if not node.name:
            raise ValueError(f"an unnamed {node.op_type} node cannot be chosen for quantization")
        chosen.append(node.name)
    return chosen


def write_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_images: Iterable[np.ndarray],
    op_types: Iterable[str] = DEFAULT_INT8_OPS,
    activations: str = "int8",
) -> Path:
    """Static INT8 quantisation with ONNX Runtime's tools into the form TensorRT's explicit quantization takes.

    Quantizes the nodes ``int8_nodes`` picks from ``op_types`` (Conv, weight MatMul/Gemm, residual Add).
    Symmetric everywhere (zero points int8 0): per-channel int8 weight scales (one per output channel:
    axis 0 of a Conv weight, the N axis of a MatMul/Gemm weight) and per-tensor int8 activation scales
    from the symmetric max |x| over ``calibration_images`` (float32 [3, H, W] in [0, 1], dataset frames
    or synthetic scenes).
    ``activations="uint8"`` writes ONNX Runtime's CPU default instead (uint8 activations with a zero
    point, int32 biases): faster on CPUs without VNNI, but TensorRT rejects it (kept for that comparison
    in bench/export_variants.py).
    """
    if activations not in ("int8", "uint8"):
        raise ValueError(f"activations must be 'int8' (TensorRT and ONNX Runtime) or 'uint8' (ONNX Runtime only), got {activations!r}")
    symmetric = activations == "int8"
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static  # noqa: PLC0415
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    source = onnx.load(str(fp32_path), load_external_data=False)
    pixel_format = {prop.key: prop.value for prop in source.metadata_props}.get(contract.META_PIXEL_FORMAT,
                                                                                contract.PIXEL_FORMAT_FLOAT32)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX's shape inference suffices (height and width are static); ONNX Runtime's symbolic one
        # stops with "Incomplete symbolic shape inference" on the Swin encoders' graphs.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        taken = {node.name for node in graph.graph.node}
        for index, node in enumerate(graph.graph.node):  # ONNX Runtime picks nodes by name
            if not node.name:
                name = f"{node.op_type}_{index}"
                while name in taken:
                    name += "_"
                node.name = name
                taken.add(name)
        onnx.save(graph, str(prepared))
        nodes = int8_nodes(graph, op_types)
        quantize_static(
            str(prepared),
            str(out_path),
            ImageCalibrationReader(calibration_images, pixel_format),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            nodes_to_quantize=nodes,
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # Biases stay float32: ONNX Runtime would quantize them to int32, which TensorRT does not take.
            extra_options=(
                {"ActivationSymmetric": True, "WeightSymmetric": True, "CalibTensorRangeSymmetric": True, "QuantizeBias": False}
                if symmetric else {"CalibTensorRangeSymmetric": False}
            ),
        )
    quantized = onnx.load(str(out_path))
    _set_variant_metadata(quantized, source, "int8", fp32_path)
    kind = "INT8 symmetric Q/DQ variant" if symmetric else "ONNX Runtime uint8-activation Q/DQ variant, CPU only"
    quantized.doc_string = (source.doc_string + f" [{kind}]").strip()
    onnx.save(quantized, str(out_path))
    return Path(out_path)
