"""Write rendered sequences as rosbag2 (sqlite3 or mcap) with the `rosbags` library, no ROS needed.

Topics (namespace "/camera" by default), all four messages of a frame share one header stamp:
    /camera/image_raw     sensor_msgs/Image  rgb8
    /camera/camera_info   sensor_msgs/CameraInfo  plumb_bob, zero distortion, K / P of the image
    /camera/depth_gt      sensor_msgs/Image  32FC1 metres, NaN = no measurement (REP 117/118),
                          or 16UC1 millimetres, 0 = invalid (gt_encoding="16UC1")
    /camera/instances     sensor_msgs/Image  mono16 thing instance ids, 0 = none (ids stable per sequence)
    /camera/instances_truth  sensor_msgs/PointCloud2, only for frames with a "truth" array (closing-object
                          drives, closing.py): per-instance range, range rate, time to contact, box;
                          layout in icm_depth_ros/replay/track_truth.py
Message and bag timestamps are start_time_ns + the frame's stamp_ns (10 Hz). The classes of the instance
ids (Cityscapes trainIds) are written by the CLI to instance_classes.json beside the bag.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from icm_depth_ros.replay.track_truth import TRUTH_DTYPE, truth_fields

DEFAULT_START_NS = 1_600_000_000 * 1_000_000_000  # a fixed epoch so bags are reproducible
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
GT_ENCODINGS = ("32FC1", "16UC1")
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"


def depth_payload(depth: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """(bytes as uint8 [H * step], bytes per pixel) of a depth map with 0 = invalid in metres."""
    if encoding == "32FC1":
        out = np.where(depth > 0, depth, np.nan).astype("<f4")
    elif encoding == "16UC1":
        out = np.where(depth > 0, np.clip(np.round(depth * 1000.0), 1, 65535), 0).astype("<u2")
    else:
        raise ValueError(f"gt_encoding must be one of {GT_ENCODINGS}, got {encoding!r}")
    return out.view(np.uint8).ravel(), out.dtype.itemsize


def write_bag(path, frames: list[dict], storage: str = "sqlite3", gt_encoding: str = "32FC1",
              frame_id: str = "camera_optical_frame", namespace: str = "/camera",
              start_time_ns: int = DEFAULT_START_NS) -> Path:
    """Write frames (render_sequence output: image, depth, instances, K, stamp_ns) to a new bag at path."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if gt_encoding not in GT_ENCODINGS:
        raise ValueError(f"gt_encoding must be one of {GT_ENCODINGS}, got {gt_encoding!r}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; rosbag2 writers need a new directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image, CameraInfo, RegionOfInterest = T[IMAGE], T[CAMERA_INFO], T["sensor_msgs/msg/RegionOfInterest"]
    PointCloud2, PointField = T[POINT_CLOUD], T["sensor_msgs/msg/PointField"]
    fields = [PointField(name=name, offset=offset, datatype=kind, count=1) for name, offset, kind in truth_fields()]
    kinds = [("image_raw", IMAGE), ("camera_info", CAMERA_INFO), ("depth_gt", IMAGE), ("instances", IMAGE)]
    if any("truth" in frame for frame in frames):
        kinds.append(("instances_truth", POINT_CLOUD))

    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        topics = {name: writer.add_connection(f"{namespace}/{name}", kind, typestore=store) for name, kind in kinds}
        for frame in frames:
            stamp = start_time_ns + int(frame["stamp_ns"])
            header = Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id)
            H, W = frame["depth"].shape

            def image_msg(data: np.ndarray, encoding: str, bytes_per_pixel: int):
                return Image(header=header, height=H, width=W, encoding=encoding, is_bigendian=0,
                             step=W * bytes_per_pixel, data=np.ascontiguousarray(data).view(np.uint8).ravel())

            K = np.asarray(frame["K"], dtype=np.float64)
            P = np.zeros((3, 4))
            P[:, :3] = K
            info = CameraInfo(header=header, height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5),
                              k=K.ravel(), r=np.eye(3).ravel(), p=P.ravel(), binning_x=0, binning_y=0,
                              roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            gt, gt_bytes = depth_payload(frame["depth"], gt_encoding)
            messages = {
                "image_raw": image_msg(frame["image"], "rgb8", 3),
                "camera_info": info,
                "depth_gt": image_msg(gt, gt_encoding, gt_bytes),
                "instances": image_msg(frame["instances"].astype("<u2"), "mono16", 2),
            }
            if "truth" in frame:
                truth = np.asarray(frame["truth"], dtype=TRUTH_DTYPE)
                messages["instances_truth"] = PointCloud2(
                    header=header, height=1, width=truth.size, fields=fields, is_bigendian=False,
                    point_step=TRUTH_DTYPE.itemsize, row_step=TRUTH_DTYPE.itemsize * truth.size,
                    data=np.frombuffer(truth.tobytes(), dtype=np.uint8), is_dense=False)
            for name, msg in messages.items():
                writer.write(topics[name], stamp, store.serialize_cdr(msg, msg.__msgtype__))
    return path
