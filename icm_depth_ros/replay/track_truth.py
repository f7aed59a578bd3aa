"""Per-instance ground truth over time: its layout, and its PointCloud2 form in a drive's bag.

Synthetic closing-object drives (training/data/synthetic/closing.py) record it on ``<ns>/instances_truth``
(sensor_msgs/PointCloud2, height 1, one point per visible thing instance, same stamp as the image,
little-endian, these fields in this order):

    id            int32    the instance label (the value in ``<ns>/instances``), stable over the drive
    class         int32    Cityscapes trainId, -1 where unknown
    range         float32  metres along the optical axis to the object's nearest point (its near surface)
    range_rate    float32  m/s, negative = closing
    ttc           float32  s, range / -range_rate; +inf when not closing
    u0 v0 u1 v1   int32    box of its visible pixels (u1, v1 exclusive)
    pixel_count   uint32   visible pixels
    actor         uint32   1 = a scripted closing object of the scenario, 0 = other scenery

Plain NumPy: the bag writer (rosbags) and replay_eval's reader (rosbags) both use it; no ROS needed.
"""
from __future__ import annotations

import numpy as np

TRUTH_DTYPE = np.dtype([
    ("id", "<i4"), ("class", "<i4"), ("range", "<f4"), ("range_rate", "<f4"), ("ttc", "<f4"),
    ("u0", "<i4"), ("v0", "<i4"), ("u1", "<i4"), ("v1", "<i4"), ("pixel_count", "<u4"), ("actor", "<u4"),
])
POINT_FIELD_TYPES = {"<i4": 5, "<u4": 6, "<f4": 7}  # sensor_msgs/PointField INT32, UINT32, FLOAT32


def truth_fields() -> list[tuple[str, int, int]]:
    """(name, byte offset, PointField datatype) of every field, for building the PointCloud2."""
    return [(name, TRUTH_DTYPE.fields[name][1], POINT_FIELD_TYPES[TRUTH_DTYPE.fields[name][0].str])
            for name in TRUTH_DTYPE.names]


def truth_from_cloud(cloud) -> np.ndarray:
    """A PointCloud2 message (rclpy or rosbags) of this layout -> TRUTH_DTYPE [n]; ValueError otherwise."""
    names = [field.name for field in cloud.fields]
    if names != list(TRUTH_DTYPE.names) or cloud.point_step != TRUTH_DTYPE.itemsize or cloud.is_bigendian:
        raise ValueError(f"not an instances_truth cloud: fields {names}, point_step {cloud.point_step}")
    data = np.asarray(cloud.data, dtype=np.uint8).tobytes()
    return np.frombuffer(data, dtype=TRUTH_DTYPE, count=cloud.width * cloud.height).copy()
