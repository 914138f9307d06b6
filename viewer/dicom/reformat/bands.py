"""The acquired slices as bands along a reformatted plane's axis: where each slice (and its per-slice values:
probability, key slice) lies along the head in a coronal or sagittal image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.dicom.reformat.frame import SliceFrame
from viewer.dicom.reformat.planes import PlaneAxes


@dataclass(frozen=True, slots=True)
class SliceBands:
    """Slice ``k`` covers view coordinates ``lo[k]…hi[k]`` (mm) along the plane's ``axis`` ("x" or "y");
    ``centre[k]`` is its centre. Around a gap a band reaches half a spacing, so the gap stays empty."""

    axis: str
    centre: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def slice_at(self, coordinate: float) -> int | None:
        """The slice whose band holds ``coordinate``, or None (outside, or in a gap)."""
        inside = np.nonzero((self.lo <= coordinate) & (coordinate <= self.hi))[0]
        if not len(inside):
            return None
        return int(inside[np.argmin(np.abs(self.centre[inside] - coordinate))])


def slice_bands(frame: SliceFrame, axes: PlaneAxes) -> SliceBands | None:
    """The bands of ``frame``'s slices along whichever screen axis of ``axes`` runs most across the slices;
    None when the plane is mostly parallel to them (it shows one slice at a time)."""
    across = {name: abs(float(vec @ frame.normal)) for name, vec in (("x", axes.u), ("y", axes.v))}
    axis = max(across, key=lambda a: across[a])
    if across[axis] < abs(float(axes.w @ frame.normal)) or across[axis] < 1e-6:
        return None
    vector = axes.u if axis == "x" else axes.v
    centre = frame.slice_centres() @ vector
    half = frame.spacing / 2.0 / across[axis]
    n = len(centre)
    lo = centre - half
    hi = centre + half
    if n > 1:
        order = np.argsort(centre)
        c = centre[order]
        mid = (c[:-1] + c[1:]) / 2.0
        sorted_gap = np.abs(np.diff(c)) > 2 * half * 1.5  # the same rule as the frame's gaps
        lo_sorted = np.concatenate([[c[0] - half], np.where(sorted_gap, c[1:] - half, mid)])
        hi_sorted = np.concatenate([np.where(sorted_gap, c[:-1] + half, mid), [c[-1] + half]])
        lo = np.empty(n)
        hi = np.empty(n)
        lo[order] = lo_sorted
        hi[order] = hi_sorted
    return SliceBands(axis, centre, lo, hi)
