"""Numeric building blocks of the second phantom family: soft steps, tube chains, superquadrics, the pose.

Everything is float32 and works on arrays of head-frame coordinates (u to the patient's left, v posterior,
w superior; millimetres). A :class:`Block` is a run of fine planes of the working grid in the scanner frame
together with the head-frame coordinates of its voxels; :meth:`Block.region` gives the part of it that can
touch a structure, so small structures cost only their own neighbourhood.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

F32 = np.float32


def soft(d: np.ndarray, width: float) -> np.ndarray:
    """Linear step of ``width`` mm centred on ``d == 0``: 0 below, 1 above (partial volume at a surface)."""
    out = np.multiply(d, F32(1.0 / width), dtype=F32)
    out += F32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def blend(dst: np.ndarray, value: np.ndarray | float, alpha: np.ndarray) -> None:
    """``dst += alpha * (value - dst)`` in place: paint ``value`` with coverage ``alpha``."""
    dst += alpha * (value - dst)


def tube_chain(
    u: np.ndarray, v: np.ndarray, w: np.ndarray, points: np.ndarray, radii: Sequence[float]
) -> np.ndarray:
    """Signed distance (mm, negative inside) to a chain of round cones through ``points`` with ``radii``."""
    best: np.ndarray | None = None
    for i in range(len(points) - 1):
        a, b = points[i], points[i + 1]
        ab = (b - a).astype(F32)
        inv = F32(1.0 / max(float(ab @ ab), 1e-6))
        du, dv, dw = u - F32(a[0]), v - F32(a[1]), w - F32(a[2])
        t = (du * ab[0] + dv * ab[1] + dw * ab[2]) * inv
        np.clip(t, 0.0, 1.0, out=t)
        du -= t * ab[0]
        dv -= t * ab[1]
        dw -= t * ab[2]
        d = np.sqrt(du * du + dv * dv + dw * dw)
        d -= F32(radii[i]) + t * F32(radii[i + 1] - radii[i])
        best = d if best is None else np.minimum(best, d, out=best)
    assert best is not None
    return best


def superquadric(
    u: np.ndarray,
    v: np.ndarray,
    w: np.ndarray,
    centre: Sequence[float],
    semi: Sequence[float],
    power: float = 2.0,
    yaw: float = 0.0,
) -> np.ndarray:
    """Approximate depth (mm, positive inside) in a superquadric turned by ``yaw`` radians about w.

    ``power`` 2 is an ellipsoid; higher powers give boxier blobs.
    """
    cy, sy = F32(math.cos(yaw)), F32(math.sin(yaw))
    du, dv, dw = u - F32(centre[0]), v - F32(centre[1]), w - F32(centre[2])
    a = (cy * du + sy * dv) * F32(1.0 / semi[0]) if yaw else du * F32(1.0 / semi[0])
    b = (cy * dv - sy * du) * F32(1.0 / semi[1]) if yaw else dv * F32(1.0 / semi[1])
    c = dw * F32(1.0 / semi[2])
    if power == 2.0:
        q = np.sqrt(a * a + b * b + c * c)
    else:
        p = F32(power)
        q = np.abs(a) ** p + np.abs(b) ** p + np.abs(c) ** p
        q **= F32(1.0 / power)
    return (F32(1.0) - q) * F32(min(semi))


@dataclass(frozen=True)
class Pose:
    """Where the head lies in the scanner: ``scanner = centre + rot @ head`` (LPS millimetres)."""

    rot: np.ndarray  # (3, 3)
    centre: np.ndarray  # (3,)

    def to_scanner(self, p: np.ndarray) -> np.ndarray:
        """Scanner coordinates of head-frame points ``p`` (..., 3)."""
        return np.asarray(p, float) @ self.rot.T + self.centre

    def to_head(self, p: np.ndarray) -> np.ndarray:
        """Head-frame coordinates of scanner points ``p`` (..., 3)."""
        return (np.asarray(p, float) - self.centre) @ self.rot


@dataclass
class Block:
    """Fine planes ``z`` of the working grid (columns ``x``, rows ``y``) and their head-frame coordinates."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    pose: Pose
    u: np.ndarray
    v: np.ndarray
    w: np.ndarray

    @classmethod
    def make(cls, x: np.ndarray, y: np.ndarray, z: np.ndarray, pose: Pose) -> Block:
        """Head-frame coordinates of every voxel of the grid ``z × y × x``."""
        dx = (x - pose.centre[0]).astype(F32)[None, None, :]
        dy = (y - pose.centre[1]).astype(F32)[None, :, None]
        dz = (z - pose.centre[2]).astype(F32)[:, None, None]
        r = pose.rot.astype(F32)
        u, v, w = ((dz * r[2, i] + dy * r[1, i]) + dx * r[0, i] for i in range(3))
        return cls(x, y, z, pose, u, v, w)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(planes, rows, columns)."""
        return self.u.shape  # type: ignore[return-value]

    def region(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, slice, slice] | None:
        """Index of the part of the block that can lie in the head-frame box ``lo``–``hi``; None if none."""
        corners = np.array(
            [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
        )
        s = self.pose.to_scanner(corners)
        out = []
        for axis, coords in ((2, self.z), (1, self.y), (0, self.x)):
            i0 = int(np.searchsorted(coords, s[:, axis].min(), side="left"))
            i1 = int(np.searchsorted(coords, s[:, axis].max(), side="right"))
            i0, i1 = max(i0 - 1, 0), min(i1 + 1, coords.size)
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[0], out[1], out[2]

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head-frame coordinates over ``sl``."""
        return self.u[sl], self.v[sl], self.w[sl]


def cosine_waves(
    rng: np.random.Generator, n: int, wavelength: tuple[float, float], dims: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random plane waves: wave vectors (n, 3) rad/mm with lengths from ``wavelength`` mm, and phases."""
    d = rng.normal(size=(n, 3))
    if dims == 2:
        d[:, 2] = 0.0
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = 2 * math.pi / rng.uniform(*wavelength, (n, 1))
    return (d * k).astype(F32), rng.uniform(0, 2 * math.pi, n).astype(F32)


def wave_sum(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, k: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Sum of cosine waves at points, scaled to unit standard deviation."""
    out = np.zeros(np.shape(p0), F32)
    for (k0, k1, k2), ph in zip(k, phase, strict=True):
        out += np.cos(p0 * k0 + p1 * k1 + p2 * k2 + ph)
    out *= F32(math.sqrt(2.0 / max(len(k), 1)))
    return out
