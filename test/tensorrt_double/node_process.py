"""depth_node in a process whose ``tensorrt`` and ``cuda.bindings.runtime`` are the bindings doubles.

    ICM_TENSORRT_DOUBLE='{"tensorrt": ..., "cuda_bindings": ..., "gpu": [...], "driver_cuda": ...,
                          "batch_log": path, "execute_s": 0.1}' python -m tensorrt_double.node_process --ros-args ...

Optional keys: "build_s" (an engine build takes that long), "cuda_failures" / "cuda_failures_after" (CUDA
calls failing, checked_cuda.py).

Started with setup_bindings.node_environment (the real bindings of one TensorRT version on PYTHONPATH), it
puts the doubles in place as scenario.py does, then runs the node's own ``main``: the ROS shell, the
scheduler, the inference worker, DepthPipeline and the TensorRT backend are the project's, only TensorRT
and CUDA are doubles. Every ``execute_async_v3`` appends its batch size to ``batch_log`` (a line each) and
takes ``execute_s`` seconds, standing in for the GPU's time, so that frames arriving meanwhile wait and the
next call batches them as on the vehicle.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    from tensorrt_double.scenario import install_doubles

    request = json.loads(os.environ["ICM_TENSORRT_DOUBLE"])
    _, _, state = install_doubles(request)
    log = open(request["batch_log"], "a", buffering=1)  # noqa: SIM115 - open for the process's life
    delay = float(request.get("execute_s", 0.0))

    def executed(batch: int) -> None:
        time.sleep(delay)
        log.write(f"{batch}\n")

    state["on_execute"] = executed
    from icm_depth_ros.depth_node import main as node_main

    return node_main()


if __name__ == "__main__":
    sys.exit(main())
