"""icm_depth_ros: the ROS 2 side. Imports nothing from training/ and no PyTorch."""

__version__ = "0.1.0"
