"""What an exported ONNX file carries for TensorRT: its precision, its model identity, symmetric Q/DQ.

TensorRT 11 builds strongly typed networks only (10.x can): the engine's precision is the precision
of the ONNX graph it is built from. So one fp32 export has variants, each a file of its own
(training/exporting/variants.py writes them)::

    model.onnx        fp32                      ONNX Runtime, fp32 engines
    model.fp16.onnx   float16 inside, float32 I/O   fp16 engines
    model.int8.onnx   INT8 Q/DQ (symmetric)     int8 engines, and ONNX Runtime INT8 on the CPU

A variant's metadata names its precision (``icm.precision``) and the sha256 of the fp32 export it
was made from (``icm.fp32_onnx_sha256``): that sha256 is the model's identity, the one an engine's
fingerprint records, whichever variant it was built from. Needs ``onnx`` (imported when called).
"""
from __future__ import annotations

from pathlib import Path

from icm_depth_ros.inference import contract
from icm_depth_ros.inference.fingerprint import file_sha256

GRAPH_PRECISIONS = ("fp32", "fp16", "int8")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def variant_path(onnx_path: str | Path, precision: str) -> Path:
    """The file of ``precision`` beside an fp32 export: model.onnx -> model.fp16.onnx; fp32 -> itself."""
    if precision not in GRAPH_PRECISIONS:
        raise ValueError(f"precision must be one of {GRAPH_PRECISIONS}, got {precision!r}")
    onnx_path = Path(onnx_path)
    return onnx_path if precision == "fp32" else onnx_path.with_name(f"{onnx_path.stem}.{precision}.onnx")


def load_graph(onnx_path: str | Path):
    import onnx  # noqa: PLC0415 - a node without engine rebuilds never needs it

    if not Path(onnx_path).is_file():
        raise ValueError(f"ONNX file {str(onnx_path)!r} not found")
    try:
        return onnx.load(str(onnx_path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and onnx's own types
        raise ValueError(f"{onnx_path}: not a readable ONNX file ({error})") from None


def onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The ONNX file's metadata_props (the model contract: input size, depth range) as a dict."""
    return {prop.key: prop.value for prop in load_graph(onnx_path).metadata_props}


def graph_precision(model) -> str:
    """"int8" (Q/DQ nodes), "fp16" (float16 initializers or Casts to float16) or "fp32", from the graph."""
    from onnx import TensorProto  # noqa: PLC0415

    if any(node.op_type in QDQ_OPS for node in model.graph.node):
        return "int8"
    float16_cast = any(
        node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in node.attribute)
        for node in model.graph.node
    )
    if float16_cast or any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def file_precision(onnx_path: str | Path, model=None) -> str:
    """The precision the file carries; its metadata and its graph must agree (ValueError naming both)."""
    model = model if model is not None else load_graph(onnx_path)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    from_graph = graph_precision(model)
    declared = metadata.get(contract.META_PRECISION, "fp32")
    if declared != from_graph:
        raise ValueError(f"{onnx_path}: metadata {contract.META_PRECISION}={declared!r} but the graph is {from_graph}")
    return from_graph


def model_sha256(onnx_path: str | Path, model=None) -> str:
    """The model's identity: the sha256 of the fp32 export (a variant names it in its metadata)."""
    model = model if model is not None else load_graph(onnx_path)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return metadata.get(contract.META_FP32_ONNX_SHA256) or file_sha256(onnx_path)


def symmetric_quantization_errors(model) -> list[str]:
    """Why TensorRT's explicit quantization would reject the Q/DQ nodes (empty list: it accepts them).

    TensorRT quantizes symmetrically: every zero point a constant 0 of type INT8 (FP8/INT4 too), and
    scales constant and positive. ONNX Runtime's CPU default (uint8 activations with a zero point)
    fails here.
    """
    import numpy as np  # noqa: PLC0415
    from onnx import TensorProto, numpy_helper  # noqa: PLC0415

    constants = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None:
            constants[node.output[0]] = value
    errors = []
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        label = f"node {node.name or '<unnamed>'} ({node.op_type})"
        scale = constants.get(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            errors.append(f"{label}: scale {node.input[1] if len(node.input) > 1 else '<none>'} is not a constant")
        elif np.any(numpy_helper.to_array(scale) <= 0):
            errors.append(f"{label}: scale {node.input[1]} has values <= 0")
        if len(node.input) < 3 or not node.input[2]:
            if node.op_type == "QuantizeLinear":  # without a zero point ONNX quantizes to uint8
                errors.append(f"{label}: no zero point, so uint8 by the ONNX default; TensorRT needs an int8 zero point 0")
            elif node.input[0] in constants and constants[node.input[0]].data_type != TensorProto.INT8:
                errors.append(f"{label}: quantized weights {node.input[0]} are not int8")
            continue
        zero_point = constants.get(node.input[2])
        if zero_point is None:
            errors.append(f"{label}: zero point {node.input[2]} is computed at run time; TensorRT needs a constant 0")
        elif zero_point.data_type not in (TensorProto.INT8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4):
            name = TensorProto.DataType.Name(zero_point.data_type)
            errors.append(f"{label}: zero point type {name}; TensorRT quantizes to INT8/FP8/INT4 only")
        elif np.any(numpy_helper.to_array(zero_point) != 0):
            errors.append(f"{label}: zero point is not 0; TensorRT supports symmetric quantization only")
    return errors
