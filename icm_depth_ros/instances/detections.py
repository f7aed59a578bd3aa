"""Tracked instances as vision_msgs/Detection3DArray (the vision_msgs 4.x layout of Humble and Jazzy), for
consumers that take 3-D detections (planners, fusion, rviz2 plugins).

vision_msgs is optional at run time: on a vehicle it comes from rosdep (package.xml's exec_depend);
where it does not import, ``AVAILABLE`` is False and the node does not offer ``depth/detections``.

One Detection3D per instance with a confirmed track (tracking off: per instance, id ""), among those with
a 3-D centroid (camera_info known):

    id                  the track id (decimal), stable over frames, unique across the node's cameras
    bbox.center         the centroid in the camera optical frame (x right, y down, z forward), no rotation
    bbox.size           the instance's box back-projected at its range: x = box width x range / fx,
                        y = box height x range / fy, z = 2 x (centroid z - near depth) (its extent in depth)
    results[0]          hypothesis.class_id = the class id ("" where unknown), score = the confidence;
                        pose = the centroid again, its covariance from the range uncertainty: the
                        position lies on the centroid's ray, p = (x, y, z) = z u, so cov(p) =
                        u u^T range_std^2 (u = p / z); orientation unknown (variance 1e6); all zero
                        without a track (no range uncertainty known)
    header              the image's header
"""
from __future__ import annotations

import numpy as np

from icm_depth_ros.instances.statistics import Instance

try:
    from vision_msgs.msg import BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesisWithPose

    AVAILABLE = True
except ImportError:  # not installed (rosdep installs ros-<distro>-vision-msgs)
    AVAILABLE = False

UNKNOWN_ORIENTATION_VARIANCE = 1e6  # rad^2: the detections carry no orientation


def instances_to_detections(instances: list[Instance], header, K: np.ndarray | None,
                            tracks: np.ndarray | None = None):
    """Instances (and TRACK_DTYPE [n] from InstanceTracker.update, or None) -> vision_msgs/Detection3DArray."""
    array = Detection3DArray(header=header)
    if K is None:
        return array
    fx, fy = float(K[0, 0]), float(K[1, 1])
    for index, instance in enumerate(instances):
        centroid = np.asarray(instance.centroid, dtype=np.float64)
        track = tracks[index] if tracks is not None else None
        if not np.isfinite(centroid).all() or (track is not None and track["track_id"] == 0):
            continue
        detection = Detection3D(header=header, id="" if track is None else str(int(track["track_id"])))
        x, y, z = (float(c) for c in centroid)
        range_m = float(track["range"]) if track is not None else float(instance.near_depth)
        u0, v0, u1, v1 = instance.bbox
        box = BoundingBox3D()
        box.center.position.x, box.center.position.y, box.center.position.z = x, y, z
        box.center.orientation.w = 1.0
        box.size.x, box.size.y = (u1 - u0) * range_m / fx, (v1 - v0) * range_m / fy
        box.size.z = max(2.0 * (z - float(instance.near_depth)), 0.0)
        detection.bbox = box
        result = ObjectHypothesisWithPose()
        result.hypothesis.class_id = str(instance.class_id) if instance.class_id >= 0 else ""
        result.hypothesis.score = float(instance.confidence)
        result.pose.pose = box.center
        result.pose.covariance = _covariance(centroid, None if track is None else float(track["range_std"]))
        detection.results.append(result)
        array.detections.append(detection)
    return array


def _covariance(centroid: np.ndarray, range_std: float | None) -> list[float]:
    """Row-major 6 x 6 (x, y, z, roll, pitch, yaw) of a position on the centroid's ray with std range_std along z."""
    covariance = np.zeros((6, 6))
    if range_std is not None and np.isfinite(range_std):
        ray = centroid / centroid[2]  # [3] position per metre of depth
        covariance[:3, :3] = np.outer(ray, ray) * range_std ** 2
        covariance[3:, 3:] = np.eye(3) * UNKNOWN_ORIENTATION_VARIANCE
    return covariance.ravel().tolist()
