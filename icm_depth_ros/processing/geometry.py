"""Image geometry between the camera image and the model input: resize, crop or letterbox, and K to match.

Every policy is an axis-aligned scale plus offset, so one ``Letterbox``-style record describes it:
a camera pixel centre (u, v) lands at model pixel (scale_x * (u + 0.5) - 0.5 - offset_x, ...).
The same record maps the depth back (``to_camera``) and the intrinsics forward (``scale_intrinsics``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np

try:
    from icm_depth_ros.processing import _resize_kernel  # built by setup.py (colcon build, pip install)
except ImportError:  # a source tree that was never built: cv2 gives the same numbers
    _resize_kernel = None

RESIZE_POLICIES = ("resize", "crop", "letterbox")


def cv2_area_is_generic(source_size: tuple[int, int], scaled_size: tuple[int, int]) -> bool:
    """Whether cv2.resize(INTER_AREA) from (H, W) to (h, w) takes OpenCV's generic area path, the one
    _resize_kernel reproduces: no side grows, and not both ratios whole numbers (OpenCV then sums whole
    blocks in integers and rounds differently). The ratios and the test are OpenCV's (cv::hal::resize)."""
    (height, width), (scaled_h, scaled_w) = source_size, scaled_size
    if scaled_h > height or scaled_w > width:
        return False
    ratios = (1.0 / (scaled_w / width), 1.0 / (scaled_h / height))
    return not all(abs(ratio - round(ratio)) < sys.float_info.epsilon for ratio in ratios)


def rounding_probe() -> tuple[np.ndarray, tuple[int, int]]:
    """A made-up uint8 image [120, 160, 3] and the size (91, 117) to shrink it to, on which the two roundings of a
    multiply-add give different bytes (5 of them): the test that tells how a cv2 build rounds."""
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8), (91, 117)


