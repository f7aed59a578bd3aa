"""Bad input in a real ROS graph: each kind is dropped with a throttled error naming it; the node goes on."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from conftest import MODEL_SIZE, make_camera_info, make_image, stamp_of

pytestmark = [pytest.mark.ros, pytest.mark.slow]
HEIGHT, WIDTH = MODEL_SIZE
K = np.array([[240.0, 0.0, 160.0], [0.0, 240.0, 48.0], [0.0, 0.0, 1.0]])


def raw_image(stamp, height, width, encoding, step, data):
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=bytes(data))
    msg.header.stamp, msg.header.frame_id = stamp, "camera_optical"
    return msg


def rgb(stamp):
    pixels = np.random.default_rng(stamp.sec).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return make_image(stamp, pixels, "rgb8")


def bad_inputs():
    """(kind logged, words the error must contain, publisher attribute, message factory taking a stamp)."""
    row = WIDTH * 3
    zero_focal = lambda s: make_camera_info(s, WIDTH, HEIGHT, np.diag([0.0, 0.0, 1.0]))  # noqa: E731
    nan_k = lambda s: make_camera_info(s, WIDTH, HEIGHT, np.full((3, 3), np.nan))  # noqa: E731
    return [
        ("encoding", "unsupported encoding 'yuv422'", "image_pub",
         lambda s: raw_image(s, HEIGHT, WIDTH, "yuv422", WIDTH * 2, bytes(HEIGHT * WIDTH * 2))),
        ("not_color", "unsupported encoding '32FC1'", "image_pub",  # a float image with NaNs on the colour topic
         lambda s: make_image(s, np.full((HEIGHT, WIDTH), np.nan, np.float32), "32FC1")),
        ("step", "smaller than one row", "image_pub",
         lambda s: raw_image(s, HEIGHT, WIDTH, "rgb8", row - 3, bytes((row - 3) * HEIGHT))),
        ("truncated", "truncated data", "image_pub",
         lambda s: raw_image(s, HEIGHT, WIDTH, "rgb8", row, bytes(row * HEIGHT - 100))),
        ("data_size", "data/step mismatch", "image_pub",
         lambda s: raw_image(s, HEIGHT, WIDTH, "rgb8", row, bytes(row * HEIGHT + 7))),
        ("zero_size", "zero-size image", "image_pub", lambda s: raw_image(s, 0, 0, "rgb8", 0, b"")),
        ("too_large", "max_input_pixels", "image_pub",  # a corrupt header claiming a huge image
         lambda s: raw_image(s, 100_000, 100_000, "rgb8", 300_000, bytes(16))),
        ("camera_info_focal", "focal length", "info_pub", zero_focal),
        ("camera_info_nan", "NaN", "info_pub", nan_k),
        ("camera_info_mismatch", "describes 640x480", "info_pub",
         lambda s: make_camera_info(s, 640, 480, K)),
        ("stamp_order", "not newer", "image_pub", lambda s: rgb(stamp_of(1))),
    ]


def test_each_kind_of_bad_input_is_dropped_named_and_throttled(graph, onnx_model):
    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "error_throttle_s": 30.0})
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    good_info = make_camera_info(stamp_of(10), WIDTH, HEIGHT, K)
    seconds = 10

    def publish_good_frame() -> None:
        """A valid frame (newer stamp each try) must come out; retries cover best-effort losses."""
        nonlocal seconds
        for _ in range(20):
            seconds += 1
            stamp = stamp_of(seconds)
            probe.image_pub.publish(rgb(stamp))
            if probe.wait_for(lambda: (seconds, 0) in probe.received["depth/image"], 1.5):
                return
        raise AssertionError(f"no depth for a valid frame after bad input\n{node.log()}")

    for _ in range(3):
        probe.info_pub.publish(good_info)
        probe.spin(0.2)
    publish_good_frame()
    for kind, words, publisher, factory in bad_inputs():
        for _ in range(10):  # best effort may lose one; the throttle keeps the log to one line per kind
            seconds += 1
            getattr(probe, publisher).publish(factory(stamp_of(seconds)))
            if kind == "camera_info_mismatch":  # the info itself is valid; the next image does not fit it
                probe.spin(0.2)
                seconds += 1
                probe.image_pub.publish(rgb(stamp_of(seconds)))
            if probe.wait_for(lambda: words in node.log(), 1.0):
                break
        assert f"[{kind}]" in node.log() and words in node.log(), f"{kind}: {words!r} not logged\n{node.log()}"
        if publisher == "info_pub":  # a refused camera_info leaves the last good one in place
            probe.info_pub.publish(good_info)
            probe.spin(0.2)
        publish_good_frame()
        assert node.process.poll() is None, node.log()

    # Throttled: a burst of one kind gives one line per throttle period, not one per message.
    lines_before = node.log().count("[truncated]")
    for _ in range(20):
        seconds += 1
        probe.image_pub.publish(raw_image(stamp_of(seconds), HEIGHT, WIDTH, "rgb8", WIDTH * 3, b"x"))
        probe.spin(0.02)
    probe.spin(0.5)
    assert node.log().count("[truncated]") == lines_before
    publish_good_frame()


def publish_until_logged(probe, node, publish, words: str, tries: int = 10) -> None:
    """Publish (each try with a newer stamp) until ``words`` is in the node's log; best effort may lose one."""
    for attempt in range(tries):
        publish(attempt)
        if probe.wait_for(lambda: words in node.log(), 1.0):
            return
    raise AssertionError(f"{words!r} not logged\n{node.log()}")


