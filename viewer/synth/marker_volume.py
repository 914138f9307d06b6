"""In-memory volumes with a sphere at known patient coordinates: the ground truth of the reformat tests and the
reformat benchmark, in any geometry a scanner writes (axial, gantry tilt, feet first, gaps, non-uniform steps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from viewer.dicom.geometry import build_geometry, normal_from_orientation
from viewer.dicom.volume import Volume
from viewer.synth.writer import axial_geometry

#: Value inside the sphere and outside it (HU).
SPHERE_HU = 1000.0
BACKGROUND_HU = 0.0


@dataclass(frozen=True, slots=True)
class Sphere:
    """A ball of radius ``radius`` mm centred at ``centre`` (LPS mm)."""

    centre: tuple[float, float, float]
    radius: float


def marker_volume(
    n_slices: int,
    matrix: int | tuple[int, int],
    *,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    spacing_z: float = 2.0,
    tilt_deg: float = 0.0,
    feet_first: bool = False,
    drop: Sequence[int] = (),
    steps: Sequence[float] | None = None,
    spheres: Sequence[Sphere] = (),
    dtype: type = np.float32,
) -> Volume:
    """A loaded-volume stand-in (slices sorted along the normal, true positions kept) with ``spheres`` drawn in.

    Parameters
    ----------
    feet_first:
        Orientation of a feet-first scan (row direction towards the patient's right), so the slice normal points
        to the feet and slice 0 is the most superior.
    drop:
        Slice indices (in acquisition order) left out: a gap.
    steps:
        Table positions (mm along z) of each slice instead of ``spacing_z`` apart: non-uniform spacing.
    dtype:
        The array's dtype (values are whole HU, so int16 holds them exactly).
    """
    rows, cols = (matrix, matrix) if isinstance(matrix, int) else matrix
    positions, orientation = axial_geometry(
        n_slices, spacing_z, pixel_spacing, (rows, cols), tilt_deg=tilt_deg
    )
    if steps is not None:
        positions = positions.copy()
        positions[:, 2] = np.asarray(steps, dtype=np.float64)[:n_slices]
    if feet_first:
        dy, dx = pixel_spacing
        orientation = (-1.0, 0.0, 0.0, *orientation[3:6])
        positions = positions.copy()
        positions[:, 0] = (cols - 1) / 2.0 * dx
    keep = [k for k in range(n_slices) if k not in set(drop)]
    positions = positions[keep]
    normal = normal_from_orientation(orientation)
    positions = positions[np.argsort(positions @ normal, kind="stable")]
    geometry = build_geometry(list(positions), orientation, pixel_spacing, spacing_z)
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:6])
    j = np.arange(rows, dtype=np.float64)[:, None, None] * pixel_spacing[0]
    i = np.arange(cols, dtype=np.float64)[None, :, None] * pixel_spacing[1]
    array = np.full((len(positions), rows, cols), BACKGROUND_HU, dtype=dtype)
    for k, origin in enumerate(positions if spheres else ()):
        points = origin[None, None, :] + col[None, None, :] * j + row[None, None, :] * i
        for sphere in spheres:
            inside = np.sum((points - np.asarray(sphere.centre)) ** 2, axis=-1) <= sphere.radius**2
            array[k][inside] = SPHERE_HU
    return Volume(
        array=array,
        spacing=geometry.spacing,
        origin=geometry.origin,
        orientation=geometry.orientation,
        positions=geometry.positions,
        affine=geometry.affine,
        stack_uid="1.2.826.0.1.3680043.10.1",
        series_uid="1.2.826.0.1.3680043.10.2",
        study_uid="1.2.826.0.1.3680043.10.3",
        sop_uids=[f"1.2.826.0.1.3680043.10.4.{k}" for k in range(len(positions))],
        modality="CT",
        units="HU",
        slice_thickness=spacing_z,
    )
