"""``--write-bag``: a copy of the evaluated bag with the node's outputs added, to look at in Foxglove or RViz.

Always a rosbag2 (same storage as the input; mcap for a ROS 1 input, whose messages are converted to
ROS 2 wire format with rosbags' converter). Added topics, named like the node's outputs under
``namespace`` (the image topic's namespace by default):

    <ns>/depth/image        sensor_msgs/Image 32FC1, metres, NaN = no estimate, header of the image
    <ns>/depth/camera_info  the paired camera_info (the depth is on the camera's pixel grid); without a
                            camera_info topic one with the image's size and an all-zero K, as the node does
    <ns>/depth/instances    sensor_msgs/PointCloud2, one point per instance (instance_message.py layout)

The new messages are built by the node's own code (image_conversion.fill_image,
instance_message.instances_to_cloud) and serialised by rclpy, so they are byte-for-byte what the node
publishes. They are logged at the log time of the frame's last paired message.
"""
from __future__ import annotations

from pathlib import Path

from icm_depth_ros.replay.bag_reader import BagError, default_typestore

DEPTH_IMAGE = "depth/image"
DEPTH_CAMERA_INFO = "depth/camera_info"
DEPTH_INSTANCES = "depth/instances"


def topic_namespace(topic: str) -> str:
    """'/camera/image_raw' -> '/camera'; '/image' -> ''."""
    return topic.rsplit("/", 1)[0]


class PredictionBag:
    """Writes the copy; feed it every message of the input (``copy``) and every prediction (``add``)."""

    def __init__(self, path: str | Path, source, namespace: str):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"--write-bag: {str(self.path)!r} exists already; remove it or choose another --out")
        self.source = source
        self.typestore = default_typestore()
        plugin = StoragePlugin.SQLITE3 if source.storage == "sqlite3" else StoragePlugin.MCAP
        self.writer = Writer(self.path, version=9, storage_plugin=plugin)
        self.writer.open()
        self.outputs = {}
        existing = set(source.reader.topics)
        for suffix, msgtype in ((DEPTH_IMAGE, "sensor_msgs/msg/Image"),
                                (DEPTH_CAMERA_INFO, "sensor_msgs/msg/CameraInfo"),
                                (DEPTH_INSTANCES, "sensor_msgs/msg/PointCloud2")):
            topic = f"{namespace.rstrip('/')}/{suffix}"
            if topic in existing:
                raise BagError(f"--write-bag: the bag already has {topic!r}; choose --output-namespace")
            self.outputs[suffix] = self.writer.add_connection(topic, msgtype, typestore=self.typestore)
        self.copies: dict[tuple[str, str], tuple[object, object]] = {}  # (topic, type) -> (connection, convert)
        self.not_copied: dict[str, str] = {}  # topic -> why

    def copy(self, connection, log_time: int, raw: bytes) -> None:
        key = (connection.topic, connection.msgtype)
        if key not in self.copies:
            self.copies[key] = self._add_copy(connection)
        out, convert = self.copies[key]
        if out is None:
            return
        try:
            self.writer.write(out, log_time, convert(raw))
        except Exception as error:  # noqa: BLE001 - a corrupt message is left out of the copy, not fatal
            self.not_copied.setdefault(connection.topic, f"a message did not convert: {error}")

    def _add_copy(self, connection):
        from rosbags.interfaces import ConnectionExtRosbag2

        if isinstance(connection.ext, ConnectionExtRosbag2):
            if connection.msgdef.data and connection.digest:
                out = self.writer.add_connection(
                    connection.topic, connection.msgtype, msgdef=connection.msgdef.data, rihs01=connection.digest,
                    serialization_format=connection.ext.serialization_format,
                    offered_qos_profiles=connection.ext.offered_qos_profiles)
            else:
                out = self.writer.add_connection(connection.topic, connection.msgtype, typestore=self.typestore)
            return out, bytes
        from rosbags.convert.converter import generate_message_converter

        if connection.msgtype not in self.typestore.fielddefs:
            self.not_copied[connection.topic] = f"ROS 1 type {connection.msgtype} has no ROS 2 equivalent"
            return None, None
        convert = generate_message_converter(self.source.reader.typestore, self.typestore, connection.msgtype,
                                             connection.msgtype, {}, src_is2=False, dst_is2=True)
        return self.writer.add_connection(connection.topic, connection.msgtype, typestore=self.typestore), convert

    def add(self, log_time: int, image_msg, depth, instances, camera_info_raw: bytes | None,
            camera_info_connection) -> None:
        """image_msg: the input image (rosbags message) whose header the outputs carry; camera_info_raw
        None: the drive has no camera_info."""
        from builtin_interfaces.msg import Time
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header

        from icm_depth_ros.processing.image_conversion import fill_image
        from icm_depth_ros.instances.messages import instances_to_cloud

        stamp = image_msg.header.stamp
        header = Header(stamp=Time(sec=int(stamp.sec), nanosec=int(stamp.nanosec)), frame_id=image_msg.header.frame_id)
        depth_msg = fill_image(Image(header=header), depth, "32FC1")
        self.writer.write(self.outputs[DEPTH_IMAGE], log_time, serialize_message(depth_msg))
        self.writer.write(self.outputs[DEPTH_INSTANCES], log_time, serialize_message(instances_to_cloud(instances, header)))
        if camera_info_raw is None:
            info = CameraInfo(header=header, height=depth.shape[0], width=depth.shape[1])  # K, P all zero
            self.writer.write(self.outputs[DEPTH_CAMERA_INFO], log_time, serialize_message(info))
            return
        # the camera_info was copied (and its converter made) when it streamed past, before its frame completed
        _, convert = self.copies[(camera_info_connection.topic, camera_info_connection.msgtype)]
        if convert is not None:
            self.writer.write(self.outputs[DEPTH_CAMERA_INFO], log_time, convert(camera_info_raw))

    def close(self) -> None:
        self.writer.close()
