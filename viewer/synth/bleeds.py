"""Bleeds placed in a phantom head: intraparenchymal haematomas, subdural crescents, subarachnoid blood, and in the
wide family also epidural lenses, intraventricular blood and subdural blood along the falx and tentorium.

The classic family (:func:`make_bleed`) ranges from a few millimetres on one or two slices to large haematomas,
15–50 HU above brain; small bleeds get a contrast well above the study's noise so that they are not buried in it.
The wide family (:func:`make_wide_bleed`) adds the cases a reader most needs help with: small and faint
haematomas (0.03–2 ml, +10 to +30 HU whatever the noise), thin extra-axial films and the other kinds. Shapes live
in the head frame of :mod:`viewer.synth.anatomy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from viewer.synth.anatomy import Ellipsoid, Head

KINDS = ("intraparenchymal", "subdural", "subarachnoid", "epidural", "intraventricular")
CLASSIC_KINDS = KINDS[:3]  # what the classic family draws from (its draws must not change)
SUBDURAL_SITES = ("convexity", "falx", "tentorium")

_F32 = np.float32


@dataclass
class Bleed:
    """One bleed in the head frame; which fields matter depends on ``kind``."""

    kind: str
    contrast: float
    hu: float
    center: np.ndarray  # head frame mm
    bound: float  # radius of a sphere that holds it, mm
    semi: np.ndarray = field(default_factory=lambda: np.ones(3))
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # boundary ripples: kx, ky, kz, phase
    edema_mm: float = 0.0
    # subdural: direction in the axial plane, half angle, half height, thickness
    direction: tuple[float, float] = (1.0, 0.0)
    half_angle: float = 0.0
    half_height: float = 0.0
    thickness: float = 0.0
    # wide family: where a subdural lies ("convexity", "falx", "tentorium") and on which side (+1 / -1 in u);
    # an intraventricular bleed's fluid level (head-frame v; blood lies behind it) or None for a cast
    site: str = "convexity"
    side: float = 1.0
    level: float | None = None

    def iph_shape(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Signed distance-like value (mm, positive inside) of an intraparenchymal haematoma."""
        du, dv, dw = u - _F32(self.center[0]), v - _F32(self.center[1]), w - _F32(self.center[2])
        a = self.axes.astype(_F32)
        q = [(a[i, 0] * du + a[i, 1] * dv + a[i, 2] * dw) / _F32(self.semi[i]) for i in range(3)]
        rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
        ripple = np.zeros_like(rho)
        for kx, ky, kz, ph in self.waves:
            ripple += np.sin(_F32(kx) * du + _F32(ky) * dv + _F32(kz) * dw + _F32(ph))
        rho *= 1.0 + _F32(0.07) * ripple
        return (1.0 - rho) * _F32(float(np.mean(self.semi)))

    def subdural_spread(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Angular profile of a subdural crescent, 1 at its centre and 0 beyond its half angle."""
        r = np.sqrt(u * u + v * v) + _F32(1e-3)
        cos_d = (u * _F32(self.direction[0]) + v * _F32(self.direction[1])) / r
        return np.clip(1.0 - (1.0 - cos_d) * _F32(1.0 / (1.0 - math.cos(self.half_angle))), 0.0, 1.0)

    def subdural_thickness(self, spread: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Thickness (mm) of a subdural crescent from its angular ``spread`` and the height ``w``."""
        x = (w - _F32(self.center[2])) * _F32(1.0 / self.half_height)
        return _F32(self.thickness) * np.sqrt(spread * np.clip(1.0 - x * x, 0.0, 1.0))

    def lens_thickness(self, spread: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Thickness (mm) of an epidural lens: biconvex, with sharp margins (it stops at the sutures)."""
        x = (w - _F32(self.center[2])) * _F32(1.0 / self.half_height)
        return _F32(self.thickness) * np.sqrt(np.clip(spread - x * x, 0.0, 1.0))

    def sheet_thickness(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Thickness (mm) of a falx or tentorium subdural over its two in-sheet coordinates ``a``, ``b``.

        For the falx these are (v, w), for the tentorium (u, v); the sheet is an ellipse of semi-axes
        ``semi[0]``, ``semi[1]`` around ``center``.
        """
        i, j = (1, 2) if self.site == "falx" else (0, 1)
        qa = (a - _F32(self.center[i])) * _F32(1.0 / self.semi[0])
        qb = (b - _F32(self.center[j])) * _F32(1.0 / self.semi[1])
        return _F32(self.thickness) * np.sqrt(np.clip(1.0 - qa * qa - qb * qb, 0.0, 1.0))

    def sah_region(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Where blood fills the subarachnoid space, 0 to 1: a ball of radius ``semi[0]`` with a 3 mm edge."""
        du, dv, dw = u - _F32(self.center[0]), v - _F32(self.center[1]), w - _F32(self.center[2])
        dist = np.sqrt(du * du + dv * dv + dw * dw)
        return np.clip((_F32(self.semi[0]) - dist) / _F32(3.0), 0.0, 1.0)


# Subdural sizes: (thickness mm, half height mm, half angle degrees) ranges. The first is a thin film on one to
# three slices, the last a large crescent over much of a hemisphere.
_SUBDURAL_BANDS = (
    ((2.5, 4.5), (4.0, 8.0), (10.0, 22.0)),
    ((3.0, 7.0), (8.0, 20.0), (18.0, 45.0)),
    ((6.0, 16.0), (18.0, 45.0), (30.0, 70.0)),
)


def _random_axes(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q


def _contrast(rng: np.random.Generator, noise: float, small: bool) -> float:
    lo = min(40.0, max(15.0, (3.0 if small else 2.0) * noise))
    return float(rng.uniform(lo, 50.0))


def _brain_point(
    rng: np.random.Generator, head: Head, w_range: tuple[float, float], min_depth: float, max_depth: float
) -> np.ndarray | None:
    """A point in the cerebrum with its depth under the cortex in [min_depth, max_depth], out of ventricles."""
    n = 256
    pts = np.stack(
        [
            rng.uniform(-head.a, head.a, n),
            rng.uniform(-head.b, head.b, n),
            rng.uniform(w_range[0], w_range[1], n),
        ]
    ).astype(_F32)
    depth, f, _, _ = head.cavity(pts[0], pts[1], pts[2])
    depth = np.minimum(depth, f)
    ok = (depth >= min_depth) & (depth <= max_depth)
    ok &= head.ventricle_alpha(pts[0], pts[1], pts[2]) == 0
    ok &= head.cerebellum(pts[0], pts[1], pts[2]) < 0.5
    idx = np.flatnonzero(ok)
    return None if idx.size == 0 else pts[:, idx[0]].astype(float)


def _at_convexity(
    rng: np.random.Generator,
    head: Head,
    kind: str,
    contrast: float,
    w_range: tuple[float, float],
    thickness: float,
    half_height: float,
    half_angle_deg: float,
) -> Bleed:
    """A subdural crescent or epidural lens of these sizes against the inner table, at a drawn side and height."""
    half_angle = math.radians(half_angle_deg)
    theta = rng.choice([0.0, math.pi]) + rng.uniform(-1.1, 1.1)
    w0 = rng.uniform(max(w_range[0], -0.15 * head.c_up), min(w_range[1], 0.65 * head.c_up))
    direction = (math.cos(theta), math.sin(theta))
    center = np.array([direction[0] * head.a * 0.9, direction[1] * head.b * 0.9, w0])
    bound = half_angle * max(head.a, head.b) + half_height + thickness + 10
    return Bleed(
        kind, contrast, head.brain + contrast, center, bound,
        direction=direction, half_angle=half_angle, half_height=half_height, thickness=thickness,
    )  # fmt: skip


def make_bleed(
    rng: np.random.Generator, head: Head, kind: str, noise: float, w_range: tuple[float, float], clear: bool
) -> Bleed | None:
    """One bleed of ``kind`` between the heights ``w_range``, or None where no place was found for it.

    ``clear`` makes the demo's obvious haematoma; ``noise`` (HU) sets the least contrast of small bleeds.
    """
    brain = head.brain
    if kind == "intraparenchymal":
        if clear:
            diameter = rng.uniform(28.0, 36.0)
        else:
            band = rng.choice(3, p=[0.3, 0.45, 0.25])
            diameter = float(rng.uniform(*((4.0, 10.0), (10.0, 24.0), (24.0, 42.0))[band]))
        contrast = rng.uniform(42.0, 50.0) if clear else _contrast(rng, noise, diameter < 10)
        r = diameter / 2.0
        where = rng.uniform()
        lo, hi = max(w_range[0], -0.2 * head.c_up), min(w_range[1], 0.75 * head.c_up)
        if where < 0.15 and not clear:  # cerebellar
            center = np.array(
                [rng.choice([-1, 1]) * rng.uniform(15, 30), 0.5 * head.b, -0.62 * head.c_lo]
            ) * rng.uniform(0.95, 1.05, 3)
        elif where < 0.55:  # deep: basal ganglia, thalamus
            s = rng.choice([-1.0, 1.0])
            center = (
                np.array([s * rng.uniform(14, 28), rng.uniform(-18, 12), rng.uniform(-8, 12)])
                * head.ref_scale
            )
        else:
            center = _brain_point(rng, head, (lo, hi), r + 6.0, r + 30.0)
            if center is None:
                return None
        axes = _random_axes(rng)
        semi = r * rng.uniform(0.8, 1.2, 3)
        semi[2] = max(semi[2], 2.5)
        nw = 3
        dirs = rng.normal(size=(nw, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        dirs *= 2 * math.pi / (r * rng.uniform(0.9, 1.8, (nw, 1)))
        waves = np.concatenate([dirs, rng.uniform(0, 2 * math.pi, (nw, 1))], axis=1)
        edema = rng.uniform(2.0, 6.0) if diameter > 14 else 0.0
        return Bleed(
            kind,
            contrast,
            brain + contrast,
            center,
            float(semi.max() * 1.2 + edema + 2),
            semi,
            axes,
            waves,
            edema,
        )
    if kind == "subdural":
        band = int(rng.choice(3, p=[0.25, 0.3, 0.45]))
        thickness, half_height, half_angle_deg = (float(rng.uniform(*r)) for r in _SUBDURAL_BANDS[band])
        contrast = _contrast(rng, noise, band == 0)
        return _at_convexity(rng, head, kind, contrast, w_range, thickness, half_height, half_angle_deg)
    if kind == "subarachnoid":
        radius = rng.uniform(9.0, 16.0) if rng.uniform() < 0.35 else rng.uniform(16.0, 34.0)
        contrast = _contrast(rng, noise, True)
        if rng.uniform() < 0.35:  # basal: suprasellar and sylvian cisterns
            s = rng.choice([-1.0, 1.0])
            center = (
                np.array([s * rng.uniform(0, 40), rng.uniform(-25, -5), rng.uniform(-28, -12)])
                * head.ref_scale
            )
        else:  # convexity sulci
            center = _brain_point(
                rng, head, (max(w_range[0], -0.1 * head.c_up), min(w_range[1], 0.8 * head.c_up)), 1.0, 8.0
            )
            if center is None:
                return None
        return Bleed(
            kind, contrast, brain + contrast, center, radius + 3, semi=np.array([radius, radius, radius])
        )
    raise ValueError(f"unknown bleed kind {kind!r}")


def _faint_contrast(rng: np.random.Generator) -> float:
    return float(rng.uniform(10.0, 30.0))


def _ventricles(head: Head) -> list[Ellipsoid]:
    return [e for e in head.cavity_prims if e.role == "ventricle"]


def make_wide_bleed(
    rng: np.random.Generator, head: Head, kind: str, noise: float, w_range: tuple[float, float]
) -> Bleed | None:
    """One bleed of the wide family, or None where no place was found for it.

    Intraparenchymal: 45% small and faint (0.03–2 ml, +10 to +30 HU), else as the classic family. Subdural: 2–10
    mm films along the convexity (70%), the falx or the tentorium. Epidural: a biconvex lens at the convexity.
    Subarachnoid: as the classic family, fainter at times. Intraventricular: blood layering behind a fluid level
    in the occipital horns and trigones, or a cast of part of the system.
    """
    brain = head.brain
    lo, hi = max(w_range[0], -0.2 * head.c_up), min(w_range[1], 0.75 * head.c_up)
    if kind == "intraparenchymal":
        if rng.uniform() >= 0.45:
            return make_bleed(rng, head, kind, noise, w_range, False)
        volume_ml = float(np.exp(rng.uniform(math.log(0.03), math.log(2.0))))
        r = 5.0 * (6.0 * volume_ml / math.pi) ** (1.0 / 3.0)  # radius in mm of a ball of that volume
        contrast = _faint_contrast(rng)
        center = _brain_point(rng, head, (lo, hi), r + 4.0, r + 40.0)
        if center is None:
            return None
        semi = r * rng.uniform(0.85, 1.15, 3)
        semi[2] = max(semi[2], 1.5)
        return Bleed(
            kind, contrast, brain + contrast, center, float(semi.max() * 1.3 + 2), semi, _random_axes(rng)
        )
    if kind in ("subdural", "epidural"):
        site = "convexity"
        if kind == "subdural":
            site = str(rng.choice(SUBDURAL_SITES, p=[0.7, 0.15, 0.15]))
        contrast = float(rng.uniform(15.0, 50.0)) if rng.uniform() < 0.7 else _faint_contrast(rng)
        if site == "falx":
            thickness = float(rng.uniform(2.0, 6.0))
            v0, w0 = rng.uniform(-0.5, 0.5) * head.b, rng.uniform(0.15, 0.55) * head.c_up
            if not lo <= w0 <= hi:
                return None
            half_v, half_w = rng.uniform(15.0, 40.0), rng.uniform(8.0, 20.0)
            center = np.array([0.0, v0, w0])
            bound = math.hypot(half_v, half_w) + thickness + 4
            return Bleed(
                kind, contrast, brain + contrast, center, bound, semi=np.array([half_v, half_w, 1.0]),
                thickness=thickness, site=site, side=float(rng.choice([-1.0, 1.0])),
            )  # fmt: skip
        if site == "tentorium":
            thickness = float(rng.uniform(2.0, 6.0))
            side = float(rng.choice([-1.0, 1.0]))
            u0, v0 = side * rng.uniform(10.0, 35.0), rng.uniform(0.3, 0.6) * head.b
            half_u, half_v = rng.uniform(12.0, 25.0), rng.uniform(12.0, 25.0)
            w0 = float(head.tentorium(np.array([u0], _F32), np.array([v0], _F32))[0])
            if not w_range[0] <= w0 <= w_range[1]:
                return None
            center = np.array([u0, v0, w0])
            bound = math.hypot(half_u, half_v) + thickness + 12
            return Bleed(
                kind, contrast, brain + contrast, center, bound, semi=np.array([half_u, half_v, 1.0]),
                thickness=thickness, site=site, side=side,
            )  # fmt: skip
        if kind == "subdural":
            thickness = float(rng.uniform(2.0, 10.0))
            half_height = float(rng.uniform(6.0, 40.0))
            half_angle_deg = float(rng.uniform(12.0, 65.0))
        else:
            thickness = float(rng.uniform(6.0, 22.0))
            half_height = float(rng.uniform(10.0, 28.0))
            half_angle_deg = float(rng.uniform(12.0, 30.0))
            contrast = float(rng.uniform(25.0, 55.0))
        return _at_convexity(rng, head, kind, contrast, w_range, thickness, half_height, half_angle_deg)
    if kind == "subarachnoid":
        b = make_bleed(rng, head, kind, noise, w_range, False)
        if b is not None and rng.uniform() < 0.3:
            b.contrast = _faint_contrast(rng)
            b.hu = brain + b.contrast
        return b
    if kind == "intraventricular":
        vents = _ventricles(head)
        contrast = float(rng.uniform(20.0, 50.0))
        if (
            rng.uniform() < 0.6
        ):  # layering in the occipital horns and trigones (the most posterior ventricles)
            horns = sorted(vents, key=lambda e: -float(e.center[1]))[:4]
            e = horns[int(rng.integers(len(horns)))]
            center = np.asarray(e.center, float)
            level = float(center[1] + rng.uniform(-0.3, 0.6) * float(e.semi.max()))
            radius = float(e.semi.max()) + 8.0
            return Bleed(
                kind, contrast, brain + contrast, center, radius + 4, semi=np.array([radius] * 3), level=level
            )
        e = vents[int(rng.integers(len(vents)))]
        center = np.asarray(e.center, float)
        radius = float(rng.uniform(6.0, 18.0))
        if not w_range[0] <= center[2] <= w_range[1]:
            return None
        return Bleed(kind, contrast, brain + contrast, center, radius + 4, semi=np.array([radius] * 3))
    raise ValueError(f"unknown bleed kind {kind!r}")
