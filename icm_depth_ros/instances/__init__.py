"""Per-instance depth: which pixels form each object, its numbers, and the messages that carry them.

    image_loop.h          ICM_IMAGE_LOOP: image loops also compiled for AVX2 (the kernels here and in processing/)
    _instance_kernel.cpp  the statistics' compiled kernel (C++17, CPython API; built by setup.py / colcon)
    statistics.py         regions (network clusters or a label image) -> Instance records; NumPy where unbuilt
    kinematics.py         range / range rate / time to contact filters and their fusion, vectorised over tracks
    tracking.py           each frame's Instance records -> tracks with stable ids and kinematics (TRACK_DTYPE)
    messages.py           Instance records -> sensor_msgs/PointCloud2 and visualization_msgs/MarkerArray, and back
    detections.py         tracked Instance records -> vision_msgs/Detection3DArray (optional: where vision_msgs imports)

Imports run up this list. No other package of icm_depth_ros is imported, and statistics.py, kinematics.py and
tracking.py import no ROS (only messages.py and detections.py know the message packages;
test/icm_depth_ros/test_layout.py checks).
"""
