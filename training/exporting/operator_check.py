"""Will TensorRT parse this ONNX graph? A CPU-only check, so an export TensorRT would reject fails here.

The operator table follows onnx-tensorrt's ``docs/operators.md`` for the TensorRT 10 series (the
parser bundled with TensorRT 10.x; 10.3 is the oldest release this project supports). TensorRT 11's
table was not compared op by op. For INT8 Q/DQ graphs it is also the gate of the int8 engine build:
zero points int8 0, constant scales (``onnx_precision.symmetric_quantization_errors``, which the engine
builder runs too). It errs on the side of rejecting: an op missing here may be
supported by a late 10.x release or by a plugin, but then the check says so by name and the graph
is checked on a GPU instead. The check does not replace building the engine; it catches the common
export mistakes early (an unsupported or custom op, float64 I/O, a dynamic height or width).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import TensorProto

from icm_depth_ros.inference import contract
from icm_depth_ros.inference.onnx_precision import symmetric_quantization_errors

# ONNX ops (default domain) the TensorRT 10 ONNX parser converts natively.
TENSORRT_10_OPS = frozenset(
    """
    Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
    BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv
    ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp
    Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
    GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HammingWindow
    HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool LRN LSTM
    MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
    OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
    RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
    ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape
    Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze
    Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

# Tensor element types TensorRT 10 has (DataType: FLOAT, HALF, BF16, INT8, INT32, INT64, BOOL, UINT8,
# FP8, INT4). DOUBLE weights are cast down to FLOAT by the parser (with clamping), so they only warn.
TENSORRT_10_TYPES = frozenset(
    {
        TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT8, TensorProto.INT32,
        TensorProto.INT64, TensorProto.BOOL, TensorProto.UINT8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4,
    }
)
CAST_DOWN_TYPES = frozenset({TensorProto.DOUBLE})
# TensorRT 10.0's parser documents opsets 9-20; later 10.x releases add 21-22.
MIN_OPSET, MAX_OPSET_ALL_10X = 9, 20
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class TensorRTReport:
    """errors: TensorRT 10 would reject the graph. warnings: it parses, but read them."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_tensorrt_compatibility(model: onnx.ModelProto | str | Path, *, check_contract: bool = True) -> TensorRTReport:
    """Check ops, element types, opset and shapes against TensorRT 10; with ``check_contract`` also the
    contract I/O (``image`` float32 [B, 3, H, W] -> ``depth``, ``membership``)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    report = TensorRTReport()
    _check_opset(model, report)
    local_functions = {(function.domain, function.name): function for function in model.functions}
    initializers = {initializer.name: initializer for initializer in model.graph.initializer}
    _check_nodes(model.graph.node, local_functions, initializers, report, where="graph")
    for function in model.functions:
        _check_nodes(function.node, local_functions, initializers, report, where=f"function {function.name}")
    # The gate for int8 engines: TensorRT's explicit quantization is symmetric (zero points int8 0), the
    # same check the engine builder runs (icm_depth_ros/inference/onnx_precision.py).
    report.errors.extend(symmetric_quantization_errors(model))
    _check_types(model.graph, report)
    _check_input_shapes(model.graph, report)
    if check_contract:
        _check_contract(model.graph, report)
    return report


def _check_opset(model: onnx.ModelProto, report: TensorRTReport) -> None:
    for opset in model.opset_import:
        if opset.domain not in DEFAULT_DOMAINS:
            continue
        if opset.version < MIN_OPSET:
            report.errors.append(f"opset {opset.version}: TensorRT 10 parses opset {MIN_OPSET} and newer")
        elif opset.version > MAX_OPSET_ALL_10X:
            report.warnings.append(
                f"opset {opset.version}: above {MAX_OPSET_ALL_10X}, needs a late TensorRT 10 release; export with --opset 17"
            )


