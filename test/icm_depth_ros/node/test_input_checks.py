"""input_checks on messages built here: compressed images (jpeg, png, corrupt, decompression bombs refused from
their header), camera_info and label images; each refusal carries its README kind."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage

from icm_depth_ros.node import input_checks
from icm_depth_ros.node.input_checks import InputError, check_camera_info, compressed_image_size, decode_compressed_image

TOPIC = "/front/image/compressed"
PIXELS = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)  # RGB


def compressed(data: bytes, fmt: str) -> CompressedImage:
    return CompressedImage(format=fmt, data=data)


def encode(extension: str, rgb: np.ndarray = PIXELS, *params) -> bytes:
    ok, buffer = cv2.imencode(extension, rgb[:, :, ::-1], list(params))
    assert ok
    return buffer.tobytes()


def refused(msg, max_pixels: int = 16_777_216) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_compressed_image(msg, TOPIC, max_pixels)
    assert str(caught.value).startswith(TOPIC)
    return caught.value


def test_png_decodes_to_the_same_rgb_pixels():
    image = decode_compressed_image(compressed(encode(".png"), "png"), TOPIC, 10_000)
    assert image.dtype == np.uint8 and image.flags.c_contiguous
    np.testing.assert_array_equal(image, PIXELS)


@pytest.mark.parametrize("progressive", [0, 1])
def test_jpeg_decodes_in_rgb_order(progressive):
    flat = np.zeros((48, 80, 3), np.uint8)
    flat[:] = (200, 40, 10)  # red in RGB: a swapped channel order would show at once
    data = encode(".jpg", flat, cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_PROGRESSIVE, progressive)
    assert compressed_image_size(data) == ("jpeg", 80, 48)
    image = decode_compressed_image(compressed(data, "rgb8; jpeg compressed bgr8"), TOPIC, 10_000)
    assert image.shape == (48, 80, 3)
    assert np.abs(image.astype(int) - flat).max() <= 3


def test_header_sizes_are_read_without_decoding():
    assert compressed_image_size(encode(".png")) == ("png", 80, 48)
    assert compressed_image_size(encode(".jpg")) == ("jpeg", 80, 48)
    assert compressed_image_size(b"GIF89a....") is None
    assert compressed_image_size(encode(".png")[:20]) is None  # cut inside IHDR
    assert compressed_image_size(encode(".jpg")[:30]) is None  # cut before the frame header


def png_claiming(width: int, height: int) -> bytes:
    """A real 80x48 PNG whose IHDR now claims width x height: a few hundred bytes that would decode huge."""
    data = bytearray(encode(".png"))
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(".jpg"))
    position = 2
    while data[position + 1] not in input_checks.JPEG_SOF_MARKERS:
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    data[position + 5:position + 7], data[position + 7:position + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("bomb, kind", [(png_claiming(100_000, 100_000), "png"), (jpeg_claiming(65_000, 65_000), "jpeg")])
def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(bomb, kind, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("cv2.imdecode must not run for an image over max_input_pixels")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    assert len(bomb) < 20_000  # kilobytes that would decode to gigabytes
    error = refused(compressed(bomb, kind))
    assert error.kind == "too_large"
    assert "max_input_pixels=16777216" in str(error) and "not decoded" in str(error)
    # the limit is the node's parameter: a real image just over it is refused the same way
    assert refused(compressed(encode(".png"), "png"), max_pixels=80 * 48 - 1).kind == "too_large"


def test_corrupt_empty_and_unknown_data_are_refused_by_kind():
    assert refused(compressed(b"", "jpeg")).kind == "zero_size"
    assert refused(compressed(b"\x00\x01garbage" * 10, "jpeg")).kind == "decode"
    cut = encode(".png")[:40]  # header intact, pixels missing
    assert compressed_image_size(cut) == ("png", 80, 48)
    assert refused(compressed(cut, "png")).kind == "decode"
    assert refused(compressed(png_claiming(0, 48), "png")).kind == "zero_size"


def test_camera_info_of_zero_size_is_refused():
    info = CameraInfo(width=0, height=480)
    info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    with pytest.raises(InputError) as caught:
        check_camera_info(info, "/front/camera_info")
    assert caught.value.kind == "camera_info_size" and "zero image size 0x480" in str(caught.value)
