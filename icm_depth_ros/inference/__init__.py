"""Running an exported ICM model: the contract, the backends and TensorRT engines.

    contract.py             graph I/O per pixel format, ONNX metadata keys, ModelInfo, ModelLoadError, InferenceError
    fingerprint.py          engine files and the fingerprint JSON beside each engine
    onnx_precision.py       the precision and identity an ONNX file carries, variant names, symmetric Q/DQ
    graph_upgrade.py        an export of the older float32 pixel format -> the same model taking uint8 pixels
    onnxruntime_backend.py  ONNX Runtime (CPU or CUDA provider)
    engine_builder.py       ONNX -> TensorRT engine + fingerprint (export and the node's rebuild)
    tensorrt_backend.py     fingerprint check, rebuild decision, engine load and inference
    selection.py            open_backend: a backend by name ("auto", "onnxruntime", "tensorrt")
    self_test.py            the reference in a model's metadata, the comparison per precision, the command

Imports run up this list: a module imports only modules above it (test/icm_depth_ros/test_layout.py
checks). No other package of icm_depth_ros, no PyTorch, no ROS.
"""
from icm_depth_ros.inference.contract import InferenceError, ModelLoadError
from icm_depth_ros.inference.selection import BACKENDS, ONNXRUNTIME_PROVIDERS, PRECISIONS, open_backend

__all__ = ["BACKENDS", "ONNXRUNTIME_PROVIDERS", "PRECISIONS", "InferenceError", "ModelLoadError", "open_backend"]
