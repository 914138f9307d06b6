"""Resampling one plane of the acquired slices: a plan of where each output pixel lies, then values from it.

A :class:`SamplingPlan` holds, for every pixel of a :class:`~viewer.dicom.reformat.planes.PlaneGrid`, its
fractional slice (from its distance along the slice normal, true positions and gaps included) and its fractional
row and column inside the two slices around it (each slice's own position, so a tilted stack is sampled where
its pixels really are). The same plan then samples any per-acquired-slice data of the volume's shape: the image
(``numpy`` array of any numeric dtype) and the pixel saliency (slice by slice, some slices without a map), so the
overlay lands on exactly the pixels of the image.

Planes are computed on demand and only for the pixels shown: nothing of the volume is copied beyond the output.
Where the plane runs along the slices' rows or columns (every axis-aligned acquisition, tilted or not, in all
three patient planes), coordinates are sums of a per-row and a per-column part and stay that small until the
final gather.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from viewer.dicom.reformat.frame import SliceFrame
from viewer.dicom.reformat.planes import PlaneGrid

#: A per-acquired-slice source: the volume array ``[slice, row, column]``, or slice ``k`` → its map (or None).
Source = np.ndarray | Callable[[int], np.ndarray | None]
#: Coordinates within this of an integer are that integer (no interpolation along that axis); coordinates are
#: float32, exact to about 1e-4 pixel across 4096 pixels.
EXACT = 2e-3


def _collapse(term: np.ndarray) -> np.ndarray:
    """A constant term as one (1, 1) value, so sums stay as small as their varying parts."""
    if term.size > 1 and float(np.ptp(term)) <= 1e-9:
        return term.reshape(-1)[:1].reshape(1, 1)
    return term


@dataclass(frozen=True, slots=True)
class _Side:
    """Where the pixels lie in one of the two slices around them: slice index, fractional row and column."""

    k: np.ndarray
    j: np.ndarray
    i: np.ndarray


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    """Where each pixel of ``grid`` lies in the stack. Arrays broadcast to ``grid.shape``.

    ``kappa`` is the fractional slice index, ``valid`` where the pixel lies in a slice (not outside the stack,
    not in a gap, not beyond a slice's edge). ``lower``/``upper`` are the slices below and above with the pixel's
    row and column in each, ``weight`` the upper slice's share.
    """

    grid: PlaneGrid
    kappa: np.ndarray
    valid: np.ndarray
    lower: _Side
    upper: _Side
    weight: np.ndarray
    rows: int
    cols: int

    def sample(self, source: Source, *, normal: str = "linear", fill: float = np.nan) -> np.ndarray:
        """The plane's values from ``source`` as float32 ``grid.shape``; ``fill`` where nothing lies.

        ``normal="linear"`` interpolates between the two slices around a pixel (the image);
        ``"nearest"`` takes the nearest slice alone (data defined per acquired slice, like a saliency map,
        whose value between two slices would be invented).
        """
        if normal == "nearest":
            upper = self.weight >= 0.5
            side = _Side(
                np.where(upper, self.upper.k, self.lower.k),
                np.where(upper, self.upper.j, self.lower.j),
                np.where(upper, self.upper.i, self.lower.i),
            )
            values = _bilinear(source, side, self.rows, self.cols)
        else:
            values = _bilinear(source, self.lower, self.rows, self.cols)
            if np.any(self.weight > 0):
                above = _bilinear(source, self.upper, self.rows, self.cols)
                above = _in_place(np.subtract, above, values)
                above = _in_place(np.multiply, above, self.weight)
                values = _in_place(np.add, above, values)
        if values.shape != self.grid.shape:
            values = np.broadcast_to(values, self.grid.shape).copy()
        values[~np.broadcast_to(self.valid, self.grid.shape)] = fill
        if not np.isnan(fill):
            values[np.isnan(values)] = fill
        return values


def plan_plane(frame: SliceFrame, grid: PlaneGrid, gaps: str = "blank") -> SamplingPlan:
    """Where every pixel of ``grid`` lies in ``frame``'s slices (see :class:`SamplingPlan`)."""
    axes = grid.axes
    xs = grid.x0 + grid.dx * np.arange(grid.width, dtype=np.float64)
    ys = grid.y0 + grid.dy * np.arange(grid.height, dtype=np.float64)
    base = axes.w * grid.depth

    def project(direction: np.ndarray) -> np.ndarray:
        """``p·direction`` of every pixel, kept as a (1, 1), (H, 1), (1, W) or (H, W) array."""
        rows = _collapse((ys * float(axes.v @ direction))[:, None])
        cols = _collapse((xs * float(axes.u @ direction))[None, :])
        return float(base @ direction) + rows + cols

    kappa, valid = frame.fractional_slice(project(frame.normal), gaps)
    n = frame.n_slices
    k0 = np.clip(np.floor(kappa).astype(np.int64), 0, n - 1)
    k1 = np.minimum(k0 + 1, n - 1)
    weight = np.clip(kappa - k0, 0.0, 1.0).astype(np.float32)
    along_col = project(frame.col)
    along_row = project(frame.row)

    def side(k: np.ndarray) -> _Side:
        origin = frame.positions[k]
        j = ((along_col - origin @ frame.col) / frame.dy).astype(np.float32)
        i = ((along_row - origin @ frame.row) / frame.dx).astype(np.float32)
        return _Side(k.astype(np.int32), j, i)

    lower, upper = side(k0), side(k1)
    inside = np.ones((1, 1), dtype=bool)
    for s, w in ((lower, weight < 1.0), (upper, weight > 0.0)):
        ok = (s.j >= -0.5 - EXACT) & (s.j <= frame.rows - 0.5 + EXACT)
        ok = ok & (s.i >= -0.5 - EXACT) & (s.i <= frame.cols - 0.5 + EXACT)
        inside = inside & (ok | ~w)
    return SamplingPlan(grid, kappa, valid & inside, lower, upper, weight, frame.rows, frame.cols)


def _axis_terms(coordinate: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(index, weight) pairs of linear interpolation along one axis; one pair with weight None when exact."""
    nearest = np.rint(coordinate)
    if np.all(np.abs(coordinate - nearest) <= EXACT):
        return [(np.clip(nearest, 0, size - 1).astype(np.intp), None)]
    low = np.floor(coordinate)
    frac = (coordinate - low).astype(np.float32)
    return [
        (np.clip(low, 0, size - 1).astype(np.intp), 1.0 - frac),
        (np.clip(low + 1, 0, size - 1).astype(np.intp), frac),
    ]


def _bilinear(source: Source, side: _Side, rows: int, cols: int) -> np.ndarray:
    """Bilinear values of ``source`` at one side's (slice, row, column), float32; sums in place, so a plane needs
    few temporaries of its size."""
    total: np.ndarray | None = None
    for j, wj in _axis_terms(side.j, rows):
        for i, wi in _axis_terms(side.i, cols):
            values = _gather(source, side.k, j, i)  # always a fresh array
            weights = [w for w in (wj, wi) if w is not None]
            for w in weights:
                values = _in_place(np.multiply, values, w)
            total = values if total is None else _in_place(np.add, total, values)
    assert total is not None
    return total


def _in_place(op: np.ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``op(a, b)``, written into ``a`` when it has the result's shape."""
    if a.shape == np.broadcast_shapes(a.shape, b.shape):
        return op(a, b, out=a)
    return op(a, b)


def _gather(source: Source, k: np.ndarray, j: np.ndarray, i: np.ndarray) -> np.ndarray:
    """``source[k, j, i]`` as float32 (NaN where a per-slice source has no map for the slice)."""
    if isinstance(source, np.ndarray):
        return source[k, j, i].astype(np.float32, copy=False)
    shape = np.broadcast_shapes(k.shape, j.shape, i.shape)
    out = np.full(shape, np.nan, dtype=np.float32)
    present = [(int(m), data) for m in np.unique(k) if (data := source(int(m))) is not None]
    if not present:
        return out
    jj, ii = np.broadcast_to(j, shape), np.broadcast_to(i, shape)
    per_row = k.shape[1] == 1  # the usual case: one slice per output row
    for m, data in present:
        chosen = k == m
        if per_row:
            rows = np.nonzero(chosen[:, 0])[0]
            out[rows] = np.asarray(data)[jj[rows], ii[rows]]
        else:
            chosen = np.broadcast_to(chosen, shape)
            out[chosen] = np.asarray(data)[jj[chosen], ii[chosen]]
    return out
