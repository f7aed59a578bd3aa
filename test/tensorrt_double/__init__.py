"""Test doubles of TensorRT and cuda-python made from, and checked against, their real Python bindings.

setup_bindings.py   fetch the real wheels (pip, PyPI) and compile the stub libraries they link against
signatures.py       pybind11 docstring signatures: parameter names, types, return types
checked_tensorrt.py the ``tensorrt`` double
checked_cuda.py     the ``cuda.bindings.runtime`` double
scenario.py         runs the project's TensorRT code through both, one TensorRT version per process
node_process.py     depth_node (ROS, scheduler, worker, pipeline, backend) with the doubles in its process
"""
