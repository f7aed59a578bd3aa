"""An export of the older pixel format (rgb_float32_nchw_0_1) -> the same model taking the camera's pixels.

Files exported before issue 21 take float32 [B, 3, H, W] in [0, 1] and return the full membership
[B, N, H/4, W/4]; the node then converts every frame and reduces the membership on the CPU. This rewrites
such a file, with ``onnx`` only (no PyTorch, no checkpoint), into the contract's ``rgb_uint8_nhwc`` form
(contract.py): in front of the unchanged network

    image uint8 [B, H, W, 3] -> Cast(float32) -> Mul(float32(1/255)) -> Transpose(0, 3, 1, 2)

which is the node's former host conversion, operation for operation (the same float32 products), and
behind it ArgMax and ReduceMax over the clusters, giving ``cluster`` (int32) and ``firmness``. Depth,
clusters and firmness are therefore what the node computed before, bit for bit on the same backend. The
weights, the metadata (the self-test reference included) and the opset stay; the pixel format changes.

    python -m icm_depth_ros.inference.graph_upgrade OLD.onnx --out NEW.onnx

fp16 / INT8 variants are refused: their identity is the fp32 file's sha256, which the rewrite changes;
upgrade the fp32 file and write the variants from it again (training/export.py, docs/export.md).
Needs ``onnx`` (requirements-node.txt has it). Exit status 0 written, 2 refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from icm_depth_ros.inference import contract
from icm_depth_ros.inference.onnx_precision import load_graph

_FLOAT_INPUT = "image_float_nchw"  # the network's input inside the rewritten graph
_MEMBERSHIP = "membership_internal"


def upgrade_graph(model, source: str = "model"):
    """An rgb_float32_nchw_0_1 ModelProto -> a new rgb_uint8_nhwc ModelProto (``model`` is not changed).
    ValueError naming ``source`` when the graph is not such an export."""
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    metadata = {prop.key: prop.value for prop in model.metadata_props}
    info = contract.ModelInfo.from_metadata(metadata, source)
    if info.pixel_format != contract.PIXEL_FORMAT_FLOAT32:
        raise ValueError(f"{source}: pixel format is already {info.pixel_format!r}; nothing to upgrade")
    if metadata.get(contract.META_PRECISION, "fp32") != "fp32":
        raise ValueError(f"{source} is the {metadata[contract.META_PRECISION]} variant of an export; upgrade the fp32 "
                         "file and write the variants from it again (docs/export.md)")
    graph = model.graph
    inputs = {value.name: value for value in graph.input}
    outputs = {value.name: value for value in graph.output}
    if contract.INPUT_NAME not in inputs or set(contract.OUTPUTS[info.pixel_format]) - set(outputs):
        raise ValueError(f"{source}: inputs {sorted(inputs)}, outputs {sorted(outputs)}; not the contract's")
    batch = inputs[contract.INPUT_NAME].type.tensor_type.shape.dim[0]
    batch = batch.dim_param if batch.dim_param else batch.dim_value
    cells = [info.input_height // info.membership_stride, info.input_width // info.membership_stride]
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)

    upgraded = onnx.ModelProto()
    upgraded.CopyFrom(model)
    graph = upgraded.graph
    for node in graph.node:  # the network now reads the converted input and writes an internal membership
        node.input[:] = [_FLOAT_INPUT if name == contract.INPUT_NAME else name for name in node.input]
        node.output[:] = [_MEMBERSHIP if name == contract.MEMBERSHIP_OUTPUT else name for name in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(contract.PIXEL_SCALE, np.float32), "pixel_scale"))
    front = [helper.make_node("Cast", [contract.INPUT_NAME], ["image_float_nhwc_255"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["image_float_nhwc_255", "pixel_scale"], ["image_float_nhwc"]),
             helper.make_node("Transpose", ["image_float_nhwc"], [_FLOAT_INPUT], perm=[0, 3, 1, 2])]
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "cluster_axis"))
        reduce_max = helper.make_node("ReduceMax", [_MEMBERSHIP, "cluster_axis"], [contract.FIRMNESS_OUTPUT], keepdims=0)
    else:
        reduce_max = helper.make_node("ReduceMax", [_MEMBERSHIP], [contract.FIRMNESS_OUTPUT], axes=[1], keepdims=0)
    back = [helper.make_node("ArgMax", [_MEMBERSHIP], ["cluster_int64"], axis=1, keepdims=0),
            helper.make_node("Cast", ["cluster_int64"], [contract.CLUSTER_OUTPUT], to=TensorProto.INT32),
            reduce_max]
    nodes = front + list(graph.node) + back
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(contract.INPUT_NAME, TensorProto.UINT8,
                                                      [batch, info.input_height, info.input_width, 3])]
                       + [value for name, value in inputs.items() if name != contract.INPUT_NAME])
    depth = outputs[contract.DEPTH_OUTPUT]
    del graph.output[:]
    graph.output.extend([depth,
                         helper.make_tensor_value_info(contract.CLUSTER_OUTPUT, TensorProto.INT32, [batch, *cells]),
                         helper.make_tensor_value_info(contract.FIRMNESS_OUTPUT, TensorProto.FLOAT, [batch, *cells])])
    for prop in upgraded.metadata_props:
        if prop.key == contract.META_PIXEL_FORMAT:
            prop.value = contract.PIXEL_FORMAT_UINT8
    onnx.checker.check_model(upgraded)
    return upgraded


def upgrade_file(source: str | Path, target: str | Path) -> Path:
    """Read ``source``, write its rgb_uint8_nhwc form to ``target`` (not over ``source``); ValueError naming the file."""
    import onnx  # noqa: PLC0415

    source, target = Path(source), Path(target)
    if target.resolve() == source.resolve():
        raise ValueError(f"--out {target} is the input file: write the upgraded model beside it")
    upgraded = upgrade_graph(load_graph(source), str(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(upgraded, str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an ONNX export in the rgb_float32_nchw_0_1 pixel format")
    parser.add_argument("--out", type=Path, required=True, help="where to write the rgb_uint8_nhwc model")
    args = parser.parse_args(argv)
    try:
        path = upgrade_file(args.model, args.out)
    except ValueError as error:
        print(f"graph_upgrade: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {args.model} taking uint8 [B, H, W, 3] pixels, returning cluster and firmness")
    return 0


if __name__ == "__main__":
    sys.exit(main())
