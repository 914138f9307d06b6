"""Numeric pieces the phantom is drawn with: soft steps, rotations, slice boxes and smooth random fields.

Everything is float32, as the slices are. A soft step is a ramp about one pixel wide, so painted boundaries
carry partial-volume values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_F32 = np.float32


def ramp(x: np.ndarray, inv_edge: float) -> np.ndarray:
    """Soft step of width ``1 / inv_edge`` centred on 0: 0 below, 1 above (partial volume at edges)."""
    out = np.multiply(x, _F32(inv_edge), dtype=_F32)
    out += _F32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def paint(dst: np.ndarray, value: np.ndarray | float, alpha: np.ndarray) -> None:
    """``dst = dst + alpha * (value - dst)`` in place."""
    dst += alpha * (value - dst)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (radians) about z, then x, then y; columns are the rotated frame's axes."""
    cz, sz = math.cos(yaw), math.sin(yaw)
    cx, sx = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(roll), math.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return rz @ rx @ ry


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """The logistic function, in float32."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=_F32)))


@dataclass(frozen=True, slots=True)
class Box:
    """Rows r0:r1 and columns c0:c1 of a slice."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def empty(self) -> bool:
        """True when the box holds no pixel."""
        return self.r1 <= self.r0 or self.c1 <= self.c0

    def within(self, outer: Box) -> Box:
        """This box clipped to ``outer``."""
        return Box(
            max(self.r0, outer.r0), min(self.r1, outer.r1), max(self.c0, outer.c0), min(self.c1, outer.c1)
        )

    def rel(self, outer: Box) -> tuple[slice, slice]:
        """Index of this box inside arrays that cover ``outer``."""
        return slice(self.r0 - outer.r0, self.r1 - outer.r0), slice(self.c0 - outer.c0, self.c1 - outer.c0)

    def union(self, other: Box) -> Box:
        """The smallest box holding both; an empty box adds nothing."""
        if self.empty:
            return other
        if other.empty:
            return self
        return Box(
            min(self.r0, other.r0), max(self.r1, other.r1), min(self.c0, other.c0), max(self.c1, other.c1)
        )


EMPTY_BOX = Box(0, 0, 0, 0)


class SmoothField:
    """A smooth Gaussian random field (unit standard deviation) sampled on the slices of a study.

    White noise on a coarse grid is smoothed and then interpolated with Gaussian weights, separably, so a
    full-resolution slice costs two small products over the few grid nodes near it. They run as ``einsum``
    loops rather than BLAS, whose threads spin badly when the cores are shared.
    """

    def __init__(
        self, rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, cell: float
    ) -> None:
        def grid(coords: np.ndarray) -> np.ndarray:
            lo, hi = float(coords.min()) - 2 * cell, float(coords.max()) + 2 * cell
            return np.arange(lo, hi + cell, cell)

        def weights(coords: np.ndarray, nodes: np.ndarray) -> np.ndarray:
            w = np.exp(-0.5 * ((coords[:, None] - nodes[None, :]) / (0.55 * cell)) ** 2)
            return (w / w.sum(axis=1, keepdims=True)).astype(_F32)

        def support(w: np.ndarray) -> np.ndarray:
            """First and last+1 node with a weight that matters, per output coordinate."""
            big = w > 1e-4
            return np.stack([big.argmax(axis=1), w.shape[1] - big[:, ::-1].argmax(axis=1)], axis=1)

        gx, gy, gz = grid(xs), grid(ys), grid(zs)
        coarse = ndimage.gaussian_filter(rng.standard_normal((gz.size, gy.size, gx.size)), 0.8, mode="wrap")
        self._wx = weights(xs, gx)
        self._wy = weights(ys, gy)
        self._sx, self._sy = support(self._wx), support(self._wy)
        planes = np.einsum("zk,kyx->zyx", weights(zs, gz).astype(np.float64), coarse).astype(_F32)
        self._planes = planes
        mid = self.slice(len(zs) // 2, Box(0, ys.size, 0, xs.size))
        self._planes = planes / _F32(max(float(mid.std()), 1e-6))

    def slice(self, k: int, box: Box) -> np.ndarray:
        """The field on slice ``k`` over the pixels of ``box``."""
        j0, j1 = self._sy[box.r0, 0], self._sy[box.r1 - 1, 1]
        i0, i1 = self._sx[box.c0, 0], self._sx[box.c1 - 1, 1]
        t = np.einsum("jk,lk->jl", self._planes[k, j0:j1, i0:i1], self._wx[box.c0 : box.c1, i0:i1])
        return np.einsum("rj,jl->rl", self._wy[box.r0 : box.r1, j0:j1], t)
