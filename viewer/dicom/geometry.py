"""Slice geometry: normals, ordering along the normal, and what is wrong with a stack's spacing.

Ordering follows 3D Slicer's ``getSortedImageFiles`` and highdicom's ``get_series_volume_positions``: positions
are projected on the normal of ImageOrientationPatient (row × column cosines) and sorted by that distance, never
by file name or InstanceNumber. What does not fit a regular grid is reported, not hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Two orientations are "the same" when their cosines differ by less than this (about 0.6 degrees).
ORIENTATION_TOLERANCE = 1e-2
# Relative tolerance on slice spacing before it is called non-uniform.
SPACING_REL_TOLERANCE = 0.05
# A tilt below this angle (degrees) is numerical noise, not a gantry tilt.
TILT_TOLERANCE_DEG = 0.5
IDENTITY_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True, slots=True)
class GeometryWarning:
    """Something about a stack's geometry that the user should know; ``kind`` is a stable key."""

    kind: str  # "gap" | "nonuniform" | "duplicate" | "tilt" | "no_geometry" | "single"
    message: str


@dataclass(slots=True)
class StackGeometry:
    """Result of ordering positions along a normal.

    ``order`` maps sorted index → input index; ``distances`` are the sorted positions along the normal (mm).
    """

    order: np.ndarray
    distances: np.ndarray
    spacing: float | None
    tilt_deg: float = 0.0
    warnings: list[GeometryWarning] = field(default_factory=list)

    @property
    def uniform(self) -> bool:
        """True when no gap, non-uniform spacing or duplicate position was found."""
        return not any(w.kind in ("gap", "nonuniform", "duplicate") for w in self.warnings)


def normal_from_orientation(orientation: Sequence[float]) -> np.ndarray:
    """Unit slice normal (row cosine × column cosine) for a 6-value ImageOrientationPatient."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:6], dtype=float)
    n = np.cross(row, col)
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError("ImageOrientationPatient has parallel row and column cosines")
    return n / norm


def orientation_key(orientation: Sequence[float] | None) -> tuple[int, ...] | None:
    """A hashable key equal for orientations within :data:`ORIENTATION_TOLERANCE`."""
    if orientation is None:
        return None
    return tuple(int(round(v / ORIENTATION_TOLERANCE)) for v in orientation)


def same_orientation(a: Sequence[float], b: Sequence[float], tol: float = ORIENTATION_TOLERANCE) -> bool:
    """Whether two ImageOrientationPatient values agree within ``tol`` (per direction cosine)."""
    return bool(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) < tol)


def order_along_normal(positions: np.ndarray, orientation: Sequence[float]) -> StackGeometry:
    """Sort slices by their position along the normal and check the spacing.

    Parameters
    ----------
    positions:
        (n, 3) ImagePositionPatient of each slice (mm).
    orientation:
        The stack's ImageOrientationPatient.
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    normal = normal_from_orientation(orientation)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    distances = along[order]
    warnings: list[GeometryWarning] = []
    n = len(order)
    if n < 2:
        return StackGeometry(order, distances, None, 0.0, [GeometryWarning("single", "single slice")])

    steps = np.diff(distances)
    duplicates = int(np.sum(steps < 1e-3))
    if duplicates:
        warnings.append(
            GeometryWarning(
                "duplicate", f"{duplicates} slice(s) share a position with another slice; kept in file order"
            )
        )
    positive = steps[steps >= 1e-3]
    spacing = float(np.median(positive)) if len(positive) else None
    if spacing:
        gap_idx = np.nonzero(steps > spacing * 1.5)[0]
        if len(gap_idx):
            missing = int(sum(round(steps[i] / spacing) - 1 for i in gap_idx))
            where = ", ".join(f"{distances[i]:.1f}–{distances[i + 1]:.1f} mm" for i in gap_idx[:3])
            warnings.append(
                GeometryWarning(
                    "gap", f"about {missing} missing slice(s) (gap at {where}); shown at true positions"
                )
            )
        regular = positive[positive <= spacing * 1.5]
        if len(regular) and (regular.max() - regular.min()) > SPACING_REL_TOLERANCE * spacing:
            warnings.append(
                GeometryWarning(
                    "nonuniform",
                    f"slice spacing varies from {regular.min():.2f} to {regular.max():.2f} mm",
                )
            )

    tilt = tilt_angle(positions[order], orientation)
    if tilt > TILT_TOLERANCE_DEG:
        warnings.append(
            GeometryWarning("tilt", f"gantry tilt of {tilt:.1f}°: slices are sheared, not stacked squarely")
        )
    return StackGeometry(order, distances, spacing, tilt, warnings)