def test_compressed_input_jpeg_png_corrupt_and_a_decompression_bomb(graph, onnx_model):
    """use_compressed: jpeg and png frames give depth; a corrupt one is [decode]; a PNG whose header claims
    100000 x 100000 pixels (a few kB) is [too_large], refused before decoding; the node goes on."""
    import cv2
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "use_compressed": True,
                       "error_throttle_s": 30.0})
    publisher = probe.node.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for(lambda: publisher.get_subscription_count() > 0, 30), node.log()
    pixels = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)

    def message(seconds: int, fmt: str, data: bytes) -> CompressedImage:
        msg = CompressedImage(format=fmt, data=data)
        msg.header.stamp, msg.header.frame_id = stamp_of(seconds), "camera_optical"
        return msg

    png = cv2.imencode(".png", pixels[:, :, ::-1])[1].tobytes()
    jpeg = cv2.imencode(".jpg", pixels[:, :, ::-1])[1].tobytes()
    bomb = bytearray(png)
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    seconds = 100
    for fmt, data in (("jpeg", jpeg), ("png", png)):
        for _ in range(20):
            seconds += 1
            probe.info_pub.publish(make_camera_info(stamp_of(seconds), WIDTH, HEIGHT, K))
            publisher.publish(message(seconds, fmt, data))
            if probe.wait_for(lambda: (seconds, 0) in probe.received["depth/image"], 1.5):
                break
        assert (seconds, 0) in probe.received["depth/image"], f"no depth for a {fmt} frame\n{node.log()}"
        depth = probe.received["depth/image"][(seconds, 0)]
        assert (depth.width, depth.height) == (WIDTH, HEIGHT)
    for kind, words, data in (("decode", "cannot decode", png[:200] + bytes(100)),
                              ("too_large", "header says 100000x100000", bytes(bomb))):
        publish_until_logged(probe, node, lambda attempt: publisher.publish(message(seconds + 1 + attempt, "png", data)),
                             words)
        assert f"[{kind}]" in node.log()
        seconds += 20
    assert node.process.poll() is None, node.log()


def test_camera_info_and_label_kinds(graph, onnx_model):
    """require_camera_info and instance_source: topic: no_camera_info, camera_info_size, no_labels (depth still
    published), label_values and label_size are each dropped with their kind."""
    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "require_camera_info": True,
                       "instance_source": "topic", "instance_timeout_s": 0.2, "error_throttle_s": 30.0})
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    publish_until_logged(probe, node, lambda attempt: probe.image_pub.publish(rgb(stamp_of(10 + attempt))),
                         "no valid camera_info received yet")
    assert "[no_camera_info]" in node.log()
    publish_until_logged(probe, node, lambda attempt: probe.info_pub.publish(
        make_camera_info(stamp_of(30 + attempt), 0, HEIGHT, K)), "zero image size")
    assert "[camera_info_size]" in node.log()

    seconds = 50

    def frame(labels=None):
        """A camera_info, the label image (if any) and the image, all with one newer stamp."""
        nonlocal seconds
        seconds += 1
        stamp = stamp_of(seconds)
        probe.info_pub.publish(make_camera_info(stamp, WIDTH, HEIGHT, K))
        probe.spin(0.1)
        if labels is not None:
            probe.label_pub.publish(make_image(stamp, *labels))
            probe.spin(0.05)
        probe.image_pub.publish(rgb(stamp))

    publish_until_logged(probe, node, lambda attempt: frame(), "no label image stamped")
    assert "[no_labels]" in node.log()
    assert probe.wait_for(lambda: len(probe.received["depth/image"]) > 0, 5), "depth is still published without labels"
    fractional = np.full((HEIGHT, WIDTH), 1.5, np.float32)
    publish_until_logged(probe, node, lambda attempt: frame((fractional, "32FC1")), "negative or fractional values")
    assert "[label_values]" in node.log()
    small = np.ones((HEIGHT // 2, WIDTH // 2), np.uint16)
    publish_until_logged(probe, node, lambda attempt: frame((small, "mono16")),
                         f"label image {WIDTH // 2}x{HEIGHT // 2} differs from the image {WIDTH}x{HEIGHT}")
    assert "[label_size]" in node.log()
    assert node.process.poll() is None, node.log()
