"""Image geometry between the camera image and the model input: resize, crop or letterbox, and K to match.

Every policy is an axis-aligned scale plus offset, so one ``Letterbox``-style record describes it:
a camera pixel centre (u, v) lands at model pixel (scale_x * (u + 0.5) - 0.5 - offset_x, ...).
The same record maps the depth back (``to_camera``) and the intrinsics forward (``scale_intrinsics``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_POLICIES = ("resize", "crop", "letterbox")


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

    def to_model(self, image: np.ndarray) -> np.ndarray:
        """Camera image [H, W, C] -> model-sized image [h, w, C] (area filter down, linear up; pad with 0)."""
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
