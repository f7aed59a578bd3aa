"""Where users' code imported the instance message helpers from; they live in instances/messages.py."""
from icm_depth_ros.instances.messages import (INSTANCE_DTYPE, cloud_to_array, instance_markers, instances_to_array,
                                             instances_to_cloud)

__all__ = ["INSTANCE_DTYPE", "cloud_to_array", "instance_markers", "instances_to_array", "instances_to_cloud"]
