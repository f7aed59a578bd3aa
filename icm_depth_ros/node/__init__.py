"""The ROS 2 shell of depth_node (the lifecycle node itself is ../depth_node.py): everything that knows rclpy.

    signal_stop.py       SIGINT / SIGTERM recorded instead of raised; spinning until one came
    local_graph.py       a private ROS graph on this machine (environment, process stop) for demo, benches, tests
    frame_flow.py        rate / latency statistics and a per-problem log throttle (no ROS)
    frame_scheduler.py   RoundRobinFrames: one latest-frame slot per camera, served in turn (no ROS)
    transport.py         the Fast DDS profile the node applies to itself; input QoS that follows the publishers
    node_parameters.py   the one parameter table: names, defaults, allowed values, validation (no ROS)
    ros_parameters.py    declaring the parameters, the params file's names, run-time sets
    input_checks.py      validation of image, image/compressed, camera_info and label messages (no rclpy)
    camera_channel.py    one camera: subscriptions, publishers, frame hand-over, statistics, its diagnostics
    inference_worker.py  the processing threads: frames in turn -> depth (published) -> instances (published)

Imports run up this list: a module imports only modules above it. From the rest of icm_depth_ros: processing/,
instances/ and inference/, never replay/ or the entry modules (test/icm_depth_ros/test_layout.py checks).
"""
