"""Small PNG plots for report.md, drawn with OpenCV: already a node dependency (package.xml), while matplotlib is not."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WHITE, BLACK, GREY, BLUE = (255, 255, 255), (0, 0, 0), (200, 200, 200), (180, 90, 20)  # BGR
BAND = (240, 210, 170)  # light blue: the +- 1 std band
FONT = cv2.FONT_HERSHEY_SIMPLEX


def line_plot(path: Path, xs, ys, title: str, xlabel: str, ylabel: str, size=(640, 320)) -> None:
    """One polyline with axes, 5 ticks per axis and labels; writes a PNG to ``path``."""
    width, height = size
    left, right, top, bottom = 60, 15, 30, 45
    image = np.full((height, width, 3), 255, np.uint8)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    cv2.putText(image, title, (left, 20), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, xlabel, (width // 2 - 4 * len(xlabel), height - 8), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, ylabel, (4, top - 8), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), BLACK, 1)
    if xs.size:
        x0, x1 = float(xs.min()), float(xs.max())
        y0, y1 = 0.0 if ys.min() >= 0 else float(ys.min()), float(ys.max())
        x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 * 1.05 if y1 > y0 else y0 + 1.0)

        def to_pixel(x, y):
            u = left + (x - x0) / (x1 - x0) * (width - left - right)
            v = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
            return np.stack([u, v], axis=-1)

        for fraction in np.linspace(0, 1, 5):
            x, y = x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0)
            u, v = to_pixel(np.array(x), np.array(y)).astype(int)
            cv2.line(image, (u, top), (u, height - bottom), GREY, 1)
            cv2.line(image, (left, v), (width - right, v), GREY, 1)
            cv2.putText(image, f"{x:.3g}", (u - 12, height - bottom + 15), FONT, 0.35, BLACK, 1, cv2.LINE_AA)
            cv2.putText(image, f"{y:.3g}", (4, v + 4), FONT, 0.35, BLACK, 1, cv2.LINE_AA)
        points = to_pixel(xs, ys).round().astype(np.int32)
        cv2.polylines(image, [points.reshape(-1, 1, 2)], False, BLUE, 2, cv2.LINE_AA)
        for u, v in points if len(points) <= 60 else []:
            cv2.circle(image, (int(u), int(v)), 3, BLUE, -1, cv2.LINE_AA)
    else:
        cv2.putText(image, "no data", (width // 2 - 30, height // 2), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)


def band_plot(path: Path, xs, estimate, std, truth, title: str, xlabel: str, ylabel: str, y_max: float | None = None,
              size=(640, 320)) -> None:
    """An estimate over time (blue) with its +- 1 std band (light blue) against the truth (black); values
    above ``y_max`` are drawn at it (time to contact: +inf when not closing). Writes a PNG to ``path``."""
    width, height = size
    left, right, top, bottom = 60, 15, 30, 45
    image = np.full((height, width, 3), 255, np.uint8)
    xs = np.asarray(xs, np.float64)
    clip = (lambda a: np.minimum(np.asarray(a, np.float64), y_max)) if y_max is not None else (lambda a: np.asarray(a, np.float64))
    estimate, truth = clip(estimate), clip(truth)
    low, high = clip(np.asarray(estimate) - np.asarray(std)), clip(np.asarray(estimate) + np.asarray(std))
    cv2.putText(image, title + "  (black: truth, blue: estimate +- 1 std)", (left, 20), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, xlabel, (width // 2 - 4 * len(xlabel), height - 8), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, ylabel, (4, top - 8), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), BLACK, 1)
    values = np.concatenate([a[np.isfinite(a)] for a in (estimate, truth, low, high)])
    if xs.size and values.size:
        x0, x1 = float(xs.min()), float(xs.max())
        y0, y1 = min(0.0, float(values.min())), float(values.max())
        x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 * 1.05 if y1 > y0 else y0 + 1.0)

        def to_pixel(x, y):
            u = left + (np.asarray(x) - x0) / (x1 - x0) * (width - left - right)
            v = height - bottom - (np.asarray(y) - y0) / (y1 - y0) * (height - top - bottom)
            return np.stack([u, v], axis=-1)

        for fraction in np.linspace(0, 1, 5):
            x, y = x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0)
            u, v = to_pixel(x, y).astype(int)
            cv2.line(image, (u, top), (u, height - bottom), GREY, 1)
            cv2.line(image, (left, v), (width - right, v), GREY, 1)
            cv2.putText(image, f"{x:.3g}", (u - 12, height - bottom + 15), FONT, 0.35, BLACK, 1, cv2.LINE_AA)
            cv2.putText(image, f"{y:.3g}", (4, v + 4), FONT, 0.35, BLACK, 1, cv2.LINE_AA)
        shown = np.isfinite(low) & np.isfinite(high)
        for start, end in _runs(shown):  # one band polygon per stretch of frames with an estimate
            upper = to_pixel(xs[start:end], high[start:end])
            lower = to_pixel(xs[start:end], low[start:end])[::-1]
            cv2.fillPoly(image, [np.concatenate([upper, lower]).round().astype(np.int32)], BAND, cv2.LINE_AA)
        for series, colour in ((truth, BLACK), (estimate, BLUE)):
            for start, end in _runs(np.isfinite(series)):
                points = to_pixel(xs[start:end], series[start:end]).round().astype(np.int32)
                cv2.polylines(image, [points.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
    else:
        cv2.putText(image, "no data", (width // 2 - 30, height // 2), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of every run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def colorize(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """float [H, W] metres -> BGR uint8 (turbo, near = red); NaN black."""
    scaled = np.nan_to_num(np.clip(depth / max_depth, 0, 1), nan=0.0)
    image = cv2.applyColorMap((255 * (1 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)
    image[~np.isfinite(depth)] = 0
    return image


def error_map(pred: np.ndarray, gt: np.ndarray, limit: float = 0.5) -> np.ndarray:
    """|pred - gt| / gt as BGR (black 0 .. white >= ``limit``); pixels without GT dark blue."""
    relative = np.abs(pred - gt) / gt
    scaled = np.nan_to_num(np.clip(relative / limit, 0, 1), nan=0.0)
    image = cv2.applyColorMap((255 * scaled).astype(np.uint8), cv2.COLORMAP_INFERNO)
    image[~np.isfinite(relative)] = (60, 0, 0)
    return image


def _captioned(tile: np.ndarray, caption: str) -> np.ndarray:
    tile = np.ascontiguousarray(tile)
    cv2.putText(tile, caption, (5, 15), FONT, 0.45, WHITE, 3, cv2.LINE_AA)
    cv2.putText(tile, caption, (5, 15), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    return tile


def _side_by_side(tiles: list[np.ndarray]) -> np.ndarray:
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    strip = [part for tile in tiles for part in (tile, gap)][:-1]
    return np.concatenate(strip, axis=1)


def instance_overlay(rgb: np.ndarray, instances: list, max_depth: float) -> np.ndarray:
    """The image (BGR) with each instance's box, coloured by distance, labelled with its median depth."""
    image = np.ascontiguousarray(rgb[:, :, ::-1]).copy()
    for (u0, v0, u1, v1), metres in sorted(instances, key=lambda item: -item[1] if np.isfinite(item[1]) else 0):
        if not np.isfinite(metres):
            continue
        colour = tuple(int(c) for c in colorize(np.array([[metres]], np.float32), max_depth)[0, 0])
        cv2.rectangle(image, (u0, v0), (max(u0, u1 - 1), max(v0, v1 - 1)), colour, 2)
        label = f"{metres:.1f} m"
        origin = (u0, max(12, v0 - 3))
        cv2.putText(image, label, origin, FONT, 0.4, BLACK, 3, cv2.LINE_AA)
        cv2.putText(image, label, origin, FONT, 0.4, WHITE, 1, cv2.LINE_AA)
    return image


