"""PyTorch ICMDepthNet -> ONNX graph that follows icm_depth_ros/inference/contract.py.

The graph takes ``image``, the camera's uint8 RGB pixels [B, H, W, 3] (pixel format ``rgb_uint8_nhwc``:
conversion to float, scaling to [0, 1], the NCHW layout and the ImageNet normalisation are inside, so
TensorRT runs them on the GPU) and gives ``depth`` [B, 1, H, W] in metres, ``cluster`` int32 [B, H/4, W/4]
and ``firmness`` [B, H/4, W/4]: the arg-max and the maximum over the N clusters of the finest-scale
membership A1, reduced in the graph so that the device returns two small maps instead of N channels. Everything a runner needs (input size, pixel format, depth range, N, config name,
checkpoint sha256, package version) is written into the file's metadata_props, and so is the self-test
reference (``icm.self_test``: a rendered input and what this fp32 graph outputs for it in ONNX Runtime;
icm_depth_ros/inference/self_test.py), which the precision variants inherit.
"""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

import icm_depth_ros
from icm_depth_ros.inference import contract, self_test
from icm_depth_ros.inference.fingerprint import file_sha256
from training.checkpoint import read_checkpoint_file
from training.model import ICMDepthNet

DEFAULT_OPSET = 17  # LayerNormalization is native from 17; TensorRT 10 parses 17 everywhere
BATCH_DIM_NAME = "batch"


