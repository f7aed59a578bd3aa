"""The model input's area shrink at the node's default: a 1242x375 RGB camera image shrunk to 1216x367 and cropped
to the middle 352 rows, by cv2.resize(INTER_AREA) and by InputGeometry.to_model (the compiled kernel: the same
bytes, checked here too). Median and minimum of --repeats calls each, after a few warm-up calls.

    python bench/resize.py [--repeats 200] [--json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from json_output import repeats_main  # noqa: E402

CAMERA = (375, 1242)  # (H, W), KITTI
MODEL = (352, 1216)
WARMUP = 5


def main(argv=None) -> dict:
    return repeats_main(__doc__, measure, 200, argv)


def timed(function, repeats: int) -> dict:
    """Median and minimum milliseconds of ``repeats`` calls."""
    for _ in range(WARMUP):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return {"median_ms": round(float(np.median(times)) * 1e3, 3), "min_ms": round(float(np.min(times)) * 1e3, 3)}


def measure(args: argparse.Namespace) -> dict:
    from icm_depth_ros.processing import geometry

    geom = geometry.InputGeometry.build(CAMERA, MODEL, "crop")
    (scaled_h, scaled_w), top, left = geom.scaled_size, geom.offset_y, geom.offset_x
    image = np.random.default_rng(0).integers(0, 256, CAMERA + (3,), dtype=np.uint8)
    out = np.empty(MODEL + (3,), np.uint8)

    def with_cv2():
        shrunk = cv2.resize(image, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
        return shrunk[top:top + MODEL[0], left:left + MODEL[1]]

    np.testing.assert_array_equal(geom.to_model(image, out=out), with_cv2())
    figures = {
        "cv2_inter_area": timed(with_cv2, args.repeats),
        "to_model_into_out": timed(lambda: geom.to_model(image, out=out), args.repeats),
        "to_model_new_array": timed(lambda: geom.to_model(image), args.repeats),
    }
    kernel_used = geometry._resize_kernel is not None and geometry._KERNEL_FUSED is not None
    return {
        "camera": f"{CAMERA[1]}x{CAMERA[0]}", "scaled": f"{scaled_w}x{scaled_h}", "model": f"{MODEL[1]}x{MODEL[0]}",
        "repeats": args.repeats, "cv2": cv2.__version__, "cv2_threads": cv2.getNumThreads(),
        "kernel": ("not built" if geometry._resize_kernel is None else "unmatched: cv2 used" if not kernel_used
                   else "fused multiply-adds" if geometry._KERNEL_FUSED else "unfused multiply-adds"),
        "bit_exact": True,  # checked above
        **figures,
        "speedup": round(figures["cv2_inter_area"]["median_ms"] / figures["to_model_into_out"]["median_ms"], 2),
    }


if __name__ == "__main__":
    main()
