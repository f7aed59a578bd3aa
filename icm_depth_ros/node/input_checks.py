"""Validation of the node's inputs (image, image/compressed, camera_info, instances), free of rclpy.

Each check raises ``InputError(kind, text)``: ``kind`` is a short stable key (throttling, diagnostics
counters), ``text`` names the topic and the problem so that a user can act on it.
"""
from __future__ import annotations

import numpy as np

from icm_depth_ros.processing.image_conversion import (
    COLOR_ENCODINGS, LABEL_ENCODINGS, ImageFormatError, image_to_array, to_rgb,
)


class InputError(ValueError):
    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


def _kind_of(error: ImageFormatError) -> str:
    text = str(error)
    for prefix, kind in (("unsupported encoding", "encoding"), ("zero-size", "zero_size"), ("image ", "too_large"),
                         ("step", "step"), ("truncated", "truncated"), ("data/step", "data_size")):
        if text.startswith(prefix):
            return kind
    return "format"


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def decode_color_image(msg, topic: str, max_pixels: int) -> np.ndarray:
    """sensor_msgs/Image -> uint8 [H, W, 3] RGB."""
    if msg.encoding in LABEL_ENCODINGS:  # a depth or label image on the camera topic: a wiring mistake
        raise InputError("not_color", f"{topic}: unsupported encoding {msg.encoding!r}: a depth/label image, not a "
                                      f"camera image (supported: {', '.join(COLOR_ENCODINGS)}); check the remapping")
    try:
        return to_rgb(image_to_array(msg, COLOR_ENCODINGS, max_pixels), msg.encoding)
    except ImageFormatError as error:
        raise InputError(_kind_of(error), f"{topic}: {error}") from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# JPEG start-of-frame markers (ITU-T T.81, table B.1): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from a PNG or JPEG header without decoding the pixels; None when the
    data is neither or its header is cut short. (Pillow reads headers too, but is no dependency of the node.)"""
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":  # IHDR is the first chunk (PNG spec, 5.3)
            return None
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(JPEG_SOI):
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in JPEG_SOF_MARKERS:
            if position + 9 > len(data):
                return None
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return "jpeg", width, height
        if length < 2:
            return None
        position += 2 + length
    return None


def decode_compressed_image(msg, topic: str, max_pixels: int) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> uint8 [H, W, 3] RGB. The size in the header is checked
    before decoding: a small message that would decode to a huge image is refused without allocating it."""
    import cv2

    raw = bytes(msg.data)
    if not raw:
        raise InputError("zero_size", f"{topic}: empty compressed image (format {msg.format!r})")
    header = compressed_image_size(raw)
    if header is None:
        raise InputError("decode", f"{topic}: {len(raw)} bytes of format {msg.format!r} are neither a PNG nor a JPEG "
                                   "image with a readable header")
    kind, width, height = header
    if width == 0 or height == 0:
        raise InputError("zero_size", f"{topic}: zero-size {kind} image {width}x{height}")
    if width * height > max_pixels:
        raise InputError("too_large", f"{topic}: {kind} header says {width}x{height}, which exceeds "
                                      f"max_input_pixels={max_pixels}; not decoded")
    image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("decode", f"{topic}: cannot decode {len(raw)} bytes of format {msg.format!r}")
    return np.ascontiguousarray(image[:, :, ::-1])  # OpenCV decodes to BGR


def check_camera_info(msg, topic: str) -> tuple[np.ndarray, np.ndarray]:
    """sensor_msgs/CameraInfo -> (K [3, 3], P [3, 4]); rejects what cannot describe a pinhole camera."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if msg.width == 0 or msg.height == 0:
        raise InputError("camera_info_size", f"{topic}: zero image size {msg.width}x{msg.height}")
    if not np.isfinite(K).all() or not np.isfinite(P).all():
        raise InputError("camera_info_nan", f"{topic}: K or P contains NaN/Inf (K={K.ravel().tolist()})")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError("camera_info_focal", f"{topic}: focal length fx={K[0, 0]}, fy={K[1, 1]} must be > 0 "
                                              "(an uncalibrated camera? calibrate it first)")
    if not P.any():  # some drivers fill only K; P = [K | 0] is what a rectified monocular camera has
        P[:, :3] = K
    return K, P


def decode_label_image(msg, topic: str, max_pixels: int) -> np.ndarray:
    """Instance label image (mono16, 16UC1, 32SC1, or 32FC1 holding whole numbers) -> int [H, W], 0 = none."""
    try:
        labels = image_to_array(msg, LABEL_ENCODINGS, max_pixels)
    except ImageFormatError as error:
        raise InputError(_kind_of(error), f"{topic}: {error}") from None
    if labels.dtype == np.float32:
        finite = np.isfinite(labels)
        if not finite.all():
            raise InputError("label_nan", f"{topic}: 32FC1 label image holds {int((~finite).sum())} NaN/Inf pixels; "
                                          "labels must be whole numbers (0 = no instance)")
        if (labels != np.round(labels)).any() or labels.min() < 0:
            raise InputError("label_values", f"{topic}: 32FC1 label image holds negative or fractional values")
        labels = labels.astype(np.int32)
    return labels
