"""How a wide-family study is scanned and what confounds it: slice thickness, field of view, head position and
tilt, noise level and texture, motion, extra calcifications.

The classic family draws none of this (its draws must stay as they were, so that every seed it ever wrote is the
same study); :func:`draw_wide` is where the wide family's variety comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from viewer.synth.anatomy import Ellipsoid, Head, ellipsoid
from viewer.synth.numeric import rotation

# Slice thicknesses of the wide family (mm) and how often each is drawn: 5 mm is still the commonest.
WIDE_SLICE_MM = (0.625, 1.25, 2.5, 3.0, 5.0, 7.5, 10.0)
_WIDE_SLICE_P = (0.05, 0.08, 0.17, 0.1, 0.4, 0.08, 0.12)
MAX_SLICES = 400
SUB_SLAB_MM = 2.5  # slabs thicker than this are drawn as several thinner ones averaged (partial volume)


@dataclass(frozen=True)
class Motion:
    """Patient motion on slices ``first``..``last``: a ghost of the slice ``shift_px`` away, ``weight`` strong."""

    first: int
    last: int
    shift_px: tuple[int, int]
    weight: float


@dataclass(frozen=True)
class WideAcquisition:
    """One wide-family study's acquisition: geometry, noise and artefacts."""

    slice_mm: float
    fov_mm: float
    noise_hu: float
    smoothing_passes: int  # 0 sharp kernel (fine grain) .. 2 soft kernel (coarse grain)
    rot: np.ndarray
    center_xy: np.ndarray
    streaks: bool

    @property
    def sub_slabs(self) -> int:
        """How many thinner slabs each slice is drawn as, for partial volume through thick slices."""
        return max(1, round(self.slice_mm / SUB_SLAB_MM))


def draw_wide(rng: np.random.Generator, slice_mm: float | None = None) -> WideAcquisition:
    """Draw a wide-family acquisition; ``slice_mm`` fixes the slice thickness instead of drawing it."""
    dz = float(rng.choice(WIDE_SLICE_MM, p=_WIDE_SLICE_P)) if slice_mm is None else float(slice_mm)
    if not 0.3 <= dz <= 12.0:
        raise ValueError("slice_mm must be between 0.3 and 12 mm")
    tilt = rng.uniform(-22, 12) if rng.uniform() < 0.3 else rng.uniform(-12, 8)
    rot = rotation(math.radians(rng.uniform(-12, 12)), math.radians(tilt), math.radians(rng.uniform(-8, 8)))
    return WideAcquisition(
        slice_mm=dz,
        fov_mm=float(rng.uniform(180.0, 300.0)),
        noise_hu=float(rng.uniform(3.0, 14.0)),
        smoothing_passes=int(rng.choice(3, p=[0.3, 0.4, 0.3])),
        rot=rot,
        center_xy=rng.uniform(-18.0, 18.0, 2),
        streaks=bool(rng.uniform() < 0.7),
    )


def draw_motion(rng: np.random.Generator, n_slices: int, px: float) -> Motion | None:
    """Motion on a few consecutive slices of one study in eight, or None."""
    if rng.uniform() >= 0.12 or n_slices < 2:
        return None
    span = int(rng.integers(1, max(2, min(6, n_slices // 4 + 1))))
    first = int(rng.integers(0, n_slices - span + 1))
    shift_mm = rng.uniform(1.5, 5.0)
    angle = rng.uniform(0, 2 * math.pi)
    shift = (round(shift_mm * math.sin(angle) / px), round(shift_mm * math.cos(angle) / px))
    return Motion(first, first + span - 1, shift, float(rng.uniform(0.25, 0.5)))


def apply_motion(hu: np.ndarray, motion: Motion | None, k: int) -> None:
    """Blend slice ``hu`` (slice index ``k``) in place with its shifted ghost where ``motion`` covers it."""
    if motion is None or not motion.first <= k <= motion.last:
        return
    ghost = np.roll(hu, motion.shift_px, axis=(0, 1))
    hu *= np.float32(1.0 - motion.weight)
    hu += np.float32(motion.weight) * ghost


def extra_calcifications(rng: np.random.Generator, head: Head) -> list[Ellipsoid]:
    """Physiological calcifications more often and brighter than the classic family draws them.

    Pineal, choroid plexus in the trigones, falx plaques and basal ganglia: dense, small and not blood, in normal
    and bleed studies alike.
    """
    k = head.ref_scale
    vw = head.vent
    out: list[Ellipsoid] = []

    def at(x: float, y: float, z: float) -> tuple[float, float, float]:
        return x * k[0] + rng.normal(0, 1.5), y * k[1] + rng.normal(0, 1.5), z * k[2] + rng.normal(0, 1.5)

    if rng.uniform() < 0.6:
        r = rng.uniform(1.5, 4.0)
        out.append(ellipsoid(at(0, 16, -4), (r, r, r), rng.uniform(120, 600)))
    if rng.uniform() < 0.6:
        for s in (-1.0, 1.0):
            r = rng.uniform(1.5, 4.0)
            out.append(ellipsoid(at((14 + 5 * vw) * s, 27, 15), (r, r * 1.4, r), rng.uniform(100, 500)))
    for _ in range(int(rng.integers(0, 3))):
        out.append(
            ellipsoid(
                at(0, rng.uniform(-55, 55), rng.uniform(15, 60)), (0.9, rng.uniform(2, 9), rng.uniform(2, 5)),
                rng.uniform(150, 700),
            )
        )  # fmt: skip
    if rng.uniform() < 0.2:
        for s in (-1.0, 1.0):
            out.append(ellipsoid(at(23 * s, -8, 0), (2.5, 3, 2.5), rng.uniform(80, 250)))
    return out