def contact_sheet(path: Path, samples: list[dict], max_depth: float) -> None:
    """One row per sample frame: image | predicted depth | instances with their distances."""
    rows = []
    for sample in samples:
        tiles = [sample["rgb"][:, :, ::-1], colorize(sample["pred"], max_depth),
                 instance_overlay(sample["rgb"], sample.get("instances", []), max_depth)]
        captions = [f"frame {sample['frame']}", f"depth (0-{max_depth:g} m)",
                    f"{len(sample.get('instances', []))} instances, median depth"]
        rows.append(_side_by_side([_captioned(t, c) for t, c in zip(tiles, captions)]))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    cv2.imwrite(str(path), np.concatenate(rows[:-1], axis=0))


def frame_panel(path: Path, sample: dict, max_depth: float) -> None:
    """image | predicted | true | error, side by side, with captions."""
    rgb, pred, gt = sample["rgb"], sample["pred"], sample["gt"]
    tiles = [rgb[:, :, ::-1], colorize(pred, max_depth), colorize(gt, max_depth), error_map(pred, gt)]
    captions = ["image", "predicted", "true", "abs rel error (0-0.5)"]
    cv2.imwrite(str(path), _side_by_side([_captioned(t, c) for t, c in zip(tiles, captions)]))


def scatter_plot(path: Path, xs, ys, title: str, xlabel: str, ylabel: str, size=(420, 420)) -> None:
    """Points (x, y) on equal axes with the diagonal y = x drawn (above it: y larger); writes a PNG."""
    width, height = size
    left, right, top, bottom = 60, 15, 46, 45  # the title and the y label on two lines above the axes
    image = np.full((height, width, 3), 255, np.uint8)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    cv2.putText(image, title, (8, 16), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, xlabel, (width // 2 - 4 * len(xlabel), height - 8), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, ylabel, (4, top - 8), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), BLACK, 1)
    if xs.size:
        low, high = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
        margin = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        low, high = low - margin, high + margin

        def to_pixel(x, y):
            u = left + (x - low) / (high - low) * (width - left - right)
            v = height - bottom - (y - low) / (high - low) * (height - top - bottom)
            return np.stack([u, v], axis=-1).round().astype(np.int32)

        for fraction in np.linspace(0, 1, 5):
            value = low + fraction * (high - low)
            u, v = to_pixel(np.array(value), np.array(value))
            cv2.line(image, (int(u), top), (int(u), height - bottom), GREY, 1)
            cv2.line(image, (left, int(v)), (width - right, int(v)), GREY, 1)
            cv2.putText(image, f"{value:.3g}", (int(u) - 12, height - bottom + 15), FONT, 0.35, BLACK, 1, cv2.LINE_AA)
            cv2.putText(image, f"{value:.3g}", (4, int(v) + 4), FONT, 0.35, BLACK, 1, cv2.LINE_AA)
        (u0, v0), (u1, v1) = to_pixel(np.array([low, high]), np.array([low, high]))
        cv2.line(image, (int(u0), int(v0)), (int(u1), int(v1)), BLACK, 1, cv2.LINE_AA)
        for u, v in to_pixel(xs, ys):
            cv2.circle(image, (int(u), int(v)), 3, BLUE, -1, cv2.LINE_AA)
    else:
        cv2.putText(image, "no data", (width // 2 - 30, height // 2), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)
