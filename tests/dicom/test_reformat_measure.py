"""Measurements in mm of the true geometry: lengths, angles, ROI statistics and areas against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from viewer.dicom.reformat import PlaneKind, Reformatter
from viewer.dicom.reformat.measure import (
    angle_deg,
    distance_mm,
    ellipse_stats,
    polygon_area_mm2,
    polygon_stats,
    rectangle_stats,
)
from viewer.synth.marker_volume import SPHERE_HU, Sphere, marker_volume


@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_sphere_diameter_and_mean_in_a_coronal_reformat(tilt: float) -> None:
    sphere = Sphere((2.0, 1.0, 30.0), 9.0)
    volume = marker_volume(30, 64, pixel_spacing=(0.7, 0.6), spacing_z=2.0, tilt_deg=tilt, spheres=[sphere])
    reformat = Reformatter.of(volume)
    depth = reformat.layout.snap(PlaneKind.CORONAL, sphere.centre[1])
    image = reformat.plane(volume.array, PlaneKind.CORONAL, depth)
    grid = image.grid
    row, col = grid.pixel_of(np.asarray(sphere.centre))
    bright = np.nan_to_num(image.data[round(row)]) > SPHERE_HU / 2
    cols = np.nonzero(bright)[0]
    # Across the sphere's equator: the bright run's edges, measured as a line, are its diameter (± a pixel).
    width = distance_mm(grid, (row, cols.min() - 0.5), (row, cols.max() + 0.5))
    assert width == pytest.approx(
        2 * math.sqrt(sphere.radius**2 - (depth - sphere.centre[1]) ** 2), abs=grid.dx
    )
    # An ellipse well inside the sphere reads its HU exactly; one outside reads the background.
    half_r, half_c = 4.0 / grid.dy, 4.0 / grid.dx  # a 4 mm radius circle, whatever the pixel aspect
    inside = ellipse_stats(image.data, grid, (row - half_r, col - half_c), (row + half_r, col + half_c))
    assert inside.mean == pytest.approx(SPHERE_HU, abs=1.0) and inside.sd == pytest.approx(0.0, abs=1.0)
    assert inside.area_mm2 == pytest.approx(math.pi * 16.0, rel=1e-6)
    assert inside.pixels * grid.dx * grid.dy == pytest.approx(inside.area_mm2, rel=0.15)


def test_rectangle_polygon_and_angle_in_mm() -> None:
    volume = marker_volume(4, 20, pixel_spacing=(0.5, 0.25), spacing_z=1.0)
    volume.array[:] = np.arange(20, dtype=np.float32)[None, None, :]  # value = column
    reformat = Reformatter.of(volume)
    image = reformat.plane(volume.array, PlaneKind.AXIAL, reformat.layout.depths(PlaneKind.AXIAL)[1])
    grid = image.grid
    stats = rectangle_stats(image.data, grid, (2, 4), (6, 8))
    assert (stats.minimum, stats.maximum, stats.mean) == (4.0, 8.0, 6.0)
    assert stats.area_mm2 == pytest.approx(4 * 0.5 * 4 * 0.25)
    assert stats.pixels == 5 * 5
    triangle = [(0.0, 0.0), (0.0, 8.0), (4.0, 0.0)]
    assert polygon_area_mm2(grid, triangle) == pytest.approx(0.5 * 8 * 0.25 * 4 * 0.5)
    assert polygon_stats(image.data, grid, triangle).maximum < 8.0
    # 4 px down (2 mm) and 8 px across (2 mm): a right angle, and 45° to the diagonal, in mm not pixels.
    assert angle_deg(grid, (4.0, 0.0), (0.0, 0.0), (0.0, 8.0)) == pytest.approx(90.0)
    assert angle_deg(grid, (4.0, 8.0), (0.0, 0.0), (0.0, 8.0)) == pytest.approx(45.0)
    assert distance_mm(grid, (0.0, 0.0), (4.0, 8.0)) == pytest.approx(math.hypot(2.0, 2.0))
    with pytest.raises(ValueError):
        angle_deg(grid, (1.0, 1.0), (1.0, 1.0), (2.0, 2.0))


def test_probe_and_empty_roi() -> None:
    volume = marker_volume(6, 16, spacing_z=2.0, drop=(2, 3))
    volume.array[:] = 40.0
    reformat = Reformatter.of(volume)
    assert reformat.value_at(volume.array, reformat.slice_point(0)) == pytest.approx(40.0)
    assert reformat.value_at(volume.array, np.array([0.0, 0.0, 6.0])) is None  # in the gap
    image = reformat.plane(volume.array, PlaneKind.CORONAL, reformat.layout.snap(PlaneKind.CORONAL, 0.0))
    rows = np.nonzero(np.isnan(image.data[:, 0]))[0]
    stats = rectangle_stats(image.data, image.grid, (rows.min(), 0), (rows.max(), 3))
    assert stats.pixels == 0 and math.isnan(stats.mean)
