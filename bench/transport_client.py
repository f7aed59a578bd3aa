"""A camera and a viewer in one process, for transport checks: publishes rgb8 images + camera_info at a rate and
counts the depth outputs that come back, keyed by the image stamp.

    python bench/transport_client.py [--rate 30] [--frames 150] [--size 375x1242] [--publisher-qos reliable]
        [--only-receive] [--namespace NS]

Run it in the environment (ROS_DOMAIN_ID, FASTDDS_DEFAULT_PROFILES_FILE, ...) whose transport is to be
measured: its participant is the stand-in for a camera driver, or for a viewer on another host. Prints one
JSON object: frames sent, outputs received per topic, the stamps answered, latency (image stamp -> arrival of
depth/image here) p50/p99, and the node's own counts from its last /diagnostics (frames it received, processed,
dropped in its latest-frame slot, rejected): received / sent is what the transport delivered. --publisher-qos reliable is what rclcpp and image_transport publishers default to
(reliable, keep last 10); sensor_data is best effort, keep last 5 (REP 2003).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

OUTPUTS = ("depth/image", "depth/camera_info", "depth/instances")
COUNTS = ("received_frames", "processed_frames", "dropped_frames", "rejected_frames")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="375x1242", help="HEIGHTxWIDTH of the rgb8 images")
    parser.add_argument("--publisher-qos", choices=("reliable", "sensor_data"), default="reliable")
    parser.add_argument("--only-receive", action="store_true", help="publish nothing; count outputs for --seconds")
    parser.add_argument("--seconds", type=float, default=20.0, help="--only-receive / --count-images: how long")
    parser.add_argument("--count-images", choices=("reliable", "sensor_data"),
                        help="be the node's stand-in instead: subscribe to 'image' (keep last 1, this reliability) "
                             "and count what arrives; no model, so this is the transport alone")
    parser.add_argument("--no-node", action="store_true", help="publish without waiting for a node's depth/image")
    parser.add_argument("--discovery-timeout", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=3.0, help="seconds to wait for the last outputs")
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report), flush=True)
    return report


def run(args) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node("transport_client")
    arrivals: dict[str, dict[tuple[int, int], float]] = {topic: {} for topic in OUTPUTS}

    def recorder(topic):
        def record(msg):
            arrivals[topic].setdefault((msg.header.stamp.sec, msg.header.stamp.nanosec), time.time())
        return record

    for topic, kind in zip(OUTPUTS, (Image, CameraInfo, PointCloud2)):
        node.create_subscription(kind, topic, recorder(topic), QoSProfile(depth=10))
    node_counts: dict[str, int] = {}

    def record_diagnostics(msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "received_frames" in values:
                node_counts.update({key: int(values[key]) for key in COUNTS if key in values})

    node.create_subscription(DiagnosticArray, "/diagnostics", record_diagnostics, 10)
    sent: dict[tuple[int, int], float] = {}
    images: list[float] = []  # --count-images: stamp -> arrival, seconds
    if args.count_images:
        from rclpy.qos import ReliabilityPolicy

        reliability = ReliabilityPolicy.RELIABLE if args.count_images == "reliable" else ReliabilityPolicy.BEST_EFFORT
        node.create_subscription(Image, "image", lambda m: images.append(
            time.time() - m.header.stamp.sec - m.header.stamp.nanosec * 1e-9), QoSProfile(depth=1, reliability=reliability))
    try:
        if args.only_receive or args.count_images:
            spin_for(node, args.seconds)
        else:
            qos = QoSProfile(depth=10) if args.publisher_qos == "reliable" else qos_profile_sensor_data
            image_publisher = node.create_publisher(Image, "image", qos)
            info_publisher = node.create_publisher(CameraInfo, "camera_info", qos)
            deadline = time.monotonic() + args.discovery_timeout
            while image_publisher.get_subscription_count() == 0 or (
                    not args.no_node and node.count_publishers("depth/image") == 0):
                if time.monotonic() > deadline:
                    raise SystemExit("transport_client: the node's image subscription was not discovered in "
                                     f"{args.discovery_timeout} s")
                rclpy.spin_once(node, timeout_sec=0.1)
            spin_for(node, 2.0)  # input_qos auto re-subscribes once it has seen this publisher (1 s timer)
            height, width = map(int, args.size.split("x"))
            image = camera_image(height, width)
            info = camera_info(height, width)
            period, start = 1.0 / args.rate, time.monotonic()
            for index in range(args.frames):
                while time.monotonic() < start + index * period:
                    rclpy.spin_once(node, timeout_sec=max(0.0, start + index * period - time.monotonic()))
                now = time.time()
                stamp = (int(now), int((now % 1) * 1e9))
                for msg in (info, image):
                    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
                info_publisher.publish(info)
                image_publisher.publish(image)
                sent[stamp] = now
            spin_for(node, args.drain)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if args.count_images:
        latencies = np.array(images) * 1e3
        return {"images_received": len(images), "reliability": args.count_images,
                "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1) if images else None}
    return {**summarize(sent, arrivals, args), "node": node_counts}


def spin_for(node, seconds: float) -> None:
    import rclpy

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)


def camera_image(height: int, width: int):
    from sensor_msgs.msg import Image

    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes(),
                 header=Image().header.__class__(frame_id="camera_optical"))


def camera_info(height: int, width: int):
    from sensor_msgs.msg import CameraInfo

    fx = 0.58 * width  # a KITTI-like focal length
    info = CameraInfo(height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [fx, 0.0, width / 2, 0.0, fx, height / 2, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, width / 2, 0.0, 0.0, fx, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.header.frame_id = "camera_optical"
    return info


def summarize(sent: dict, arrivals: dict, args) -> dict:
    depth = arrivals["depth/image"]
    answered = [stamp for stamp in sent if stamp in depth]
    latencies = np.array([depth[stamp] - sent[stamp] for stamp in answered]) * 1e3
    report = {"frames_sent": len(sent), "rate_hz": args.rate, "size": args.size, "publisher_qos": args.publisher_qos,
              "received": {topic: len(values) for topic, values in arrivals.items()},
              "answered": len(answered)}
    if sent:
        report["answered_fraction"] = round(len(answered) / len(sent), 3)
    if latencies.size:
        report["latency_p50_ms"] = round(float(np.percentile(latencies, 50)), 1)
        report["latency_p99_ms"] = round(float(np.percentile(latencies, 99)), 1)
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