def load_model_from_checkpoint(path: str | Path) -> tuple[ICMDepthNet, dict]:
    """Build ICMDepthNet from a training checkpoint {"model": state_dict, "config": {"model": {...}, "name": ...}}.

    Returns (model in eval mode on the CPU, the checkpoint's config dict). Never downloads encoder
    weights: the checkpoint's state dict holds them.
    """
    path = Path(path)
    checkpoint = read_checkpoint_file(path)
    if "model" not in checkpoint or "config" not in checkpoint:
        raise ValueError(f"{path}: expected a dict with 'model' (state_dict) and 'config', got {sorted(checkpoint)}")
    config = checkpoint["config"]
    model_config = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model_config, dict):
        raise ValueError(f"{path}: config['model'] (the ICMDepthNet settings) is missing")
    accepted = set(inspect.signature(ICMDepthNet.__init__).parameters) - {"self", "pretrained_path"}
    kwargs = {key: value for key, value in model_config.items() if key in accepted}
    if "img_size" in kwargs:
        kwargs["img_size"] = tuple(kwargs["img_size"])
    model = ICMDepthNet(**kwargs, pretrained_path=None)
    # Checkpoints saved from DistributedDataParallel or torch.compile carry a key prefix.
    state = {_strip_prefix(key): value for key, value in checkpoint["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: state dict does not fit ICMDepthNet({kwargs}): {error}") from None
    return model.eval(), config


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


class ExportGraph(nn.Module):
    """The exported interface: pixels uint8 [B, H, W, 3] -> (depth [B, 1, H, W], cluster int32 [B, H/4, W/4],
    firmness [B, H/4, W/4]); contract.py, pixel format rgb_uint8_nhwc."""

    def __init__(self, net: ICMDepthNet):
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x * float32(1/255), as the node did on the host before (contract.PIXEL_SCALE): the same numbers
        image = pixels.permute(0, 3, 1, 2).to(torch.float32) * float(contract.PIXEL_SCALE)
        outputs = self.net(image)
        membership = outputs["attn"][-1]  # [B, N, H/4, W/4]
        return outputs["depth"], membership.argmax(dim=1).to(torch.int32), membership.amax(dim=1)


def model_info(
    model: ICMDepthNet, height: int, width: int, config_name: str, checkpoint_sha256: str, dynamic_batch: bool
) -> contract.ModelInfo:
    return contract.ModelInfo(
        input_height=int(height),
        input_width=int(width),
        pixel_format=contract.PIXEL_FORMAT,
        min_depth=float(model.min_depth),
        max_depth=float(model.max_depth),
        num_clusters=int(model.num_clusters),
        membership_stride=contract.MEMBERSHIP_STRIDE,
        config_name=config_name,
        checkpoint_sha256=checkpoint_sha256,
        package_version=icm_depth_ros.__version__,
        dynamic_batch=dynamic_batch,
    )


def export_onnx(
    model: ICMDepthNet,
    out_path: str | Path,
    height: int,
    width: int,
    *,
    config_name: str = "unknown",
    checkpoint_sha256: str = "none",
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
) -> contract.ModelInfo:
    """Export ``model`` for uint8 pixels [B, height, width, 3]; B = 1, or dynamic with ``dynamic_batch``.

    Writes one self-contained .onnx file (weights inside), embeds the ModelInfo metadata, checks the
    file with onnx.checker, adds the self-test reference (ONNX Runtime on the file just written) and returns
    the ModelInfo. The model's train/eval mode is left as found.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = model_info(model, height, width, config_name, checkpoint_sha256, dynamic_batch)
    was_training = model.training
    graph = ExportGraph(model).eval()  # export restores the wrapper's mode recursively: it must be eval
    names = (contract.INPUT_NAME, *info.outputs)
    dynamic_axes = {name: {0: BATCH_DIM_NAME} for name in names} if dynamic_batch else None
    dummy = torch.randint(0, 256, (1, height, width, 3), dtype=torch.uint8)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the model's input-size checks
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
            # TorchScript exporter: one small, plain-op graph; the dynamo exporter adds little here.
            torch.onnx.export(
                graph,
                (dummy,),
                str(out_path),
                input_names=[names[0]],
                output_names=list(names[1:]),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.train(was_training)

    proto = onnx.load(str(out_path))
    _fix_output_shapes(proto, info)
    proto.doc_string = f"ICM depth network ({config_name}); I/O and metadata: icm_depth_ros/inference/contract.py"
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, info.to_metadata())
    onnx.save(proto, str(out_path))
    onnx.checker.check_model(str(out_path), full_check=True)
    self_test.write_reference(out_path)  # what every runner compares its backend with (the fp32 graph's outputs)
    return info


def _fix_output_shapes(proto: onnx.ModelProto, info: contract.ModelInfo) -> None:
    """The tracer leaves the membership maps' h, w symbolic (they come from a Reshape): state them."""
    cells = [info.input_height // info.membership_stride, info.input_width // info.membership_stride]
    shapes = {
        contract.DEPTH_OUTPUT: [1, info.input_height, info.input_width],
        contract.CLUSTER_OUTPUT: cells,
        contract.FIRMNESS_OUTPUT: cells,
    }
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, size in zip(dims[1:], shapes[output.name]):
            dim.Clear()
            dim.dim_value = size


def read_model_info(onnx_path: str | Path) -> contract.ModelInfo:
    """Parse the contract metadata of an exported file (raises ValueError naming the file)."""
    proto = onnx.load(str(onnx_path), load_external_data=False)
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    return contract.ModelInfo.from_metadata(metadata, source=str(onnx_path))


def onnxruntime_session(onnx_path: str | Path, threads: int = 0):
    """A CPU ONNX Runtime session; ``threads`` = intra-op threads (0 = ONNX Runtime's default)."""
    import onnxruntime  # noqa: PLC0415 - only the runners need it

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: fp16/int8 graphs otherwise log every inserted cast
    return onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def run_onnxruntime(session, image: np.ndarray) -> dict[str, np.ndarray]:
    """Dataset images float32 [B, 3, H, W] in [0, 1] (or the pixels uint8 [B, H, W, 3]) -> the graph's outputs by
    name: {"depth", "cluster", "firmness"} (rgb_uint8_nhwc), or {"depth", "membership"} for files in the older
    rgb_float32_nchw_0_1 format, which take the float images themselves."""
    names = [output.name for output in session.get_outputs()]
    image = graph_input(image, takes_pixels=session.get_inputs()[0].type == "tensor(uint8)")
    return dict(zip(names, session.run(names, {contract.INPUT_NAME: image})))


def graph_input(image: np.ndarray, takes_pixels: bool) -> np.ndarray:
    """Dataset images float32 [B, 3, H, W] in [0, 1] (or the pixels uint8 [B, H, W, 3]) -> what a graph (or engine)
    takes: the pixels when ``takes_pixels`` (rgb_uint8_nhwc), else the float images (rgb_float32_nchw_0_1)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:  # the pixels; for a float graph, the product the older host conversion made
        return image if takes_pixels else contract.unit_float(image)
    if takes_pixels:
        return contract.pixels_from_unit_float(image)
    return np.ascontiguousarray(image, dtype=np.float32)


def parity(model: ICMDepthNet, session, image: np.ndarray) -> dict[str, float]:
    """ONNX Runtime against PyTorch on dataset images float32 [B, 3, H, W] (from uint8 pixels): the max relative
    depth error, the max absolute firmness error, and the share of cells whose cluster differs."""
    was_training = model.training
    pixels = contract.pixels_from_unit_float(image)
    with torch.no_grad():
        reference = ExportGraph(model).eval()(torch.from_numpy(pixels))
    model.train(was_training)
    outputs = run_onnxruntime(session, pixels)
    depth, cluster, firmness = (tensor.numpy() for tensor in reference)
    return {
        "max_rel_depth_error": float(np.max(np.abs(outputs["depth"] - depth) / depth)),
        "max_abs_firmness_error": float(np.max(np.abs(outputs["firmness"] - firmness))),
        "cluster_disagreement": float(np.mean(outputs["cluster"] != cluster)),
    }


def checkpoint_sha256(path: str | Path) -> str:
    return file_sha256(path)
