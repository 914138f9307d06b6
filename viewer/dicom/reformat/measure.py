"""Measurement math on reformatted (or acquired) planes, in mm of the true geometry (Qt-free).

Shapes are given in a plane's fractional pixel coordinates (row, col), as a viewer's mouse gives them; lengths go
through patient coordinates (:meth:`~viewer.dicom.reformat.planes.PlaneGrid.patient_of`), so they hold for any
plane and pixel aspect. ROI statistics take the pixels whose centres lie inside the shape and skip NaN (outside
the stack, a gap). Areas are the shape's own (shoelace / πab / width × height), not a pixel count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from viewer.dicom.reformat.planes import PlaneGrid

Pixel = tuple[float, float]  # (row, col), fractional


@dataclass(frozen=True, slots=True)
class RoiStats:
    """Statistics of the values inside an ROI (NaN when no pixel is inside), its area (mm²) and pixel count."""

    mean: float
    sd: float
    minimum: float
    maximum: float
    area_mm2: float
    pixels: int


def distance_mm(grid: PlaneGrid, a: Pixel, b: Pixel) -> float:
    """Length (mm) of the line from pixel ``a`` to pixel ``b`` of a plane."""
    return float(np.linalg.norm(grid.patient_of(*b) - grid.patient_of(*a)))


def angle_deg(grid: PlaneGrid, a: Pixel, vertex: Pixel, b: Pixel) -> float:
    """The angle (degrees, 0–180) at ``vertex`` between the lines to ``a`` and ``b``."""
    u = grid.patient_of(*a) - grid.patient_of(*vertex)
    v = grid.patient_of(*b) - grid.patient_of(*vertex)
    norms = float(np.linalg.norm(u) * np.linalg.norm(v))
    if norms == 0.0:
        raise ValueError("an angle needs three distinct points")
    return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v) / norms))))


def _centres(grid: PlaneGrid) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(grid.height, dtype=np.float64)[:, None]
    cols = np.arange(grid.width, dtype=np.float64)[None, :]
    return rows, cols


def rectangle_mask(grid: PlaneGrid, a: Pixel, b: Pixel) -> np.ndarray:
    """Pixels whose centres lie in the axis-aligned rectangle with corners ``a`` and ``b``."""
    rows, cols = _centres(grid)
    (r0, r1), (c0, c1) = sorted((a[0], b[0])), sorted((a[1], b[1]))
    return (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)


def ellipse_mask(grid: PlaneGrid, a: Pixel, b: Pixel) -> np.ndarray:
    """Pixels whose centres lie in the ellipse inscribed in the rectangle with corners ``a`` and ``b`` (in mm: the
    ellipse is round on screen whatever the pixel aspect)."""
    rows, cols = _centres(grid)
    cy, cx = (a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0
    ry, rx = abs(a[0] - b[0]) / 2.0 * grid.dy, abs(a[1] - b[1]) / 2.0 * grid.dx
    if ry == 0 or rx == 0:
        return np.zeros(grid.shape, dtype=bool)
    return ((rows - cy) * grid.dy / ry) ** 2 + ((cols - cx) * grid.dx / rx) ** 2 <= 1.0


def polygon_mask(grid: PlaneGrid, vertices: Sequence[Pixel]) -> np.ndarray:
    """Pixels whose centres lie inside the polygon (even-odd rule)."""
    rows, cols = _centres(grid)
    inside = np.zeros(grid.shape, dtype=bool)
    points = list(vertices)
    for (r0, c0), (r1, c1) in zip(points, points[1:] + points[:1], strict=True):
        if r0 == r1:
            continue
        crosses = (rows > min(r0, r1)) & (rows <= max(r0, r1))
        at = c0 + (rows - r0) * (c1 - c0) / (r1 - r0)
        inside ^= crosses & (cols < at)
    return inside


def polygon_area_mm2(grid: PlaneGrid, vertices: Sequence[Pixel]) -> float:
    """Shoelace area (mm²) of a polygon given in pixels."""
    r = np.asarray([v[0] for v in vertices], dtype=np.float64) * grid.dy
    c = np.asarray([v[1] for v in vertices], dtype=np.float64) * grid.dx
    return float(abs(np.dot(c, np.roll(r, -1)) - np.dot(r, np.roll(c, -1))) / 2.0)


def roi_stats(data: np.ndarray, mask: np.ndarray, area_mm2: float) -> RoiStats:
    """Mean, SD (population), min and max of ``data`` inside ``mask`` (NaN skipped)."""
    values = np.asarray(data, dtype=np.float64)[mask]
    values = values[~np.isnan(values)]
    if not len(values):
        nan = float("nan")
        return RoiStats(nan, nan, nan, nan, float(area_mm2), 0)
    return RoiStats(
        float(values.mean()),
        float(values.std()),
        float(values.min()),
        float(values.max()),
        float(area_mm2),
        int(len(values)),
    )


def rectangle_stats(data: np.ndarray, grid: PlaneGrid, a: Pixel, b: Pixel) -> RoiStats:
    """Statistics of a rectangle ROI; area = width × height in mm."""
    area = abs(a[0] - b[0]) * grid.dy * abs(a[1] - b[1]) * grid.dx
    return roi_stats(data, rectangle_mask(grid, a, b), area)


def ellipse_stats(data: np.ndarray, grid: PlaneGrid, a: Pixel, b: Pixel) -> RoiStats:
    """Statistics of an ellipse ROI; area = π · a · b in mm."""
    area = math.pi * abs(a[0] - b[0]) / 2.0 * grid.dy * abs(a[1] - b[1]) / 2.0 * grid.dx
    return roi_stats(data, ellipse_mask(grid, a, b), area)


def polygon_stats(data: np.ndarray, grid: PlaneGrid, vertices: Sequence[Pixel]) -> RoiStats:
    """Statistics of a polygon ROI; area by the shoelace formula in mm."""
    return roi_stats(data, polygon_mask(grid, vertices), polygon_area_mm2(grid, vertices))
