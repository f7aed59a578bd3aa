"""The transport floor for bench/node_realtime.py: receive each camera image, publish a same-size 32FC1 image at once.

Same subscriptions (sensor-data QoS, depth 1) and publisher QoS (reliable, depth 2) as depth_node, so
that image stamp -> depth/image arrival measured through it is what the ROS graph itself costs.

    python bench/echo_node.py [--cameras front,left,right]    # in the environment of local_ros_environment()
"""
from __future__ import annotations

import argparse

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", default="", help="comma-separated namespaces; empty = one camera, no namespace")
    args, ros_args = parser.parse_known_args(argv)
    rclpy.init(args=ros_args)
    node = rclpy.create_node("echo_node")
    input_qos = QoSProfile(reliability=qos_profile_sensor_data.reliability, durability=qos_profile_sensor_data.durability,
                           history=HistoryPolicy.KEEP_LAST, depth=1)
    output_qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=2)
    payloads: dict[tuple[int, int], bytes] = {}
    for camera in [c for c in args.cameras.split(",") if c] or [""]:
        prefix = f"{camera}/" if camera else ""
        publisher = node.create_publisher(Image, f"{prefix}depth/image", output_qos)

        def echo(msg: Image, publisher=publisher) -> None:
            size = (msg.height, msg.width)
            if size not in payloads:  # a float32 image of the camera's size, as depth_node publishes
                payloads[size] = np.zeros(size, np.float32).tobytes()
            out = Image(header=msg.header, height=msg.height, width=msg.width, encoding="32FC1",
                        is_bigendian=0, step=msg.width * 4)
            out.data = payloads[size]
            publisher.publish(out)

        node.create_subscription(Image, f"{prefix}image", echo, input_qos)
    node.get_logger().info("echo active")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
