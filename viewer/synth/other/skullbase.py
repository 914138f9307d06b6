"""The skull base of one head of the second family: what the lowest slices of a head CT cut through.

Under the cranial floor: soft tissue of the face and upper neck; orbits with globes, lenses, optic nerves and
fat; the sphenoid body with its sinus, the clivus, dense petrous bones, honeycombed ethmoid and mastoid air
cells, the maxillary sinuses, a frontal sinus in the frontal bone, the nasopharynx and the atlas around the
cord. Everything is painted outside the cranial cavity only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.synth.other.brain import Blob, Tube
from viewer.synth.other.fields import F32, Block, blend, soft
from viewer.synth.other.head import HeadShape

AIR = -1000.0


@dataclass
class SkullBase:
    """Structures under the cranial floor, drawn by :func:`draw_base`."""

    bone: list[Blob]  # solid bone: sphenoid body, frontal sinus shell
    dense: list[Tube]  # petrous bones, clivus
    petrous_hu: float
    bone_hu: float
    air: list[Blob]  # sinuses, nasal cavity (and its septum) and nasopharynx, painted in order
    honeycomb: list[Blob]  # ethmoid and mastoid cells
    orbits: list[tuple[Tube, Blob, Blob, Tube]]  # cone, globe, lens, optic nerve
    soft_hu: float
    fat_hu: float


def draw_base(rng: np.random.Generator, s: HeadShape) -> SkullBase:
    """Draw the skull base under the cavity ``s``."""
    u = rng.uniform
    a, b, c = s.a, s.b, s.c_up
    w_af = -s.anterior_floor * c
    w_mf = -s.middle_floor * c
    petrous = []
    for side in (-1.0, 1.0):
        petrous.append(
            Tube(np.array([[side * 13, s.ridge_v + 5, w_mf + 4], [side * 0.45 * a, 0.12 * b, w_mf - 2],
                           [side * 0.68 * a, 0.28 * b, w_mf - 6]]), np.array([5.0, 7.5, 7.0]) * u(0.9, 1.1))
        )  # fmt: skip
    clivus = Tube(
        np.array([[0.0, s.ridge_v + 3, w_mf + 0.2 * c], [0.0, s.canal_v - s.canal_r - 4, -0.98 * c]]),
        np.array([5.0, 6.5]),
    )
    sphenoid = Blob(np.array([0.0, -0.2 * b, -0.62 * c]), np.array([13.0, 15.0, 12.0]), 2.0, 0.0, 0.0)
    frontal_size = u(0.0, 1.0) if u() < 0.85 else 0.0
    bone = [sphenoid]
    air = [
        Blob(np.array([0.0, -0.25 * b, -0.6 * c]), np.array([10.0, 11.0, 9.0]) * u(0.6, 1.0), 2.0, 0.0, AIR),
        Blob(
            np.array([0.0, -0.35 * b, -1.12 * c]), np.array([12.0, 8.0, 10.0]), 2.0, 0.0, AIR
        ),  # nasopharynx
    ]
    nasal = np.array([0.0, -0.86 * b, w_af - 42])
    air.append(Blob(nasal, np.array([10.0, 0.26 * b, 20.0]), 2.0, 0.0, AIR))
    air.append(Blob(nasal, np.array([1.0, 0.25 * b, 19.0]), 2.0, 0.0, 300.0))  # septum
    for side in (-1.0, 1.0):  # maxillary sinuses
        air.append(Blob(np.array([side * 0.36 * a, -0.8 * b, w_af - 45]), np.array([14.0, 16.0, 15.0]) * u(0.85, 1.1),
                        2.0, 0.0, AIR))  # fmt: skip
    if frontal_size > 0.1:
        # In the frontal bone, bulging its outer table a little into the scalp.
        semi = np.array([8 + 14 * frontal_size, 3.0, 6 + 10 * frontal_size])
        centre = np.array([0.0, -(b + s.t_skull * 0.5 + 1.0), -0.02 * c])
        bone.append(Blob(centre, semi + [2.0, 1.5, 2.0], 2.0, 0.0, 0.0))
        air.append(Blob(centre, semi, 2.0, 0.0, AIR))
    honey = [Blob(np.array([0.0, -0.78 * b, w_af - 18]), np.array([11.0, 0.3 * b, 16.0]), 2.0, 0.0, 0.0)]
    mastoid = u(0.6, 1.2)
    for side in (-1.0, 1.0):
        honey.append(Blob(np.array([side * (a - 12), 0.3 * b, w_mf - 10]), np.array([8.0, 11.0, 11.0]) * mastoid,
                          2.0, 0.0, 0.0))  # fmt: skip
    orbits = []
    for side in (-1.0, 1.0):
        g = np.array([side * 0.46 * a, -(b + 1.0), w_af - 13.0])
        r = u(11.0, 12.5)
        apex = np.array([side * 12.0, -0.4 * b, w_af - 9.0])
        cone = Tube(np.stack([apex, g + [0, 3.0, 0]]), np.array([3.0, 12.0]))
        globe = Blob(g, np.array([r, r, r]), 2.0, 0.0, u(5.0, 15.0))
        lens = Blob(g + [0.0, -r + 2.5, 0.0], np.array([4.5, 2.0, 4.5]), 2.0, 0.0, u(80.0, 120.0))
        nerve = Tube(np.stack([apex, g]), np.array([2.0, 2.5]))
        orbits.append((cone, globe, lens, nerve))
    return SkullBase(
        bone=bone,
        dense=[*petrous, clivus],
        petrous_hu=u(2100.0, 2700.0),
        bone_hu=u(700.0, 1100.0),
        air=air,
        honeycomb=honey,
        orbits=orbits,
        soft_hu=u(40.0, 60.0),
        fat_hu=u(-110.0, -80.0),
    )


def _honeycomb(u: np.ndarray, v: np.ndarray, w: np.ndarray, cell: float) -> np.ndarray:
    """Bone fraction of air cells ``cell`` mm across: thin septa between air."""
    k = F32(np.pi / cell)
    m = np.minimum(np.abs(np.sin(u * k + F32(0.7) * np.sin(v * k * F32(0.5)))), np.abs(np.sin(v * k)))
    np.minimum(m, np.abs(np.sin(w * k + F32(0.5) * np.sin(u * k * F32(0.6)))), out=m)
    return soft(F32(0.25) - m, 0.3)


def paint_base(
    base: SkullBase,
    s: HeadShape,
    block: Block,
    hu: np.ndarray,
    outside: np.ndarray,
    rad: np.ndarray,
    edge: float,
) -> None:
    """Paint the skull base into ``hu`` where ``outside`` (1 outside the cranial cavity, 0 inside) allows.

    ``rad`` is the radial depth of :meth:`HeadShape.radial` over the block.
    """
    for blob in base.bone:
        sl = block.region(*blob.box)
        if sl is not None:
            blend(hu[sl], base.bone_hu, soft(blob.depth(*block.coords(sl)), edge) * outside[sl])
    for i, tube in enumerate(base.dense):
        sl = block.region(*tube.box)
        if sl is not None:
            value = base.petrous_hu if i < len(base.dense) - 1 else base.bone_hu * 1.2  # the last: clivus
            blend(hu[sl], value, soft(-tube.distance(*block.coords(sl)), edge) * outside[sl])
    for blob in base.honeycomb:
        sl = block.region(*blob.box)
        if sl is not None:
            u, v, w = block.coords(sl)
            alpha = soft(blob.depth(u, v, w), 2.0) * outside[sl] * soft(rad[sl] + F32(s.t_skull), edge)
            blend(hu[sl], AIR + (base.bone_hu - AIR) * _honeycomb(u, v, w, 4.5), alpha)
    for blob in base.air:
        sl = block.region(*blob.box)
        if sl is not None:
            blend(hu[sl], blob.hu, soft(blob.depth(*block.coords(sl)), edge) * outside[sl])
    for cone, globe, lens, nerve in base.orbits:
        lo_o, hi_o = cone.box
        lo_g, hi_g = globe.box
        sl = block.region(np.minimum(lo_o, lo_g), np.maximum(hi_o, hi_g))
        if sl is None:
            continue
        u, v, w = block.coords(sl)
        o, h = outside[sl], hu[sl]
        d = cone.distance(u, v, w)
        wall = soft(F32(1.0) - d, edge) * soft(w - F32(globe.centre[2] - 8.0), 3.0) * o
        blend(h, 0.6 * base.bone_hu, wall)  # thin orbital walls
        blend(h, base.fat_hu, soft(-d, edge) * o)
        blend(h, 35.0, soft(-nerve.distance(u, v, w), edge) * o)
        gd = globe.depth(u, v, w)
        blend(h, 45.0, soft(gd, edge) * o)  # sclera
        blend(h, globe.hu, soft(gd - F32(1.2), edge) * o)
        blend(h, lens.hu, soft(lens.depth(u, v, w), edge) * o)
    # The atlas: a bony ring around the cord below the foramen magnum.
    lo = np.array([-s.canal_r - 10, s.canal_v - s.canal_r - 14, -1.35 * s.c_up])
    hi = np.array([s.canal_r + 10, s.canal_v + s.canal_r + 10, -1.12 * s.c_up])
    sl = block.region(lo, hi)
    if sl is not None:
        u, v, w = block.coords(sl)
        r = np.sqrt(u * u + (v - F32(s.canal_v)) ** 2)
        alpha = soft(r - F32(s.canal_r + 1.0), edge) * soft(F32(s.canal_r + 7.0) - r, edge)
        alpha *= soft(w + F32(1.33 * s.c_up), edge) * soft(F32(-1.14 * s.c_up) - w, edge)
        blend(hu[sl], base.bone_hu, alpha)
