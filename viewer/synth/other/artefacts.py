"""Artefacts of the second family, applied to slices on the working grid before reconstruction.

Beam hardening at the skull base: a dark band between the petrous bones (the Hounsfield bar) and thin
bright and dark streaks from dense bone. Cupping: brain a few HU brighter towards the skull. Motion: a few
consecutive slices ghosted and smeared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from viewer.synth.other.fields import F32

DENSE_HU = 1950.0


@dataclass(frozen=True)
class Artefacts:
    """Strengths of the artefacts of one study."""

    hardening: float  # HU of the dark band between petrous bones at full strength
    streaks: int  # thin streaks per slice with dense bone
    streak_hu: float
    cupping: float  # HU brighter at the inner table than at the centre
    motion: tuple[int, int]  # first slice and number of slices ghosted (0: none)
    motion_mm: float


def draw_artefacts(rng: np.random.Generator, n_slices: int) -> Artefacts:
    """Draw artefact strengths; motion in about one study of eight."""
    motion = (0, 0)
    if rng.uniform() < 0.12:
        run = int(rng.integers(1, 5))
        motion = (int(rng.integers(0, max(n_slices - run, 1))), run)
    return Artefacts(
        hardening=float(rng.uniform(8.0, 35.0)),
        streaks=int(rng.integers(2, 9)),
        streak_hu=float(rng.uniform(6.0, 25.0)),
        cupping=float(rng.uniform(1.0, 6.0)),
        motion=motion,
        motion_mm=float(rng.uniform(1.5, 5.0)),
    )


def _line(xx: np.ndarray, yy: np.ndarray, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance across and position along the line through ``p`` with unit direction ``d``."""
    rx, ry = xx - F32(p[0]), yy - F32(p[1])
    return np.abs(rx * F32(d[1]) - ry * F32(d[0])), rx * F32(d[0]) + ry * F32(d[1])


def apply_artefacts(
    art: Artefacts,
    slab: np.ndarray,
    k: int,
    x: np.ndarray,
    y: np.ndarray,
    centre: np.ndarray,
    h: float,
    rng: np.random.Generator,
) -> None:
    """Add the artefacts of slice ``k`` to ``slab`` (rows ``y``, columns ``x``, scanner mm) in place."""
    head = np.clip((slab + F32(300.0)) * F32(1.0 / 400.0), 0.0, 1.0)
    xx, yy = x.astype(F32)[None, :], y.astype(F32)[:, None]
    rr = np.sqrt((xx - F32(centre[0])) ** 2 + (yy - F32(centre[1])) ** 2)
    brain = (slab > -50) & (slab < 100)
    if brain.any():
        r_in = float(rr[brain].max())
        slab += F32(art.cupping) * (rr * F32(1.0 / max(r_in, 1.0))) ** 2 * brain
    dense = slab > DENSE_HU
    n_dense = int(dense.sum())
    if n_dense * h * h > 15.0:
        rows, cols = np.nonzero(dense)
        px_, py_ = x[cols], y[rows]
        left = px_ > centre[0]
        artefact = np.zeros_like(slab)
        if left.any() and (~left).any():
            a = np.array([px_[left].mean(), py_[left].mean()])
            b = np.array([px_[~left].mean(), py_[~left].mean()])
            mass = min(int(left.sum()), int((~left).sum())) * h * h
            d = (b - a) / max(float(np.linalg.norm(b - a)), 1e-3)
            across, along = _line(xx, yy, a, d)
            length = float(np.linalg.norm(b - a))
            width = F32(rng.uniform(2.5, 6.0))
            inside = np.clip(along * F32(1 / 8.0), 0, 1) * np.clip((F32(length) - along) * F32(1 / 8.0), 0, 1)
            artefact -= (
                F32(art.hardening * min(1.0, mass / 120.0)) * np.exp(-((across / width) ** 2)) * inside
            )
        for _ in range(art.streaks):
            i = int(rng.integers(rows.size))
            p = np.array([px_[i], py_[i]])
            ang = rng.uniform(0, np.pi)
            across, along = _line(xx, yy, p, np.array([np.cos(ang), np.sin(ang)]))
            sign = F32(rng.choice([-1.0, 1.0]))
            width = F32(rng.uniform(0.6, 1.4))
            artefact += (
                sign * F32(art.streak_hu) * np.exp(-((across / width) ** 2) - np.abs(along) * F32(1 / 90.0))
            )
        slab += artefact * head * (slab < DENSE_HU)
    first, run = art.motion
    if run and first <= k < first + run:
        shift = rng.normal(0.0, art.motion_mm / h, 2)
        ghost = ndimage.shift(slab, shift, order=1, mode="nearest")
        smear = 0.5 * (ndimage.shift(slab, shift * 0.5, order=1, mode="nearest") + slab)
        g = F32(rng.uniform(0.25, 0.45))
        slab[:] = (F32(1.0) - g) * smear + g * ghost
