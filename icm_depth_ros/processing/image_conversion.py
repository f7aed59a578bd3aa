"""sensor_msgs/Image fields <-> NumPy arrays, without cv_bridge (the pip `cv-bridge` is a broken ROS 1 port).

Works on any object with the Image fields (an rclpy message, a rosbags message, a test stub):
``height, width, encoding, is_bigendian, step, data``. Honours ``step`` (row padding) and
``is_bigendian``; every problem raises ``ImageFormatError`` (a ValueError) whose text names it, so the
node can log it and drop the frame.

Colour images come back as uint8 [H, W, 3] RGB (the model's order); depth and label images as
[H, W] arrays of their own type in native byte order.
"""
from __future__ import annotations

import array as pyarray

import numpy as np

# encoding -> (element type, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32SC1": (np.dtype(np.int32), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
LABEL_ENCODINGS = ("mono16", "16UC1", "32SC1", "32FC1")


class ImageFormatError(ValueError):
    """An image message that cannot be turned into an array; the text says why."""


def image_to_array(msg, allowed: tuple[str, ...] | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Image message -> array [H, W] or [H, W, C] in native byte order.

    Zero-copy (a view on ``msg.data``) when the rows are unpadded and the byte order is native.
    ``allowed`` restricts the encodings; ``max_pixels`` rejects absurd sizes before touching the data.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS or (allowed is not None and encoding not in allowed):
        supported = ", ".join(allowed if allowed is not None else ENCODINGS)
        raise ImageFormatError(f"unsupported encoding {encoding!r} (supported: {supported})")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"zero-size image {width}x{height}")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageFormatError(
            f"image {width}x{height} has {height * width} pixels, more than max_input_pixels={max_pixels}"
        )
    dtype, channels = ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than one row ({width} px x {channels} ch x {dtype.itemsize} B = {row_bytes})"
        )
    if dtype.itemsize > 1 and step % dtype.itemsize:
        raise ImageFormatError(f"step {step} is not a multiple of the {dtype.itemsize}-byte element of {encoding}")
    size = len(msg.data)
    if size < step * height:
        raise ImageFormatError(f"truncated data: {size} bytes, step {step} x height {height} needs {step * height}")
    if size > step * height:
        raise ImageFormatError(f"data/step mismatch: {size} bytes, step {step} x height {height} is {step * height}")

    big_endian = bool(msg.is_bigendian)
    wire = dtype.newbyteorder(">" if big_endian else "<")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    if step != row_bytes:
        rows = np.ascontiguousarray(rows)
    array = rows.view(wire).reshape((height, width, channels) if channels > 1 else (height, width))
    if wire.byteorder not in ("=", "|") and wire != dtype:  # foreign byte order -> native
        array = array.astype(dtype)
    return array


def to_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """A colour-encoded array (see COLOR_ENCODINGS) -> uint8 [H, W, 3] RGB."""
    if encoding == "rgb8":
        return array
    if encoding == "bgr8":
        return array[:, :, ::-1]
    if encoding == "rgba8":
        return array[:, :, :3]
    if encoding == "bgra8":
        return array[:, :, 2::-1]
    if encoding == "mono8":
        return np.repeat(array[:, :, None], 3, axis=2)
    raise ImageFormatError(f"unsupported colour encoding {encoding!r} (supported: {', '.join(COLOR_ENCODINGS)})")


def fill_image(msg, array: np.ndarray, encoding: str):
    """Write ``array`` into an Image message's fields (native byte order, unpadded rows); returns ``msg``."""
    if encoding not in ENCODINGS:
        raise ImageFormatError(f"unsupported encoding {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ImageFormatError(f"array of shape {array.shape} does not fit encoding {encoding}")
    array = np.ascontiguousarray(array, dtype=dtype)
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(np.little_endian is False)
    msg.step = int(array.shape[1] * channels * dtype.itemsize)
    # An array.array('B') is stored as it is; bytes would be checked value by value on Humble (debug
    # builds of the message setters iterate every byte) before being copied into one anyway.
    data = pyarray.array("B")
    data.frombytes(memoryview(array).cast("B"))
    msg.data = data
    return msg
