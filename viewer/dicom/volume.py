"""A stack loaded into memory: one array in modality units with its true geometry beside it.

Like highdicom's ``Volume``, the array never travels without its affine. Display transforms (VOI window,
MONOCHROME1 inversion) are metadata here and applied by :mod:`viewer.dicom.pixels` at display time, so the values
stay the measured ones (HU for CT).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.dicom.geometry import normal_from_orientation
from viewer.dicom.identifiers import SeriesIdentifiers


@dataclass(slots=True)
class Volume:
    """One stack in memory, indexed ``[slice, row, column]`` (z, y, x).

    ``array`` holds the modality values (HU for CT) of greyscale images, in the narrowest integer type that holds
    them exactly (int8, uint8, int16, uint16 or int32: int16 for nearly every CT) when the modality transform
    keeps integers, otherwise float32 (a fractional rescale slope or intercept, slices whose transforms differ);
    :mod:`viewer.dicom.modality_dtype` says how the type is chosen. Code that computes with the values converts
    them (``np.asarray(volume.array, dtype=np.float32)``); integer arithmetic in the array's own type can wrap.
    Colour images are (z, y, x, 3) uint8 RGB (``is_colour``).
    Slice ``k`` lies at ``positions[k]`` (LPS, mm); slice 0 has the smallest position along the normal.
    ``affine`` maps (k, j, i) to patient coordinates; for a tilted stack its slice column is the real step
    between slices, not the normal, so patient coordinates stay true. ``spacing[0]`` is the slice spacing
    measured along the normal. ``identifiers`` holds the patient, study and series attributes of the headers.
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
    identifiers: SeriesIdentifiers = field(default_factory=SeriesIdentifiers)
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)  # (file, frame) per slice
    reader: str = ""
    decoders: tuple[str, ...] = ()

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return int(self.array.nbytes)

    @property
    def n_slices(self) -> int:
        """Number of slices."""
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array."""
        return tuple(self.array.shape)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (row × column direction cosines)."""
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
