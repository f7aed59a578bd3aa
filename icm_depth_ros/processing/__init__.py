"""One frame of depth_node, free of ROS: camera pixels in, metric depth and per-instance depth out.

    image_conversion.py  sensor_msgs/Image fields <-> NumPy (any object with those fields; no rclpy)
    _resize_kernel.cpp   area shrink of a uint8 image window, bit for bit cv2's (C++17, CPython API; setup.py)
    geometry.py          resize / crop / letterbox to the model input, depth back to the image, K and P
    metrics.py           the depth metrics (abs_rel, d1, ...): the one definition, shared with training/
    pipeline.py          DepthPipeline: pre-processing, inference, post-processing, instances

Imports run up this list: a module imports only modules above it. From the rest of icm_depth_ros:
inference/ and instances/ only. No rclpy, no message packages, no PyTorch: the node and replay evaluation
drive the same code, and tests drive it without a ROS graph (test/icm_depth_ros/test_layout.py checks).
"""