def tilt_angle(sorted_positions: np.ndarray, orientation: Sequence[float]) -> float:
    """Angle (degrees) between the first-to-last slice direction and the slice normal; 0 for a square stack."""
    p = np.asarray(sorted_positions, dtype=float)
    if len(p) < 2:
        return 0.0
    step = p[-1] - p[0]
    length = np.linalg.norm(step)
    if length < 1e-6:
        return 0.0
    cos = abs(float(np.dot(step / length, normal_from_orientation(orientation))))
    return math.degrees(math.acos(min(1.0, cos)))


def affine_from(
    origin: Sequence[float], orientation: Sequence[float], spacing: Sequence[float]
) -> np.ndarray:
    """4×4 voxel (k, j, i) → patient LPS (mm) matrix for a volume indexed [slice, row, column].

    ``spacing`` is (slice spacing along the normal, row spacing, column spacing).
    """
    row = np.asarray(orientation[:3], float)  # direction of increasing column index
    col = np.asarray(orientation[3:6], float)  # direction of increasing row index
    normal = normal_from_orientation(orientation)
    a = np.eye(4)
    a[:3, 0] = normal * spacing[0]
    a[:3, 1] = col * spacing[1]
    a[:3, 2] = row * spacing[2]
    a[:3, 3] = np.asarray(origin, float)
    return a


_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # positive / negative direction of LPS axes


def direction_letters(vector: Sequence[float], max_letters: int = 2, threshold: float = 0.25) -> str:
    """Patient-direction letters a vector points to, strongest first (e.g. ``"L"`` or ``"AS"`` for oblique).

    Radiology convention on LPS: +x = L, +y = P, +z = S.
    """
    v = np.asarray(vector, float)
    norm = np.linalg.norm(v)
    if norm < 1e-9:
        return ""
    v = v / norm
    order = np.argsort(-np.abs(v))
    letters = []
    for axis in order[:max_letters]:
        if abs(v[axis]) < threshold and letters:
            break
        letters.append(_LETTERS[axis][0] if v[axis] > 0 else _LETTERS[axis][1])
    return "".join(letters)


@dataclass(slots=True)
class VolumeGeometry:
    """Geometry of the loaded slices (what :class:`~viewer.dicom.volume.Volume` holds), with its warnings."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    positions: np.ndarray
    affine: np.ndarray
    warnings: list[GeometryWarning]


def build_geometry(
    positions: Sequence[Sequence[float] | None],
    orientation: Sequence[float] | None,
    pixel_spacing: tuple[float, float] | None,
    slice_thickness: float | None,
    *,
    check: bool = True,
) -> VolumeGeometry:
    """Geometry of slices already in display order.

    Parameters
    ----------
    positions:
        ImagePositionPatient per slice (``None`` where unknown).
    orientation:
        The stack's ImageOrientationPatient, or ``None`` (CR/DX/US, secondary capture).
    pixel_spacing:
        (row spacing, column spacing) in mm.
    slice_thickness:
        Used as the slice step when positions cannot give one.
    check:
        Run the spacing checks (gap, non-uniform, tilt, duplicates) again, e.g. after slices were skipped.
    """
    n = len(positions)
    warnings: list[GeometryWarning] = []
    dy, dx = pixel_spacing if pixel_spacing else (1.0, 1.0)
    fallback_dz = float(slice_thickness) if slice_thickness and slice_thickness > 0 else 1.0
    orient = tuple(float(v) for v in orientation) if orientation is not None else IDENTITY_ORIENTATION
    try:
        normal = normal_from_orientation(orient)
    except ValueError:
        warnings.append(
            GeometryWarning("no_geometry", "invalid orientation: shown with identity orientation")
        )
        orient = IDENTITY_ORIENTATION
        normal = normal_from_orientation(orient)

    known = orientation is not None and n > 0 and all(p is not None for p in positions)
    if not known:
        start = np.asarray(positions[0], float) if n and positions[0] is not None else np.zeros(3)
        pos = start + np.arange(n)[:, None] * normal[None, :] * fallback_dz
        dz = fallback_dz
        step = normal * dz
    else:
        pos = np.asarray(positions, dtype=float).reshape(n, 3)
        dz = fallback_dz
        step = normal * dz
        if n > 1:
            geo = order_along_normal(pos, orient)
            if check:
                warnings.extend(w for w in geo.warnings if w.kind != "single")
            if geo.spacing:
                dz = float(geo.spacing)
            span = float((pos[-1] - pos[0]) @ normal)
            if span > 1e-6:
                # The real step between slices: along first→last, scaled so its normal component is dz.
                step = (pos[-1] - pos[0]) * (dz / span)
            else:
                step = normal * dz
    origin = tuple(float(v) for v in pos[0]) if n else (0.0, 0.0, 0.0)
    affine = affine_from(origin, orient, (dz, dy, dx))
    affine[:3, 0] = step
    return VolumeGeometry(
        spacing=(float(dz), float(dy), float(dx)),
        origin=origin,  # type: ignore[arg-type]
        orientation=orient,  # type: ignore[arg-type]
        positions=pos,
        affine=affine,
        warnings=warnings,
    )