def _check_nodes(nodes, local_functions: dict, initializers: dict, report: TensorRTReport, where: str) -> None:
    for node in nodes:
        report.op_counts[node.op_type] = report.op_counts.get(node.op_type, 0) + 1
        label = f"{where}: node {node.name or '<unnamed>'} ({node.op_type})"
        if (node.domain, node.op_type) in local_functions:
            pass  # the parser inlines local functions; their bodies are checked on their own
        elif node.domain not in DEFAULT_DOMAINS:
            report.errors.append(f"{label}: custom domain {node.domain!r} needs a TensorRT plugin")
        elif node.op_type not in TENSORRT_10_OPS:
            report.errors.append(f"{label}: op {node.op_type} is not supported by the TensorRT 10 ONNX parser")
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _check_nodes(attribute.g.node, local_functions, initializers, report, f"{label} subgraph {attribute.name}")
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    _check_nodes(graph.node, local_functions, initializers, report, f"{label} subgraph {attribute.name}")
            elif attribute.type == onnx.AttributeProto.TENSOR:
                _check_type(attribute.t.data_type, f"{label} attribute {attribute.name}", report, weights=True)
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to is not None:
                _check_type(to, f"{label} cast target", report, weights=True)


def _check_types(graph: onnx.GraphProto, report: TensorRTReport) -> None:
    for value in list(graph.input) + list(graph.output):
        elem_type = value.type.tensor_type.elem_type
        if not value.type.HasField("tensor_type"):
            report.errors.append(f"graph I/O {value.name}: not a tensor (sequences/maps are not supported)")
        elif elem_type not in TENSORRT_10_TYPES:
            report.errors.append(f"graph I/O {value.name}: type {_type_name(elem_type)} is not a TensorRT type")
    for initializer in graph.initializer:
        _check_type(initializer.data_type, f"initializer {initializer.name}", report, weights=True)
    for value in graph.value_info:
        if value.type.HasField("tensor_type"):
            _check_type(value.type.tensor_type.elem_type, f"tensor {value.name}", report, weights=False)


def _check_type(elem_type: int, label: str, report: TensorRTReport, weights: bool) -> None:
    if elem_type in TENSORRT_10_TYPES or elem_type == TensorProto.UNDEFINED:
        return
    if elem_type in CAST_DOWN_TYPES and weights:
        report.warnings.append(f"{label}: {_type_name(elem_type)} is cast down to FLOAT by TensorRT")
    else:
        report.errors.append(f"{label}: type {_type_name(elem_type)} is not a TensorRT type")


def _check_input_shapes(graph: onnx.GraphProto, report: TensorRTReport) -> None:
    """Only the batch (first) dimension may be dynamic: one optimisation profile over B, fixed H and W."""
    initializers = {initializer.name for initializer in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if not value.type.tensor_type.HasField("shape"):
            report.errors.append(f"input {value.name}: no static rank; TensorRT needs a known rank")
            continue
        for axis, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                report.errors.append(
                    f"input {value.name}: dimension {axis} is dynamic ({dim.dim_param or '?'}); only the batch may be"
                )


def _check_contract(graph: onnx.GraphProto, report: TensorRTReport) -> None:
    inputs = {value.name: value for value in graph.input}
    outputs = {value.name for value in graph.output}
    image = inputs.get(contract.INPUT_NAME)
    if image is None:
        report.errors.append(f"contract: no input named {contract.INPUT_NAME!r} (inputs: {sorted(inputs)})")
    else:
        tensor_type = image.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        pixels = tensor_type.elem_type == TensorProto.UINT8  # rgb_uint8_nhwc, else rgb_float32_nchw_0_1
        if pixels and (len(dims) != 4 or dims[3] != 3):
            report.errors.append(f"contract: input {contract.INPUT_NAME!r} must be uint8 [B, H, W, 3] (pixel format "
                                 f"{contract.PIXEL_FORMAT_UINT8}), got {dims}")
        elif not pixels and (tensor_type.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1] != 3):
            report.errors.append(
                f"contract: input {contract.INPUT_NAME!r} must be uint8 [B, H, W, 3] ({contract.PIXEL_FORMAT_UINT8}) "
                f"or float32 [B, 3, H, W] ({contract.PIXEL_FORMAT_FLOAT32}), got {_type_name(tensor_type.elem_type)} {dims}"
            )
        wanted = contract.OUTPUTS[contract.PIXEL_FORMAT_UINT8 if pixels else contract.PIXEL_FORMAT_FLOAT32]
        for name in wanted:
            if name not in outputs:
                report.errors.append(f"contract: no output named {name!r} (outputs: {sorted(outputs)})")


def _type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"
