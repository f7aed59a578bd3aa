"""The area-shrink kernel and InputGeometry.to_model: the same bytes as cv2.resize(INTER_AREA), window by window."""
import math
import platform

import cv2
import numpy as np
import pytest

from icm_depth_ros.processing import geometry
from icm_depth_ros.processing.geometry import InputGeometry, cv2_area_is_generic, kernel_rounding, rounding_probe

try:
    from icm_depth_ros.processing import _resize_kernel
except ImportError:
    _resize_kernel = None

needs_kernel = pytest.mark.skipif(_resize_kernel is None, reason="icm_depth_ros/processing/_resize_kernel is not built "
                                                                  "(python setup.py build_ext --inplace)")
CAMERA = (375, 1242)  # KITTI
MODEL = (352, 1216)
FUSED = kernel_rounding(_resize_kernel)  # how this cv2 rounds its multiply-adds


def cv2_window(image, scaled, rows, columns):
    """What the kernel must write: cv2's whole shrunk image, cut to the window, with the channel axis kept."""
    scaled_h, scaled_w = scaled
    shrunk = cv2.resize(image, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
    shrunk = shrunk.reshape((scaled_h, scaled_w) + image.shape[2:])  # cv2 drops a single channel
    return shrunk[rows[0]:rows[1], columns[0]:columns[1]]


def kernel_window(image, scaled, rows, columns):
    out = np.full((rows[1] - rows[0], columns[1] - columns[0]) + image.shape[2:], 123, np.uint8)
    _resize_kernel.shrink(image, scaled[0], scaled[1], rows[0], rows[1], columns[0], columns[1], out, FUSED)
    return out


def area_taps(source, scaled):
    """OpenCV's area table for one axis (computeResizeAreaTab) written out: per output, [(source, float32 weight)]."""
    scale = 1.0 / (scaled / source)
    taps = []
    for d in range(scaled):
        start = d * scale
        stop, cell = start + scale, min(scale, source - start)
        last = min(math.floor(stop), source - 1)
        first_whole = min(math.ceil(start), last)
        cell_taps = [(first_whole - 1, np.float32((first_whole - start) / cell))] if first_whole - start > 1e-3 else []
        cell_taps += [(s, np.float32(1.0 / cell)) for s in range(first_whole, last)]
        if stop - last > 1e-3:
            cell_taps.append((last, np.float32(min(stop - last, 1.0, cell) / cell)))
        taps.append(cell_taps)
    return taps


def reference_shrink(image, scaled, fused):
    """The whole area shrink in NumPy float32, each multiply-add rounded twice or (fused) once: a float64 sum of
    the exact float32 product, rounded to float32 once."""
    def add_product(total, a, b):
        if fused:
            return (total.astype(np.float64) + a.astype(np.float64) * np.float64(b)).astype(np.float32)
        return total + a * b

    def filter_axis(values, taps, axis):  # values float32, the axis to shrink moved first
        values = np.moveaxis(values, axis, 0)
        out = np.zeros((len(taps),) + values.shape[1:], np.float32)
        for d, cell_taps in enumerate(taps):
            for k, (s, weight) in enumerate(cell_taps):
                out[d] = values[s] * weight if k == 0 else add_product(out[d], values[s], weight)
        return np.moveaxis(out, 0, axis)

    rows = filter_axis(image.astype(np.float32), area_taps(image.shape[1], scaled[1]), 1)
    return np.clip(np.rint(filter_axis(rows, area_taps(image.shape[0], scaled[0]), 0)), 0, 255).astype(np.uint8)


@needs_kernel
def test_the_kernel_matches_this_cv2_one_way_and_the_probe_tells_the_two_apart():
    """Which rounding this cv2 uses is found on the probe image: there the two give different bytes, and one of them
    is cv2's (on x86-64 the unfused one)."""
    assert FUSED is not None
    image, scaled = rounding_probe()
    unfused, fused = (np.empty(scaled + (3,), np.uint8) for _ in range(2))
    _resize_kernel.shrink(image, *scaled, 0, scaled[0], 0, scaled[1], unfused, False)
    _resize_kernel.shrink(image, *scaled, 0, scaled[0], 0, scaled[1], fused, True)
    assert (unfused != fused).sum() == 5
    expected = cv2.resize(image, scaled[::-1], interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(fused if FUSED else unfused, expected)
    if platform.machine() in ("x86_64", "AMD64"):
        assert FUSED is False


@needs_kernel
@pytest.mark.parametrize("fused", [False, True])
def test_both_roundings_match_a_numpy_reference(fused):
    """Both roundings (this machine's cv2 checks only one) against the NumPy reference, itself checked against cv2."""
    rng = np.random.default_rng(17)
    for shape, scaled in [((120, 160, 3), (91, 117)), ((57, 43, 4), (20, 31)), ((33, 90, 1), (32, 17))]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        reference = reference_shrink(image, scaled, fused)
        if fused == FUSED:
            np.testing.assert_array_equal(reference, cv2_window(image, scaled, (0, scaled[0]), (0, scaled[1])))
        out = np.empty(scaled + shape[2:], np.uint8)
        _resize_kernel.shrink(image, *scaled, 0, scaled[0], 0, scaled[1], out, fused)
        np.testing.assert_array_equal(out, reference, err_msg=f"{shape} -> {scaled}")


@needs_kernel
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_random_sizes_ratios_and_windows_match_cv2(channels):
    rng = np.random.default_rng(channels)
    checked = 0
    while checked < 150:
        height, width = rng.integers(1, 160, size=2)
        scaled = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        if not cv2_area_is_generic((height, width), scaled):
            continue
        image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        row0 = int(rng.integers(0, scaled[0]))
        column0 = int(rng.integers(0, scaled[1]))
        rows = row0, int(rng.integers(row0 + 1, scaled[0] + 1))
        columns = column0, int(rng.integers(column0 + 1, scaled[1] + 1))
        np.testing.assert_array_equal(kernel_window(image, scaled, rows, columns), cv2_window(image, scaled, rows, columns),
                                      err_msg=f"{image.shape} -> {scaled}, rows {rows}, columns {columns}")
        checked += 1


@needs_kernel
def test_the_kitti_crop_matches_cv2():
    """The node's default: 1242x375 -> 1216x367, the middle 352 rows."""
    image = np.random.default_rng(0).integers(0, 256, CAMERA + (3,), dtype=np.uint8)
    rows, columns = (7, 359), (0, 1216)
    expected = cv2_window(image, (367, 1216), rows, columns)
    np.testing.assert_array_equal(kernel_window(image, (367, 1216), rows, columns), expected)
    grey = np.ascontiguousarray(image[:, :, 0])
    np.testing.assert_array_equal(kernel_window(grey, (367, 1216), rows, columns),
                                  cv2_window(grey, (367, 1216), rows, columns))


@needs_kernel
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_large_windows_computed_in_bands_match_cv2(channels):
    """Windows of more than 256 KiB are computed in bands of rows on several threads: the same bytes, wherever
    the bands split (odd heights, windows starting inside the image, reversed channels)."""
    rng = np.random.default_rng(channels)
    for _ in range(6):
        height, width = int(rng.integers(700, 1300)), int(rng.integers(900, 2000))
        scaled = (int(rng.integers(height // 2 + 1, height)), int(rng.integers(width // 2 + 1, width)))
        shape = (height, width) if channels == 1 else (height, width, channels)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        rows = (int(rng.integers(0, 20)), scaled[0] - int(rng.integers(0, 20)))
        columns = (int(rng.integers(0, 20)), scaled[1] - int(rng.integers(0, 20)))
        np.testing.assert_array_equal(kernel_window(image, scaled, rows, columns), cv2_window(image, scaled, rows, columns))
        if channels == 3:
            out = np.zeros((rows[1] - rows[0], columns[1] - columns[0], 3), np.uint8)
            _resize_kernel.shrink(image, *scaled, *rows, *columns, out, FUSED, True)
            np.testing.assert_array_equal(out, cv2_window(np.ascontiguousarray(image[:, :, ::-1]), scaled, rows, columns))


@needs_kernel
def test_sums_next_to_one_half_round_as_cv2_does():
    """Width halved (weights 1/2 and 1/2: the row sums of two pixels of odd sum end in .5) over rows that are all the
    same, height shrunk by 1.5 (weights 2/3 and 1/3 as floats): the outputs land within float error of x.5, where
    only the same operations in the same order give cv2's bytes."""
    row = np.random.default_rng(3).integers(0, 256, (1, 64, 3), dtype=np.uint8)
    image = np.repeat(row, 30, axis=0)
    odd = (row[0, 0::2].astype(int) + row[0, 1::2]) % 2 == 1
    assert odd.mean() > 0.3  # the case is really exercised
    expected = cv2_window(image, (20, 32), (0, 20), (0, 32))
    np.testing.assert_array_equal(kernel_window(image, (20, 32), (0, 20), (0, 32)), expected)


@needs_kernel
def test_every_uniform_value_stays_itself():
    """Weights that sum to 1 only up to float rounding still give back each of the 256 values, as cv2 does."""
    for value in range(0, 256, 4):
        image = np.empty((37, 53, 4), np.uint8)
        image[:] = [value, value + 1, value + 2, value + 3]
        out = kernel_window(image, (23, 31), (0, 23), (0, 31))
        np.testing.assert_array_equal(out, cv2_window(image, (23, 31), (0, 23), (0, 31)))
        np.testing.assert_array_equal(out, np.broadcast_to(image[0, 0], out.shape))


@needs_kernel
def test_padded_rows_in_and_out():
    """A camera image inside a wider buffer, written into a slice of a wider model buffer."""
    rng = np.random.default_rng(5)
    wide = rng.integers(0, 256, (101, 90 + 7, 3), dtype=np.uint8)
    image = wide[:, 3:93]  # [101, 90, 3], rows 97 pixels apart
    buffer = np.zeros((2, 60, 80, 3), np.uint8)
    out = buffer[1, 5:55, 10:70]  # [50, 60, 3], rows 80 pixels apart
    _resize_kernel.shrink(image, 77, 71, 20, 70, 5, 65, out, FUSED)
    np.testing.assert_array_equal(out, cv2_window(np.ascontiguousarray(image), (77, 71), (20, 70), (5, 65)))
    assert not buffer[0].any() and not buffer[1, :5].any() and not buffer[1, :, :10].any()  # nothing outside


def shrink_unfused(*args):
    return _resize_kernel.shrink(*args, False)


@needs_kernel
@pytest.mark.parametrize("call, message", [
    (lambda image, out: shrink_unfused(image.astype(np.float32), 50, 60, 0, 50, 0, 60, out), "must be uint8"),
    (lambda image, out: shrink_unfused(image, 50, 60, 0, 50, 0, 60, out.astype(np.int8)), "must be uint8"),
    (lambda image, out: shrink_unfused(image, 50, 60, 0, 51, 0, 60, out), r"rows \[0, 51\) .* size \(50, 60\)"),
    (lambda image, out: shrink_unfused(image, 50, 60, 10, 5, 0, 60, out), r"rows \[10, 5\)"),
    (lambda image, out: shrink_unfused(image, 50, 60, 0, 50, -1, 59, out), r"columns \[-1, 59\)"),
    (lambda image, out: shrink_unfused(image, 50, 60, 0, 50, 0, 60, out[:, :59]), r"shape \(50, 60, C\)"),
    (lambda image, out: shrink_unfused(image, 50, 60, 0, 50, 0, 60, out[:, :, 0]), "3 dimensions"),
    (lambda image, out: shrink_unfused(image, 81, 60, 0, 50, 0, 60, out), r"scaled size \(81, 60\) must shrink"),
    (lambda image, out: shrink_unfused(image, 0, 60, 0, 0, 0, 60, out), r"scaled size \(0, 60\)"),
    (lambda image, out: shrink_unfused(image[:, :, :2], 50, 60, 0, 50, 0, 60, out[:, :, :2]), "2 channels"),
    (lambda image, out: shrink_unfused(image[:, ::2], 50, 40, 0, 50, 0, 40, out[:, :40]), "packed within each row"),
    (lambda image, out: shrink_unfused(image, 50, 60, 0, 50, 0, 60, out[:, :, ::-1]), "packed within each row"),
    (lambda image, out: _resize_kernel.shrink(np.zeros((80, 100, 4), np.uint8), 50, 60, 0, 50, 0, 60,
                                              np.zeros((50, 60, 4), np.uint8), False, True),
     "reverse_channels needs a 3-channel image, got 4 channels"),
])
def test_bad_input_is_refused_by_name(call, message):
    image = np.zeros((80, 100, 3), np.uint8)
    out = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        call(image, out)


@needs_kernel
@pytest.mark.parametrize("fused", [False, True])
def test_reversed_channels_are_the_channel_reversed_image(fused):
    """reverse_channels: a bgr8 camera image shrunk into an RGB window, the numbers of the reversed image."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        height, width = (int(n) for n in rng.integers(20, 200, 2))
        scaled = (int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1)))
        bgr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        reversed_out, plain_out = (np.zeros(scaled + (3,), np.uint8) for _ in range(2))
        _resize_kernel.shrink(bgr, *scaled, 0, scaled[0], 0, scaled[1], reversed_out, fused, True)
        _resize_kernel.shrink(rgb, *scaled, 0, scaled[0], 0, scaled[1], plain_out, fused)
        np.testing.assert_array_equal(reversed_out, plain_out)


@needs_kernel
def test_a_read_only_out_is_refused():
    out = np.zeros((50, 60, 3), np.uint8)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        shrink_unfused(np.zeros((80, 100, 3), np.uint8), 50, 60, 0, 50, 0, 60, out)


def test_cv2_area_is_generic_where_cv2_does_not_sum_whole_blocks():
    assert cv2_area_is_generic(CAMERA, (367, 1216))
    assert cv2_area_is_generic((30, 64), (20, 32))  # one whole ratio is not enough for OpenCV's block path
    assert not cv2_area_is_generic((376, 1242), (188, 621))  # both halved
    assert not cv2_area_is_generic((90, 90), (30, 30))  # both thirds: 1 / (30 / 90) is 3 up to rounding
    assert not cv2_area_is_generic(CAMERA, CAMERA)
    assert not cv2_area_is_generic(CAMERA, (376, 1216))  # taller: cv2 interpolates


class KernelCalls:
    """The real kernel, counting its calls (a double that only watches)."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, 0

    def shrink(self, *args):
        self.calls += 1
        return self.kernel.shrink(*args)


IMAGES = {  # name -> (camera image maker, whether the kernel takes it)
    "rgb8": (lambda rng, size: rng.integers(0, 256, size + (3,), dtype=np.uint8), True),
    "rgba8": (lambda rng, size: rng.integers(0, 256, size + (4,), dtype=np.uint8), True),
    "grey8": (lambda rng, size: rng.integers(0, 256, size, dtype=np.uint8), True),
    "grey8x1": (lambda rng, size: rng.integers(0, 256, size + (1,), dtype=np.uint8), True),
    "bgr8_view": (lambda rng, size: rng.integers(0, 256, size + (3,), dtype=np.uint8)[:, :, ::-1], True),
    "bgra8_view": (lambda rng, size: rng.integers(0, 256, size + (4,), dtype=np.uint8)[:, :, 2::-1], False),
    "rgb16": (lambda rng, size: rng.integers(0, 65536, size + (3,), dtype=np.uint16), False),
    "rgb32f": (lambda rng, size: rng.random(size + (3,), dtype=np.float32) * 255, False),
}


@pytest.mark.parametrize("policy", ["resize", "crop", "letterbox"])
@pytest.mark.parametrize("camera, model", [(CAMERA, MODEL), (CAMERA, (96, 320)), ((300, 400), MODEL),
                                           ((120, 400), (96, 320))])
@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_to_model_gives_the_cv2_image_with_and_without_out(policy, camera, model, kind, monkeypatch):
    """Every policy and image kind: the same array as the cv2-only path, and the same numbers written into ``out``
    (a slice of a batch buffer); the kernel runs exactly where it should."""
    make, kernel_takes_it = IMAGES[kind]
    image = make(np.random.default_rng(7), camera)
    geom = InputGeometry.build(camera, model, policy)
    calls = KernelCalls(geometry._resize_kernel) if geometry._resize_kernel is not None else None
    monkeypatch.setattr(geometry, "_resize_kernel", calls)
    reference = geom._to_model_cv2(image)
    calls_before = calls.calls if calls else 0
    model_image = geom.to_model(image)
    assert model_image.shape == reference.shape and model_image.dtype == reference.dtype
    np.testing.assert_array_equal(model_image, reference)

    buffer = np.full((2,) + model + image.shape[2:], 99, image.dtype)
    out = buffer[1]
    assert geom.to_model(image, out=out) is out
    np.testing.assert_array_equal(out.reshape(reference.shape), reference)
    assert (buffer[0] == 99).all()
    if calls is not None:
        shrinks = cv2_area_is_generic(camera, geom.scaled_size)
        assert calls.calls - calls_before == (2 if kernel_takes_it and shrinks else 0)


@pytest.mark.parametrize("policy", ["resize", "crop", "letterbox"])
def test_without_the_kernel_to_model_gives_the_same_numbers(policy, monkeypatch):
    image = np.random.default_rng(11).integers(0, 256, CAMERA + (3,), dtype=np.uint8)
    geom = InputGeometry.build(CAMERA, MODEL, policy)
    with_kernel = geom.to_model(image)
    monkeypatch.setattr(geometry, "_resize_kernel", None)
    out = np.zeros(MODEL + (3,), np.uint8)
    assert geom.to_model(image, out=out) is out
    np.testing.assert_array_equal(out, with_kernel)
    np.testing.assert_array_equal(geom.to_model(image), with_kernel)


def test_a_whole_ratio_shrink_is_left_to_cv2(monkeypatch):
    """Both sides halved: OpenCV sums whole blocks in integers there, so cv2 itself does it."""
    calls = KernelCalls(geometry._resize_kernel) if geometry._resize_kernel is not None else None
    monkeypatch.setattr(geometry, "_resize_kernel", calls)
    image = np.random.default_rng(2).integers(0, 256, (376, 1242, 3), dtype=np.uint8)
    geom = InputGeometry.build((376, 1242), (188, 621), "resize")
    np.testing.assert_array_equal(geom.to_model(image), cv2.resize(image, (621, 188), interpolation=cv2.INTER_AREA))
    assert calls is None or calls.calls == 0


@pytest.mark.parametrize("out, message", [
    (np.zeros((352, 1216, 3), np.float32), "uint8 array of shape"),
    (np.zeros((352, 1216), np.uint8), r"shape \(352, 1216, 3\)"),
    (np.zeros((367, 1216, 3), np.uint8), r"got uint8 \(367, 1216, 3\)"),
])
def test_to_model_refuses_an_out_that_does_not_fit(out, message):
    geom = InputGeometry.build(CAMERA, MODEL, "crop")
    with pytest.raises(ValueError, match=message):
        geom.to_model(np.zeros(CAMERA + (3,), np.uint8), out=out)