def kernel_rounding(kernel) -> bool | None:
    """How ``kernel`` (_resize_kernel, or None) matches this cv2: True where this OpenCV build fuses its area
    filter's multiply-adds (rounds ``sum + a * b`` once; GCC on aarch64 does by default), False where it does not
    (x86-64), None where neither matches or there is no kernel (then cv2 does every shrink). Found by comparing
    both with cv2 on the rounding probe (a fused and an unfused multiply-add differ in the last bit, so only a
    few pixels in 10^5 come out different)."""
    if kernel is None:
        return None
    image, (scaled_h, scaled_w) = rounding_probe()
    expected = cv2.resize(image, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
    for fused in (False, True):
        out = np.empty_like(expected)
        kernel.shrink(image, scaled_h, scaled_w, 0, scaled_h, 0, scaled_w, out, fused)
        if np.array_equal(out, expected):
            return fused
    return None


def packed_source(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """(array, reverse): ``image`` itself, or for a channel-reversed view of a packed 3-channel image (what
    image_conversion.to_rgb makes of a bgr8 message) the packed image under it and True."""
    if image.ndim == 3 and image.shape[2] == 3 and image.strides[2] == -image.itemsize:
        return image[:, :, ::-1], True
    return image, False


def packed_rows(array: np.ndarray) -> bool:
    """Whether [H, W] or [H, W, C] holds its pixels packed within each row (C-contiguous, or rows padded): the
    layout _resize_kernel reads and writes. Strides of axes of length 1 do not matter."""
    pixel = array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    return (array.ndim == 2 or array.shape[2] == 1 or array.strides[2] == array.itemsize) and \
        (array.shape[1] == 1 or array.strides[1] == pixel) and \
        (array.shape[0] == 1 or array.strides[0] >= array.shape[1] * pixel)


_KERNEL_FUSED = kernel_rounding(_resize_kernel)  # once per process, at import: under a millisecond


@dataclass(frozen=True)
class InputGeometry:
    """How a camera image of ``camera_size`` (H, W) becomes a model input of ``model_size`` (H, W)."""

    camera_size: tuple[int, int]
    model_size: tuple[int, int]
    policy: str
    scale_x: float
    scale_y: float
    scaled_size: tuple[int, int]  # (H, W) of the camera image after scaling, before crop/pad
    offset_x: int  # >0: pixels cropped from the left; <0: padding added on the left
    offset_y: int

    @classmethod
    def build(cls, camera_size: tuple[int, int], model_size: tuple[int, int], policy: str) -> "InputGeometry":
        if policy not in RESIZE_POLICIES:
            raise ValueError(f"resize policy {policy!r} is not one of {RESIZE_POLICIES}")
        (cam_h, cam_w), (model_h, model_w) = camera_size, model_size
        if policy == "resize":
            return cls(camera_size, model_size, policy, model_w / cam_w, model_h / cam_h, model_size, 0, 0)
        pick = max if policy == "crop" else min  # crop covers the model input, letterbox fits inside it
        scale = pick(model_h / cam_h, model_w / cam_w)
        scaled_h, scaled_w = max(1, round(cam_h * scale)), max(1, round(cam_w * scale))
        # Exact scale of the rounded size, so that K and the warp agree with cv2.resize to the pixel.
        return cls(
            camera_size, model_size, policy, scaled_w / cam_w, scaled_h / cam_h, (scaled_h, scaled_w),
            (scaled_w - model_w) // 2, (scaled_h - model_h) // 2,
        )

    def to_model(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Camera image [H, W, C] or [H, W] -> model-sized image [h, w, C] (area filter down, linear up; pad with 0).

        ``out``: where to write it, an array of the image's dtype and shape [h, w] + the image's channel axis
        (e.g. a slice of a larger input buffer); returned. Without it, a new array - or a view of ``image``
        where it needs no resize - shaped as cv2 shapes it ([h, w] for a resized [H, W, 1]).

        A uint8 image of 1, 3 or 4 channels that shrinks goes through _resize_kernel where it is built and cv2
        takes its generic area path: only the rows and columns the model sees, written straight into ``out``,
        the same numbers as cv2.
        """
        model_h, model_w = self.model_size
        if out is not None and (out.shape != (model_h, model_w) + image.shape[2:] or out.dtype != image.dtype):
            raise ValueError(f"out must be a {image.dtype} array of shape {(model_h, model_w) + image.shape[2:]} "
                             f"for a {image.dtype} image of shape {image.shape}, got {out.dtype} {out.shape}")
        source, reverse = packed_source(image)  # a BGR camera image seen as RGB: its own packed bytes
        if self._kernel_shrinks(source) and (out is None or packed_rows(out)):
            model = np.empty((model_h, model_w) + image.shape[2:], np.uint8) if out is None else out
            self._shrink_into(source, model, reverse)
            if out is None and image.ndim == 3 and image.shape[2] == 1:
                return model[:, :, 0]  # as cv2.resize returns a single channel
            return model
        model = self._to_model_cv2(image)
        if out is None:
            return model
        out[...] = model.reshape(out.shape)
        return out

    def _kernel_shrinks(self, image: np.ndarray) -> bool:
        """Whether _resize_kernel gives cv2's numbers for this image: built and matching this cv2, a uint8 image of
        1, 3 or 4 channels in packed rows, and cv2's generic area path."""
        return (_resize_kernel is not None and _KERNEL_FUSED is not None and image.dtype == np.uint8
                and image.ndim in (2, 3) and (image.ndim == 2 or image.shape[2] in (1, 3, 4)) and packed_rows(image)
                and cv2_area_is_generic(image.shape[:2], self.scaled_size))

    def _shrink_into(self, image: np.ndarray, model: np.ndarray, reverse: bool = False) -> None:
        """The part of the scaled image that lands in ``model``, by the kernel, and 0 around it (letterbox);
        ``reverse``: ``model`` gets ``image``'s 3 channels in the opposite order."""
        (model_h, model_w), (scaled_h, scaled_w) = self.model_size, self.scaled_size
        row0, col0 = max(0, self.offset_y), max(0, self.offset_x)
        row1, col1 = min(scaled_h, self.offset_y + model_h), min(scaled_w, self.offset_x + model_w)
        top, left = row0 - self.offset_y, col0 - self.offset_x
        bottom, right = top + row1 - row0, left + col1 - col0
        _resize_kernel.shrink(image, scaled_h, scaled_w, row0, row1, col0, col1, model[top:bottom, left:right],
                              _KERNEL_FUSED, reverse)
        if (bottom - top, right - left) != (model_h, model_w):
            model[:top] = 0
            model[bottom:] = 0
            model[top:bottom, :left] = 0
            model[top:bottom, right:] = 0

    def _to_model_cv2(self, image: np.ndarray) -> np.ndarray:
        """to_model by cv2 alone: the reference the kernel matches, and every case it does not cover."""
        scaled_h, scaled_w = self.scaled_size
        shrinking = scaled_h * scaled_w < image.shape[0] * image.shape[1]
        if (scaled_h, scaled_w) != image.shape[:2]:
            image = cv2.resize(image, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        if self.policy == "crop":
            model_h, model_w = self.model_size
            return image[self.offset_y:self.offset_y + model_h, self.offset_x:self.offset_x + model_w]
        if self.policy == "letterbox" and (scaled_h, scaled_w) != self.model_size:
            model_h, model_w = self.model_size
            top, left = -self.offset_y, -self.offset_x
            return cv2.copyMakeBorder(image, top, model_h - scaled_h - top, left, model_w - scaled_w - left,
                                      cv2.BORDER_CONSTANT, value=0)
        return image

    def camera_to_model_affine(self) -> np.ndarray:
        """[2, 3] affine taking camera pixel coordinates to model pixel coordinates (pixel-centre convention)."""
        return np.array([
            [self.scale_x, 0.0, 0.5 * self.scale_x - 0.5 - self.offset_x],
            [0.0, self.scale_y, 0.5 * self.scale_y - 0.5 - self.offset_y],
        ])

    def model_window(self) -> tuple[float, float, float, float]:
        """Model-pixel box (u0, v0, u1, v1), edges inclusive, that holds camera content (not letterbox padding)."""
        model_h, model_w = self.model_size
        scaled_h, scaled_w = self.scaled_size
        u0, v0 = max(-0.5, -self.offset_x - 0.5), max(-0.5, -self.offset_y - 0.5)
        u1 = min(model_w - 0.5, scaled_w - self.offset_x - 0.5)
        v1 = min(model_h - 0.5, scaled_h - self.offset_y - 0.5)
        return u0, v0, u1, v1

    def to_camera(self, model_map: np.ndarray, nearest: bool = False, fill=np.nan) -> np.ndarray:
        """Model-sized map [h, w] (or a 1/k version of it) -> camera geometry [H, W]; ``fill`` outside the crop."""
        cam_h, cam_w = self.camera_size
        model_h, model_w = self.model_size
        ratio_x, ratio_y = model_map.shape[1] / model_w, model_map.shape[0] / model_h  # 1/4 for membership maps
        affine = self.camera_to_model_affine()
        affine = affine * np.array([[ratio_x], [ratio_y]])
        affine[:, 2] += 0.5 * np.array([ratio_x, ratio_y]) - 0.5  # re-centre pixels at the coarser grid
        flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
        out = cv2.warpAffine(model_map, affine, (cam_w, cam_h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        # Camera pixels whose model position lies outside the content window have no estimate.
        u0, v0, u1, v1 = self.model_window()
        u_model = self.scale_x * (np.arange(cam_w) + 0.5) - 0.5 - self.offset_x
        v_model = self.scale_y * (np.arange(cam_h) + 0.5) - 0.5 - self.offset_y
        outside_u = (u_model < u0) | (u_model > u1)
        outside_v = (v_model < v0) | (v_model > v1)
        if outside_u.any() or outside_v.any():
            # A Python fill is a weak scalar (NEP 50): NaN keeps a float32 map float32, no 8-byte copy.
            out = out.astype(np.result_type(out.dtype, fill), copy=False)
            out[:, outside_u] = fill
            out[outside_v, :] = fill
        return out

    def labels_to_model(self, labels: np.ndarray) -> np.ndarray:
        """Camera-sized label image [H, W] (any integer type) -> model grid, nearest pixel; 0 in padding."""
        cam_h, cam_w = self.camera_size
        model_h, model_w = self.model_size
        cols = np.floor((np.arange(model_w) + 0.5 + self.offset_x) / self.scale_x).astype(np.int64)
        rows = np.floor((np.arange(model_h) + 0.5 + self.offset_y) / self.scale_y).astype(np.int64)
        keep_c, keep_r = (cols >= 0) & (cols < cam_w), (rows >= 0) & (rows < cam_h)
        out = np.zeros((model_h, model_w), dtype=labels.dtype)
        out[np.ix_(keep_r, keep_c)] = labels[np.ix_(rows[keep_r], cols[keep_c])]
        return out

    def scale_intrinsics(self, K: np.ndarray) -> np.ndarray:
        """Camera K [3, 3] (or P [3, 4]) -> the same for the model-sized image (pixel-centre convention)."""
        K_model = np.array(K, dtype=np.float64, copy=True)
        K_model[0, :] *= self.scale_x
        K_model[1, :] *= self.scale_y
        K_model[0, 2] += 0.5 * self.scale_x - 0.5 - self.offset_x
        K_model[1, 2] += 0.5 * self.scale_y - 0.5 - self.offset_y
        return K_model
