"""A stack loaded into memory: one array in modality units with its true geometry beside it.

Like highdicom's ``Volume``, the array never travels without its affine. Display transforms (VOI window,
MONOCHROME1 inversion) are metadata here and applied by :mod:`viewer.dicom.pixels` at display time, so the values
stay the measured ones (HU for CT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from viewer.dicom.geometry import (
    GeometryWarning,
    affine_from,
    normal_from_orientation,
    order_along_normal,
)
from viewer.dicom.stacks import Stack
from viewer.progress import CancelFn, ProgressFn

SliceFn = Callable[[int, np.ndarray], None]

IDENTITY_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(slots=True)
class Volume:
    """One stack in memory, indexed ``[slice, row, column]`` (z, y, x).

    ``array`` is float32 modality values (HU for CT) for greyscale images and (z, y, x, 3) uint8 RGB for colour.
    Slice ``k`` lies at ``positions[k]`` (LPS, mm); slice 0 has the smallest position along the normal.
    ``affine`` maps (k, j, i) to patient coordinates; for a tilted stack its slice column is the real step
    between slices, not the normal, so patient coordinates stay true. ``spacing[0]`` is the slice spacing
    measured along the normal.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    positions: np.ndarray
    affine: np.ndarray
    stack_uid: str
    series_uid: str
    study_uid: str
    sop_uids: list[str]
    modality: str = ""
    units: str = ""
    window: tuple[float, float] = (40.0, 80.0)
    invert: bool = False
    is_colour: bool = False
    slice_thickness: float | None = None
    meta: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)  # (file, frame) per slice
    reader: str = ""
    decoders: tuple[str, ...] = ()

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    @property
    def n_slices(self) -> int:
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def normal(self) -> np.ndarray:
        return normal_from_orientation(self.orientation)

    def _slice_point(self, k: float) -> np.ndarray:
        """Position of (fractional) slice ``k``: interpolated between true slice positions, extrapolated with
        the affine's step outside the stack (a gap stays a gap)."""
        n = len(self.positions)
        if n == 0:
            return np.asarray(self.origin, float) + self.affine[:3, 0] * k
        if 0 <= k <= n - 1:
            lo = int(np.floor(k))
            hi = min(lo + 1, n - 1)
            t = k - lo
            return (1 - t) * self.positions[lo] + t * self.positions[hi]
        if k < 0:
            return self.positions[0] + self.affine[:3, 0] * k
        return self.positions[-1] + self.affine[:3, 0] * (k - (n - 1))

    def voxel_to_patient(self, k: float, j: float, i: float) -> np.ndarray:
        """Patient coordinates (LPS, mm) of voxel (slice k, row j, column i); exact at every slice of a stack
        with gaps, where the affine alone would assume uniform spacing."""
        row = np.asarray(self.orientation[:3], float)
        col = np.asarray(self.orientation[3:6], float)
        return self._slice_point(k) + col * (j * self.spacing[1]) + row * (i * self.spacing[2])

    def slice_position_mm(self, k: float) -> float:
        """Position of slice ``k`` along the slice normal (mm), as shown in the viewer's annotation."""
        return float(self._slice_point(k) @ self.normal)


@dataclass(slots=True)
class VolumeGeometry:
    """Geometry of the loaded slices (what :class:`Volume` holds), with its warnings."""

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


def load_stack(
    stack: Stack,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    on_slice: SliceFn | None = None,
    reader: str = "auto",
    workers: int | None = None,
) -> Volume:
    """Load one stack into a :class:`Volume`.

    Parameters
    ----------
    stack:
        From :func:`viewer.dicom.stacks.split_series` (slices already in display order).
    progress:
        ``progress(done, total, text)`` after each slice.
    cancel:
        Checked between slices; when it returns True the load stops with :class:`~viewer.errors.CancelledError`.
    on_slice:
        ``on_slice(k, slice_array)`` as each slice is ready, in display order, so a viewer can show the first
        slices at once. ``slice_array`` is a view into the volume being filled: copy it to keep it. ``k`` is the
        index in ``stack.slices``; if a damaged slice is skipped, the final volume has fewer slices.
    reader:
        ``"auto"`` or ``"pydicom"`` (ours: decoder chosen per transfer syntax, direct reads, one preallocated
        array) or ``"simpleitk"`` (``ImageSeriesReader`` on the same file order).
    workers:
        Threads for decoders that release the GIL (default: up to 4).

    Raises
    ------
    ViewerError
        When no slice of the stack can be loaded, naming the series and why.
    CancelledError
        When ``cancel()`` returned True.
    """
    from viewer.dicom.readers import get_reader

    name = "pydicom" if reader == "auto" else reader
    return get_reader(name, workers=workers).read(stack, progress=progress, cancel=cancel, on_slice=on_slice)
