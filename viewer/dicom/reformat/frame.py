"""Where every acquired slice lies in the patient: the frame the reformats sample in.

A CT stack is a set of parallel planes: slice ``k`` has its top-left pixel centre at ``positions[k]`` (LPS, mm),
its rows along ``row`` and its columns along ``col`` (ImageOrientationPatient). The stack is sorted along the
slice normal, but the step between slices need not be uniform (a gap, a change of increment) nor parallel to the
normal (a gantry tilt shears the stack). Nothing here assumes either: a patient point is found in the stack by its
distance along the normal, interpolated between the two true neighbouring positions, and inside a slice by its
own position. A gap is a gap: a point farther than half a slice spacing from both slices around a gap lies in no
slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from viewer.dicom.geometry import normal_from_orientation
from viewer.dicom.volume import Volume

#: A step between slices more than this times the median step is a gap (as :mod:`viewer.dicom.geometry` says).
GAP_FACTOR = 1.5


@dataclass(frozen=True, slots=True)
class SliceFrame:
    """The acquired slices' geometry: positions sorted along the normal, in-plane directions and pixel size.

    ``row`` is the direction of increasing column index ``i`` and ``col`` the direction of increasing row index
    ``j``; ``dy``/``dx`` are the row/column pixel spacings. ``distances`` are the positions along ``normal``
    (ascending), ``spacing`` their median step and ``gap_after[k]`` whether slices ``k`` and ``k + 1`` lie more
    than :data:`GAP_FACTOR` spacings apart.
    """

    positions: np.ndarray
    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    dy: float
    dx: float
    rows: int
    cols: int
    distances: np.ndarray
    spacing: float
    gap_after: np.ndarray

    @classmethod
    def from_volume(cls, volume: Volume) -> SliceFrame:
        """The frame of a loaded greyscale volume (``array`` indexed ``[slice, row, column]``)."""
        n, rows, cols = (int(s) for s in volume.array.shape[:3])
        positions = np.asarray(volume.positions, dtype=np.float64).reshape(-1, 3)
        if len(positions) != n:  # no per-slice positions: the affine's regular steps
            positions = (
                np.asarray(volume.origin, float)[None, :]
                + np.arange(n)[:, None] * volume.affine[:3, 0][None, :]
            )
        return cls.from_arrays(
            positions,
            volume.orientation,
            (volume.spacing[1], volume.spacing[2]),
            (n, rows, cols),
            volume.spacing[0],
        )

    @classmethod
    def from_arrays(
        cls,
        positions: np.ndarray,
        orientation: Sequence[float],
        pixel_spacing: tuple[float, float],
        shape: tuple[int, int, int],
        fallback_spacing: float = 1.0,
    ) -> SliceFrame:
        """A frame from ImagePositionPatient per slice (already sorted along the normal), the orientation,
        (row, column) pixel spacing and the array shape ``(slices, rows, columns)``."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        row = np.asarray(orientation[:3], dtype=np.float64)
        col = np.asarray(orientation[3:6], dtype=np.float64)
        row = row / np.linalg.norm(row)
        col = col / np.linalg.norm(col)
        normal = normal_from_orientation(orientation)
        distances = positions @ normal
        if len(distances) > 1 and np.any(np.diff(distances) < 0):
            raise ValueError("slice positions must be sorted along the slice normal")
        steps = np.diff(distances)
        positive = steps[steps > 1e-3]
        spacing = float(np.median(positive)) if len(positive) else float(fallback_spacing or 1.0)
        gap_after = steps > GAP_FACTOR * spacing
        return cls(
            positions=positions,
            row=row,
            col=col,
            normal=normal,
            dy=float(pixel_spacing[0]),
            dx=float(pixel_spacing[1]),
            rows=int(shape[1]),
            cols=int(shape[2]),
            distances=distances,
            spacing=spacing,
            gap_after=gap_after,
        )

    @property
    def n_slices(self) -> int:
        """Number of acquired slices."""
        return len(self.positions)

    @property
    def has_gap(self) -> bool:
        """Whether any step between slices is a gap."""
        return bool(np.any(self.gap_after))

    def fractional_slice(self, d: np.ndarray, gaps: str = "blank") -> tuple[np.ndarray, np.ndarray]:
        """Fractional slice index of distances ``d`` along the normal, and where it is valid.

        Each slice covers half a spacing on either side; between two slices the index is interpolated. Inside a
        gap (``gaps="blank"``) only the half spacing next to each slice is covered (by that slice alone) and the
        rest is invalid; ``gaps="interpolate"`` interpolates across it as across any other step.
        """
        d = np.asarray(d, dtype=np.float64)
        n = self.n_slices
        half = self.spacing / 2.0
        dist = self.distances
        kappa = np.interp(d, dist, np.arange(n, dtype=np.float64)) if n > 1 else np.zeros_like(d)
        valid = (d >= dist[0] - half - 1e-6) & (d <= dist[-1] + half + 1e-6)
        if gaps == "blank" and n > 1 and self.has_gap:
            lower = np.clip(np.searchsorted(dist, d, side="right") - 1, 0, n - 2)
            in_gap = self.gap_after[lower] & (d > dist[lower]) & (d < dist[lower + 1])
            if np.any(in_gap):
                near_lower = in_gap & (d - dist[lower] <= half + 1e-6)
                near_upper = in_gap & (dist[lower + 1] - d <= half + 1e-6) & ~near_lower
                kappa = np.where(near_lower, lower, np.where(near_upper, lower + 1, kappa))
                valid = valid & ~(in_gap & ~near_lower & ~near_upper)
        return kappa, valid

    def voxel_to_patient(self, k: np.ndarray, j: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Patient coordinates (..., 3) of voxels (integer slice ``k``, fractional row ``j`` and column ``i``)."""
        k = np.asarray(k, dtype=np.int64)
        j = np.asarray(j, dtype=np.float64)[..., None]
        i = np.asarray(i, dtype=np.float64)[..., None]
        return self.positions[k] + self.col * (j * self.dy) + self.row * (i * self.dx)

    def patient_to_voxel(self, point: Sequence[float]) -> tuple[float, float, float] | None:
        """Fractional (slice, row, column) of a patient point, or None outside the stack (or in a gap)."""
        p = np.asarray(point, dtype=np.float64)
        kappa, valid = self.fractional_slice(np.asarray(p @ self.normal))
        if not bool(valid):
            return None
        k = float(kappa)
        lo = int(np.floor(k))
        hi = min(lo + 1, self.n_slices - 1)
        t = k - lo
        origin = (1 - t) * self.positions[lo] + t * self.positions[hi]
        return k, float((p - origin) @ self.col / self.dy), float((p - origin) @ self.row / self.dx)

    def slice_centres(self) -> np.ndarray:
        """(n, 3) patient coordinates of each slice's centre."""
        j = (self.rows - 1) / 2.0
        i = (self.cols - 1) / 2.0
        return self.positions + self.col * (j * self.dy) + self.row * (i * self.dx)

    def footprint(self, k: int | None = None) -> np.ndarray:
        """(m, 3) corner points (pixel edges) of slice ``k``, or of all slices when None."""
        ks = range(self.n_slices) if k is None else (k,)
        corners = []
        for kk in ks:
            for jj in (-0.5, self.rows - 0.5):
                for ii in (-0.5, self.cols - 0.5):
                    corners.append(self.positions[kk] + self.col * (jj * self.dy) + self.row * (ii * self.dx))
        return np.asarray(corners)
