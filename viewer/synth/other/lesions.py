"""Bleeds of the second family, placed by the anatomy of :mod:`.anatomy` and painted as blood fractions.

Each bleed gives, for a block of the working grid, the fraction of each voxel that is blood; the study keeps
these fractions to derive the voxel mask after slab averaging. Blood is brain HU plus the bleed's contrast:
extra-axial and intraventricular blood take the study's grey matter as reference, a haematoma the tissue it
replaces.

Kinds: subdural crescents (convexity, falx, tentorium), epidural lenses held between sutures, subarachnoid
blood in sulci or the basal cisterns and sylvian fissures, intraventricular layering or casts, and
intraparenchymal haematomas from 0.03 to about 40 ml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from viewer.synth.other.anatomy import FAR, Compartments, Head
from viewer.synth.other.fields import F32, Block, Pose, blend, cosine_waves, soft, wave_sum
from viewer.synth.other.head import direction

KINDS = ("subdural", "epidural", "subarachnoid", "intraventricular", "intraparenchymal")


@dataclass
class Bleed:
    """One bleed: kind, contrast over brain, a head-frame box that holds it, and the parameters of its shape."""

    kind: str
    variant: str
    contrast: float
    lo: np.ndarray
    hi: np.ndarray
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axis: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    half_angle: float = 0.0
    thickness: float = 0.0
    radius: float = 0.0
    side: float = 1.0
    plate: str = ""
    level_y: float = 0.0
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))
    semi: np.ndarray = field(default_factory=lambda: np.ones(3))
    lobes: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros((0, 3), F32), np.zeros(0, F32))
    )
    edema: float = 0.0
    fill: float = 1.0  # how much of the CSF space blood fills (subarachnoid)


def _shell(head: Head, b: Bleed, u: np.ndarray, v: np.ndarray, w: np.ndarray, cav: np.ndarray, edge: float):
    """Blood between the inner table and a thickness that falls off with the angle from ``b.axis``."""
    r = np.sqrt(u * u + v * v + w * w) + F32(1e-3)
    cosd = (u * F32(b.axis[0]) + v * F32(b.axis[1]) + w * F32(b.axis[2])) / r
    x = np.clip((F32(1.0) - cosd) * F32(1.0 / (1.0 - math.cos(b.half_angle))), 0.0, 1.0)
    if b.kind == "epidural":
        # A biconvex lens, thinning to nothing at the sutures that bound its bone.
        t = F32(b.thickness) * np.sqrt(F32(1.0) - x) * head.shape.plate(u, v, w, b.plate, b.side, 16.0)
        return soft(t - cav, edge) * soft(cav, edge) * soft(t - F32(0.5), 1.0)
    t = F32(b.thickness) * (F32(1.0) - x) ** F32(0.3)  # crescent with blunt ends
    return soft(t - cav, edge) * soft(cav, edge) * (x < 1)


def fraction(
    head: Head, b: Bleed, block: Block, sl: tuple[slice, slice, slice], comp: Compartments, edge: float
) -> np.ndarray:
    """Blood fraction of bleed ``b`` over the part ``sl`` of a painted block."""
    u, v, w = block.coords(sl)
    cav = comp.cavity[sl]
    s, br = head.shape, head.brain
    if b.kind in ("subdural", "epidural") and b.variant == "convexity":
        return _shell(head, b, u, v, w, cav, edge)
    if b.kind == "subdural" and b.variant == "falx":
        su = u * F32(b.side)
        along = np.clip(F32(1.0) - ((v - F32(b.centre[1])) * F32(1.0 / b.radius)) ** 2, 0.0, 1.0)
        t = F32(b.thickness) * np.sqrt(along)
        return (
            soft(su - F32(0.4), edge) * soft(t - su, edge) * soft(w - F32(b.centre[2]), 4.0) * soft(cav, edge)
        )
    if b.kind == "subdural":  # tentorium
        d = w - br.tentorium_height(u, v)
        lateral = np.clip(
            F32(1.0) - ((u * F32(b.side) - F32(b.centre[0])) * F32(1.0 / b.radius)) ** 2, 0.0, 1.0
        )
        t = F32(b.thickness) * np.sqrt(lateral)
        return soft(d, edge) * soft(t - d, edge) * soft(v - s.ridge(u, w), 2.0) * soft(cav, edge)
    du, dv, dw = u - F32(b.centre[0]), v - F32(b.centre[1]), w - F32(b.centre[2])
    dist = np.sqrt(du * du + dv * dv + dw * dw)
    if b.kind == "subarachnoid":
        ball = soft(F32(b.radius) - dist, 6.0)
        if b.variant == "basal":
            space = np.maximum(
                comp.cistern[sl],
                soft(F32(2.0) - comp.sulcus[sl], edge) * soft(F32(FAR - 1) - comp.sulcus[sl], 1.0),
            )
        else:
            pial = cav - F32(br.subarachnoid)
            space = np.maximum(soft(F32(b.thickness) - comp.sulcus[sl], edge), soft(-pial, edge))
            space *= soft(cav, edge)
        return ball * space * F32(b.fill)
    if b.kind == "intraventricular":
        vent = comp.ventricle[sl]
        if b.variant == "layer":
            y = block.y[sl[1]].astype(F32)[None, :, None]
            return vent * soft(y - F32(b.level_y), edge) * soft(v - F32(0.12 * s.b), 3.0)
        if b.variant == "side":
            return vent * soft(u * F32(b.side) - F32(1.0), edge)
        return vent * soft(F32(b.radius) - dist, 4.0)
    # intraparenchymal: a lobed ellipsoid
    a = b.axes.astype(F32)
    q0 = (a[0, 0] * du + a[0, 1] * dv + a[0, 2] * dw) * F32(1.0 / b.semi[0])
    q1 = (a[1, 0] * du + a[1, 1] * dv + a[1, 2] * dw) * F32(1.0 / b.semi[1])
    q2 = (a[2, 0] * du + a[2, 1] * dv + a[2, 2] * dw) * F32(1.0 / b.semi[2])
    rho = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2) + F32(1e-4)
    lobe = F32(1.0) + F32(0.12) * wave_sum(q0 / rho, q1 / rho, q2 / rho, *b.lobes)
    return soft((lobe - rho) * F32(float(np.mean(b.semi))), edge)


def paint_bleed(head: Head, b: Bleed, block: Block, comp: Compartments, out: np.ndarray, edge: float) -> None:
    """Paint bleed ``b`` into ``comp.hu`` and write its blood fraction into ``out`` (block shaped)."""
    lo, hi = b.lo, b.hi
    if b.edema > 0:
        lo, hi = lo - b.edema, hi + b.edema
    sl = block.region(lo, hi)
    if sl is None:
        return
    frac = fraction(head, b, block, sl, comp, edge)
    hu = comp.hu[sl]
    if b.kind == "intraparenchymal":
        if b.edema > 0:
            big = Bleed(
                b.kind,
                b.variant,
                0.0,
                b.lo,
                b.hi,
                b.centre,
                axes=b.axes,
                semi=b.semi + b.edema,
                lobes=b.lobes,
            )
            rim = fraction(head, big, block, sl, comp, 3.0) * (F32(1.0) - frac)
            hu -= rim * F32(6.0)
        value = np.maximum(comp.brain_hu[sl], F32(head.brain.white)) + F32(b.contrast)
    else:
        value = F32(head.brain.grey + b.contrast)
    blend(hu, value, frac)
    out[sl] = np.maximum(out[sl], frac)


# ---------------------------------------------------------------------------------------------------------------
# Drawing bleeds
# ---------------------------------------------------------------------------------------------------------------


def _contrast(rng: np.random.Generator, faint: bool) -> float:
    return float(rng.uniform(10.0, 20.0) if faint else rng.uniform(20.0, 50.0))


def _box(centre: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    return centre - r, centre + r


def _extra_axial(rng: np.random.Generator, head: Head, kind: str) -> Bleed:
    s = head.shape
    side = float(rng.choice([-1.0, 1.0]))
    lateral = 0.0 if side > 0 else 180.0
    big = np.array([s.a, s.b, s.c_up]) + 2.0
    if kind == "epidural":
        plate = str(rng.choice(["temporal", "parietal", "frontal", "occipital"], p=[0.45, 0.3, 0.15, 0.1]))
        az, el = {
            "temporal": (lateral + side * rng.uniform(-20, 20), rng.uniform(-15, 5)),
            "parietal": (lateral + side * rng.uniform(0, 40), rng.uniform(30, 55)),
            "frontal": (-90 + side * rng.uniform(20, 45), rng.uniform(5, 35)),
            "occipital": (90 - side * rng.uniform(15, 40), rng.uniform(0, 25)),
        }[plate]
        thickness = float(rng.uniform(5.0, 20.0))
        half = math.radians(rng.uniform(18.0, 34.0))
        return Bleed(kind, "convexity", _contrast(rng, False), -big, big, axis=direction(az, el),
                     half_angle=half, thickness=thickness, side=side, plate=plate)  # fmt: skip
    variant = str(rng.choice(["convexity", "falx", "tentorium"], p=[0.7, 0.15, 0.15]))
    thickness = float(rng.uniform(2.0, 10.0))
    contrast = _contrast(rng, thickness < 4 and rng.uniform() < 0.3)
    if variant == "convexity":
        az = lateral + side * rng.uniform(-55, 55)
        half = math.radians(rng.uniform(25.0, 65.0))
        return Bleed(kind, variant, contrast, -big, big, axis=direction(az, rng.uniform(-5, 45)),
                     half_angle=half, thickness=thickness, side=side)  # fmt: skip
    if variant == "falx":
        thickness = min(thickness, 6.0)
        centre = np.array([0.0, rng.uniform(-0.4, 0.3) * s.b, rng.uniform(0.15, 0.4) * s.c_up])
        length = float(rng.uniform(20.0, 50.0))
        lo = np.array([-thickness - 2, centre[1] - length - 2, centre[2] - 6])
        hi = np.array([thickness + 2, centre[1] + length + 2, s.c_up + 5])
        return Bleed(
            kind, variant, contrast, lo, hi, centre=centre, radius=length, thickness=thickness, side=side
        )
    thickness = min(thickness, 5.0)
    centre = np.array([rng.uniform(15, 35), 0.0, 0.0])
    length = float(rng.uniform(15.0, 35.0))
    lo = np.array([-s.a, -0.1 * s.b, -s.c_lo])
    hi = np.array([s.a, s.b, 0.1 * s.c_up])
    return Bleed(
        kind, variant, contrast, lo, hi, centre=centre, radius=length, thickness=thickness, side=side
    )


def _surface_point(head: Head, d: np.ndarray, inset: float) -> np.ndarray:
    p = (d * 40.0).astype(F32)
    _, surface = head.shape.radial(p[0:1], p[1:2], p[2:3])
    return d * (float(surface[0]) - inset)


def _subarachnoid(rng: np.random.Generator, head: Head) -> Bleed:
    s, br = head.shape, head.brain
    fill = float(rng.uniform(0.85, 1.0))
    if rng.uniform() < 0.45:
        centre = np.array([rng.uniform(-15, 15), -0.12 * s.b, -0.28 * s.c_up]) + rng.normal(0, 4, 3)
        radius = float(rng.uniform(20.0, 45.0))
        return Bleed("subarachnoid", "basal", _contrast(rng, False), *_box(centre, radius + 6), centre=centre,
                     radius=radius, fill=fill)  # fmt: skip
    side = float(rng.choice([-1.0, 1.0]))
    d = direction((0.0 if side > 0 else 180.0) + side * rng.uniform(-70, 70), rng.uniform(0, 60))
    centre = _surface_point(head, d, br.subarachnoid + 6.0)
    radius = float(rng.uniform(10.0, 30.0))
    return Bleed("subarachnoid", "sulcal", _contrast(rng, rng.uniform() < 0.3), *_box(centre, radius + 6),
                 centre=centre, radius=radius, thickness=float(rng.uniform(1.0, 2.2)), fill=fill)  # fmt: skip


def _intraventricular(rng: np.random.Generator, head: Head, pose: Pose) -> Bleed:
    s = head.shape
    lo, hi = head.brain.ventricle_box
    variant = str(rng.choice(["layer", "side", "cast"], p=[0.55, 0.2, 0.25]))
    contrast = _contrast(rng, False)
    side = float(rng.choice([-1.0, 1.0]))
    if variant == "layer":
        horn = pose.to_scanner(
            np.array([[side * 15.0, 0.42 * s.b, 0.07 * s.c_up], [-side * 15.0, 0.42 * s.b, 0.07 * s.c_up]])
        )
        level = float(horn[:, 1].max() + rng.uniform(-6.0, 2.0))
        return Bleed("intraventricular", variant, contrast, lo, hi, level_y=level)
    if variant == "side":
        return Bleed("intraventricular", variant, contrast, lo, hi, side=side)
    centre = np.array([0.0, rng.uniform(-0.1, 0.25) * s.b, rng.uniform(-0.45, 0.0) * s.c_up])
    return Bleed(
        "intraventricular", variant, contrast, lo, hi, centre=centre, radius=float(rng.uniform(15, 30))
    )


def _site_ok(head: Head, c: np.ndarray, r: float, where: str) -> bool:
    s, br = head.shape, head.brain
    p = c.astype(F32).reshape(3, 1)
    cav = s.cavity_depth(p[0], p[1], p[2])
    pial = float(cav[0]) - br.subarachnoid
    vent = float(br.ventricle_distance(p[0], p[1], p[2])[0])
    stem = float(br.brainstem.distance(p[0], p[1], p[2])[0])
    below = float(br.tentorium_height(p[0], p[1])[0]) > c[2] and c[1] > float(s.ridge(p[0], p[2])[0])
    if where == "pons":
        return stem < -r
    if pial < r + 1.5 or vent < r + 1.0 or stem < r + 2.0:
        return False
    if where == "cerebellar":
        return below
    if below or abs(c[0]) < r + 3.0:
        return False
    return where != "lobar" or pial < r + 28.0


def _intraparenchymal(rng: np.random.Generator, head: Head, clear: bool) -> Bleed | None:
    s = head.shape
    if clear:
        volume, contrast = float(rng.uniform(25.0, 40.0)), float(rng.uniform(45.0, 55.0))
    else:
        band = int(rng.choice(3, p=[0.5, 0.3, 0.2]))
        volume = float(np.exp(rng.uniform(*np.log([(0.03, 1.0), (1.0, 10.0), (10.0, 40.0)][band]))))
        contrast = _contrast(rng, band == 0 and rng.uniform() < 0.5)
    r = (volume * 1000.0 * 3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    where = (
        "deep"
        if clear
        else str(rng.choice(["lobar", "deep", "cerebellar", "pons"], p=[0.5, 0.3, 0.14, 0.06]))
    )
    if where == "pons" and r > 7.0:
        where = "deep"
    for _ in range(200):
        if where == "deep":
            nucleus = head.brain.nuclei[int(rng.integers(len(head.brain.nuclei)))]
            c = nucleus.centre + rng.normal(0.0, 4.0, 3)
        elif where == "pons":
            c = np.array([0.0, 0.02 * s.b, -0.42 * s.c_up]) + rng.normal(0.0, 2.0, 3)
        elif where == "cerebellar":
            c = np.array(
                [rng.uniform(-0.5, 0.5) * s.a, rng.uniform(0.3, 0.7) * s.b, rng.uniform(-0.8, -0.4) * s.c_up]
            )
        else:
            c = rng.uniform(-1.0, 1.0, 3) * np.array([s.a, s.b, s.c_up]) * 0.85
        if _site_ok(head, c, r, where):
            break
    else:
        return None
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    semi = r * rng.uniform(0.75, 1.3, 3)
    semi *= r / float(np.prod(semi)) ** (1.0 / 3.0)
    edema = float(rng.uniform(2.0, 6.0)) if volume > 3.0 else 0.0
    reach = float(semi.max()) * 1.2 + 2.0
    return Bleed("intraparenchymal", where, contrast, *_box(c, reach), centre=c, axes=q, semi=semi,
                 lobes=cosine_waves(rng, 5, (2.5, 4.0)), edema=edema)  # fmt: skip


def draw_bleed(
    rng: np.random.Generator, head: Head, pose: Pose, kind: str, clear: bool = False
) -> Bleed | None:
    """One bleed of ``kind`` in ``head``; None when no place was found for it."""
    if kind in ("subdural", "epidural"):
        return _extra_axial(rng, head, kind)
    if kind == "subarachnoid":
        return _subarachnoid(rng, head)
    if kind == "intraventricular":
        return _intraventricular(rng, head, pose)
    if kind == "intraparenchymal":
        return _intraparenchymal(rng, head, clear)
    raise ValueError(f"unknown bleed kind {kind!r}")
