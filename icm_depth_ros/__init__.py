"""icm_depth_ros: the ROS 2 side. Imports nothing from training/ and no PyTorch.

    inference/      running an exported model: the contract, ONNX Runtime and TensorRT backends, engines
    instances/      per-instance depth: statistics (and their compiled kernel), PointCloud2 and markers
    processing/     one frame, free of ROS: image conversion, geometry, DepthPipeline, the depth metrics
    node/           the ROS 2 shell of depth_node: cameras, threads, parameters, transport, signals
    replay/         replay evaluation of recorded drives (offline through DepthPipeline, or live)
    depth_node.py   the lifecycle node and its entry point (``depth_node``, ``python -m icm_depth_ros.depth_node``)
    replay_eval.py  the replay evaluation's entry point (``replay_eval``, ``python -m icm_depth_ros.replay_eval``)
    replay_fleet.py the fleet replay's entry point (``replay_fleet``: many drives on Ray, baseline comparison, gate)
    instance_message.py  the name users' code imported ``cloud_to_array`` from: an alias of instances/messages.py

Imports between the packages run up this list: inference/ and instances/ import no other package of
icm_depth_ros; processing/ imports those two; node/ and replay/ import the three below them and not each
other; only the three entry modules import node/ or replay/ (test/icm_depth_ros/test_layout.py checks).
"""

__version__ = "0.1.0"
