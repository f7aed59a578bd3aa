"""Precision variants of an exported fp32 graph: fp16 weights/compute, and INT8 with symmetric Q/DQ nodes.

TensorRT builds strongly typed engines, whose precision is the graph's, so these files ARE the fp16
and int8 engines' sources (icm_depth_ros/inference/onnx_precision.py names them model.fp16.onnx and
model.int8.onnx beside model.onnx). The INT8 file is also what ONNX Runtime runs on the CPU: one
quantized artifact for both backends. Both keep the contract's I/O exactly (``image`` float32 in,
``depth``/``membership`` float32 out) and copy the metadata, adding ``icm.precision`` and
``icm.fp32_onnx_sha256`` (the export they come from); their cost in accuracy is measured by
bench/export_variants.py and recorded in docs/export.md.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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
# INT8: quantise the convolutions (the bulk of the time). MatMuls are attention between two
# activations (cluster x pixel), where 8-bit logits visibly change the soft memberships.
DEFAULT_INT8_OPS = ("Conv",)
FLOAT16_MAX = float(np.finfo(np.float16).max)


def convert_to_float16(model: onnx.ModelProto, keep_float32_ops: Iterable[str] = KEEP_FLOAT32_OPS) -> onnx.ModelProto:
    """float32 graph -> float16 graph whose inputs and outputs stay float32 (Casts at the edges).

    Each op's inputs and outputs that share its float type parameter (per the ONNX schema) switch to
    float16; inputs the schema fixes to float32 (Resize ``scales``) stay so. Float32 constants and
    initializers gain a float16 copy where one is consumed in float16. Ops in ``keep_float32_ops``
    (and custom-domain ops or ops with subgraphs) run in float32, with Casts around them.
    """
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    _constants_to_initializers(converted.graph)
    converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    graph = converted.graph
    opset = next(o.version for o in converted.opset_import if o.domain in ("", "ai.onnx"))
    keep = frozenset(keep_float32_ops)

    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    initializers = {i.name: i for i in graph.initializer}
    types.update({name: i.data_type for name, i in initializers.items()})
    current = dict(types)  # element type of each tensor after conversion so far

    # Graph outputs are produced under an internal name and Cast back to float32 at the end.
    outputs = [o.name for o in graph.output]
    internal = {name: f"{name}__float16_graph" for name in outputs}
    for node in graph.node:
        node.input[:] = [internal.get(name, name) for name in node.input]
        node.output[:] = [internal.get(name, name) for name in node.output]
    for name in outputs:
        types[internal[name]] = current[internal[name]] = types[name]

    new_nodes: list[onnx.NodeProto] = []
    new_initializers: list[onnx.TensorProto] = []
    casts: dict[tuple[str, int], str] = {}

    def as_type(name: str, want: int) -> str:
        have = current.get(name)
        if not name or have == want or have not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            return name
        key = (name, want)
        if key not in casts:
            cast_name = f"{name}__as_{'float16' if want == TensorProto.FLOAT16 else 'float32'}"
            if name in initializers:  # convert the stored values instead of casting at run time
                values = numpy_helper.to_array(initializers[name])
                dtype = np.float16 if want == TensorProto.FLOAT16 else np.float32
                values = np.clip(values, -FLOAT16_MAX, FLOAT16_MAX) if dtype == np.float16 else values
                new_initializers.append(numpy_helper.from_array(values.astype(dtype), cast_name))
            else:
                new_nodes.append(helper.make_node("Cast", [name], [cast_name], to=want, name=cast_name))
            current[cast_name] = want
            casts[key] = cast_name
        return casts[key]

    for node in graph.node:
        schema = _schema(node, opset)
        to_float16 = (
            schema is not None
            and node.op_type not in keep
            and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
        )
        float_params = _float_type_params(node, schema, types) if schema is not None else set()
        if node.op_type == "Cast":  # accepts any input type; only its target changes
            target = next(a for a in node.attribute if a.name == "to")
            if to_float16 and target.i == TensorProto.FLOAT:
                target.i = TensorProto.FLOAT16
            current[node.output[0]] = target.i
            new_nodes.append(node)
            continue
        if node.op_type == "ConstantOfShape":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if to_float16 and value is not None and value.t.data_type == TensorProto.FLOAT:
                value.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(value.t).astype(np.float16), value.t.name))
                current[node.output[0]] = TensorProto.FLOAT16
            new_nodes.append(node)
            continue
        for index, name in enumerate(node.input):
            param = _formal(schema.inputs, index).type_str if schema is not None else None
            if param in float_params:
                node.input[index] = as_type(name, TensorProto.FLOAT16 if to_float16 else TensorProto.FLOAT)
            elif types.get(name) == TensorProto.FLOAT:
                node.input[index] = as_type(name, TensorProto.FLOAT)
        for index, name in enumerate(node.output):
            param = _formal(schema.outputs, index).type_str if schema is not None else None
            current[name] = TensorProto.FLOAT16 if (to_float16 and param in float_params) else types.get(name)
        new_nodes.append(node)

    for name in outputs:
        source = internal[name]
        if current.get(source) == TensorProto.FLOAT16 and types[name] == TensorProto.FLOAT:
            new_nodes.append(helper.make_node("Cast", [source], [name], to=TensorProto.FLOAT, name=f"{name}__to_float32"))
        else:
            new_nodes.append(helper.make_node("Identity", [source], [name], name=f"{name}__identity"))

    used = {name for node in new_nodes for name in node.input}
    kept = [i for i in graph.initializer if i.name in used] + [i for i in new_initializers if i.name in used]
    del graph.node[:], graph.initializer[:], graph.value_info[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(kept)
    converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    onnx.checker.check_model(converted)
    return converted


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Constant nodes holding a float32 tensor become initializers, so they convert like weights."""
    kept = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.t.data_type == TensorProto.FLOAT and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _schema(node: onnx.NodeProto, opset: int):
    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opset)
    except onnx.defs.SchemaError:
        return None


def _formal(parameters, index: int):
    return parameters[min(index, len(parameters) - 1)]  # a variadic last parameter repeats


def _float_type_params(node: onnx.NodeProto, schema, types: dict[str, int]) -> set[str]:
    """Type parameters (e.g. "T") that carry float32 in this node and also allow float16."""
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    params = set()
    for names, formals in ((node.input, schema.inputs), (node.output, schema.outputs)):
        for index, name in enumerate(names):
            param = _formal(formals, index).type_str if formals else None
            if name and types.get(name) == TensorProto.FLOAT and "tensor(float16)" in allowed.get(param, ()):
                params.add(param)
    return params


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
    """onnxruntime.quantization CalibrationDataReader over float32 [3, H, W] images in [0, 1]."""

    def __init__(self, images: Iterable[np.ndarray]):
        self._images: Iterator[np.ndarray] = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        if image is None:
            return None
        return {contract.INPUT_NAME: np.ascontiguousarray(image[None], dtype=np.float32)}  # [1, 3, H, W]


def write_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_images: Iterable[np.ndarray],
    op_types: Iterable[str] = DEFAULT_INT8_OPS,
    activations: str = "int8",
) -> Path:
    """Static INT8 quantisation with ONNX Runtime's tools into the form TensorRT's explicit quantization takes.

    Symmetric everywhere (zero points int8 0): per-channel int8 weight scales (output channels, axis 0
    of a Conv weight) and per-tensor int8 activation scales from the symmetric max |x| over
    ``calibration_images`` (float32 [3, H, W] in [0, 1], dataset frames or synthetic scenes).
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
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        quantize_static(
            str(prepared),
            str(out_path),
            ImageCalibrationReader(calibration_images),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
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
