"""The brain of one head of the second family: layout drawn from a seed, and its structures as fields.

Gyri come from a labyrinth of random plane waves of one wavelength evaluated on the cortical surface and
carried radially inwards, so sulci run perpendicular to the surface as they do; grey matter lines every
sulcus, the interhemispheric and sylvian fissures. Ventricles are one connected system of tube chains
(lateral ventricles with frontal, occipital and temporal horns, foramina, third ventricle, aqueduct, fourth
ventricle); deep nuclei, cisterns and calcifications are superquadrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.synth.other.fields import F32, cosine_waves, soft, superquadric, tube_chain, wave_sum
from viewer.synth.other.head import HeadShape


@dataclass
class Blob:
    """A superquadric structure of the brain or skull base."""

    centre: np.ndarray
    semi: np.ndarray
    power: float
    yaw: float
    hu: float

    def depth(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Approximate depth (mm, positive inside)."""
        return superquadric(u, v, w, self.centre, self.semi, self.power, self.yaw)

    @property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """A head-frame box that holds it."""
        r = float(np.max(self.semi)) + 3.0
        return self.centre - r, self.centre + r


@dataclass
class Tube:
    """A chain of round cones (ventricle parts, brainstem, petrous bones)."""

    points: np.ndarray  # (n, 3)
    radii: np.ndarray  # (n,)

    def distance(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Signed distance (mm, negative inside)."""
        return tube_chain(u, v, w, self.points, list(self.radii))

    @property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """A head-frame box that holds it."""
        r = float(self.radii.max()) + 3.0
        return self.points.min(axis=0) - r, self.points.max(axis=0) + r


@dataclass
class Brain:
    """Layout and tissue values of one brain, drawn by :func:`draw_brain`."""

    grey: float
    white: float
    csf: float
    atrophy: float
    subarachnoid: float  # width of the CSF layer over the brain (mm)
    grey_thickness: float
    sulcus_half: float
    sulcus_depth: float
    gyri: tuple[np.ndarray, np.ndarray]  # plane waves of the gyral labyrinth
    gyri_depth: tuple[np.ndarray, np.ndarray]
    folia: tuple[np.ndarray, np.ndarray]
    fissure_half: float
    sylvian: tuple[float, float, float, float]  # height, v at that height, half width, insula |u|
    tentorium: tuple[float, float, float]  # height at the incisura, slope backwards, lateral droop
    ventricles: list[Tube]
    brainstem: Tube
    nuclei: list[Blob]
    cisterns: list[Blob]
    calcifications: list[Blob] = field(default_factory=list)

    @property
    def k_gyri(self) -> float:
        """Mean wave number of the gyral labyrinth (rad/mm)."""
        return float(np.linalg.norm(self.gyri[0], axis=1).mean())

    def tentorium_height(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """w of the tentorium above (u, v)."""
        w0, slope, droop = self.tentorium
        return F32(w0) - F32(slope) * np.maximum(v, F32(0.0)) - F32(droop) * u * u

    def ventricle_distance(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Signed distance (mm, negative inside) to the ventricular system."""
        d = self.ventricles[0].distance(u, v, w)
        for t in self.ventricles[1:]:
            np.minimum(d, t.distance(u, v, w), out=d)
        return d

    @property
    def ventricle_box(self) -> tuple[np.ndarray, np.ndarray]:
        """A head-frame box that holds the ventricular system."""
        boxes = [t.box for t in self.ventricles]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def _tube(points: list[tuple[float, float, float]], radii: list[float]) -> Tube:
    return Tube(np.asarray(points, float), np.asarray(radii, float))


def _ventricles(rng: np.random.Generator, s: HeadShape, size: float) -> list[Tube]:
    a, b, c = s.a, s.b, s.c_up
    g = size
    tubes = []
    for side in (-1.0, 1.0):
        j = rng.uniform(0.9, 1.1)  # mild asymmetry
        lat = _tube(
            [
                (side * 9 * g, -0.42 * b, 0.14 * c),  # frontal horn tip
                (side * (7 + 4 * g), -0.2 * b, 0.24 * c),
                (side * (8 + 6 * g), 0.1 * b, 0.25 * c),  # body
                (side * (13 + 8 * g), 0.32 * b, 0.1 * c),  # atrium
                (side * (11 + 6 * g), 0.55 * b, 0.04 * c),  # occipital horn
            ],
            [2.5 * g * j, 4.5 * g * j, 4.5 * g * j, 7.0 * g * j, 2.0 * g * j],
        )
        temporal = _tube(
            [(side * (13 + 8 * g), 0.32 * b, 0.1 * c), (side * 0.42 * a, 0.12 * b, -0.2 * c),
             (side * 0.42 * a, -0.12 * b, -0.33 * c)],
            [3.0 * g * j, 1.8 * g, 1.3 * g],
        )  # fmt: skip
        monro = _tube([(side * (7 + 4 * g), -0.2 * b, 0.2 * c), (0.0, -0.16 * b, 0.08 * c)], [2.0, 1.5])
        tubes += [lat, temporal, monro]
    third_w = 1.2 + 2.5 * g * rng.uniform(0.6, 1.0)
    tubes.append(
        _tube(
            [(0.0, -0.18 * b, 0.06 * c), (0.0, -0.02 * b, 0.04 * c), (0.0, 0.06 * b, -0.06 * c)],
            [third_w, third_w, third_w * 0.8],
        )  # fmt: skip
    )
    tubes.append(_tube([(0.0, 0.08 * b, -0.12 * c), (0.0, 0.18 * b, -0.38 * c)], [1.0, 1.0]))  # aqueduct
    tubes.append(
        _tube(
            [(0.0, 0.2 * b, -0.4 * c), (0.0, 0.24 * b, -0.5 * c), (0.0, 0.22 * b, -0.62 * c)],
            [2.0, 3.5 + 1.5 * g, 1.5],
        )  # fmt: skip
    )
    return tubes


def draw_brain(rng: np.random.Generator, s: HeadShape) -> Brain:
    """Draw the brain inside the cavity ``s``: tissue values, atrophy, gyri, ventricles, cisterns."""
    u = rng.uniform
    a, b, c = s.a, s.b, s.c_up
    atrophy = u(0.0, 1.0) ** 1.6
    grey = u(35.0, 42.0)
    white = grey - u(6.0, 12.0)
    vsize = u(0.75, 1.0) + 0.6 * atrophy
    nuclei = []
    for side in (-1.0, 1.0):
        nuclei += [
            Blob(np.array([side * (10 + 5 * vsize), -0.34 * b, 0.12 * c]), np.array([6.0, 10.0, 9.0]), 2.0,
                 0.0, grey - u(0.0, 2.0)),  # caudate head
            Blob(np.array([side * 0.36 * a, -0.08 * b, 0.0]), np.array([6.5, 17.0, 10.0]), 2.0,
                 side * 0.15, grey - u(0.0, 2.5)),  # lentiform nucleus
            Blob(np.array([side * 0.16 * a, 0.08 * b, 0.02 * c]), np.array([9.0, 13.0, 9.0]), 2.0, 0.0,
                 grey - u(1.0, 3.0)),  # thalamus
        ]  # fmt: skip
    brainstem = _tube(
        [(0.0, 0.04 * b, 0.0), (0.0, 0.05 * b, -0.18 * c), (0.0, 0.02 * b, -0.42 * c),
         (0.0, s.canal_v - 0.06 * b, -0.72 * c), (0.0, s.canal_v, -1.05 * c), (0.0, s.canal_v, -1.6 * c)],
        [9.0, 11.0, 13.5, 9.0, 6.0, 5.5],
    )  # fmt: skip
    cisterns = [
        Blob(np.array([0.0, -0.16 * b, -0.3 * c]), np.array([12.0, 9.0, 5.0]) * u(0.9, 1.2), 2.0, 0.0, 0.0),
        Blob(np.array([0.0, 0.2 * b, -0.08 * c]), np.array([9.0, 6.0, 6.0]) * u(0.9, 1.3), 2.0, 0.0, 0.0),
        Blob(np.array([0.0, 0.62 * b, -0.8 * c]), np.array([10.0, 12.0, 10.0]) * u(0.6, 1.5), 2.0, 0.0, 0.0),
    ]
    calcs = []
    if u() < 0.6:  # pineal
        r = u(1.5, 4.0)
        calcs.append(
            Blob(np.array([0.0, 0.14 * b, -0.02 * c]), np.array([r, r * 1.2, r]), 2.0, 0.0, u(90, 500))
        )
    if u() < 0.5:  # choroid plexus glomus in both atria
        r = u(2.0, 4.0)
        for side in (-1.0, 1.0):
            calcs.append(Blob(np.array([side * (13 + 8 * vsize), 0.32 * b, 0.1 * c]), np.array([r, r * 1.3, r]),
                              2.0, 0.0, u(60, 300)))  # fmt: skip
    if u() < 0.25:  # falx plaque
        calcs.append(Blob(np.array([0.0, u(-0.5, 0.3) * b, u(0.3, 0.75) * c]), np.array([1.2, u(4, 12), u(3, 8)]),
                          2.0, 0.0, u(200, 900)))  # fmt: skip
    if u() < 0.2:  # basal ganglia, faint and punctate
        for side in (-1.0, 1.0):
            calcs.append(Blob(np.array([side * 0.3 * a, -0.06 * b, -0.02 * c]), np.array([2.0, 3.0, 2.0]),
                              2.0, 0.0, u(60, 160)))  # fmt: skip
    if u() < 0.3:  # carotid siphons
        for side in (-1.0, 1.0):
            calcs.append(Blob(np.array([side * 15.0, -0.2 * b, -0.5 * c]), np.array([2.5, 4.0, 3.0]), 2.0,
                              0.0, u(150, 700)))  # fmt: skip
    return Brain(
        grey=grey,
        white=white,
        csf=u(2.0, 10.0),
        atrophy=atrophy,
        subarachnoid=u(0.8, 1.8) + 3.0 * atrophy,
        grey_thickness=u(2.3, 3.2),
        sulcus_half=u(0.55, 0.85) + 1.3 * atrophy,
        sulcus_depth=u(8.0, 14.0),
        gyri=cosine_waves(rng, 16, (19.0, 25.0)),
        gyri_depth=cosine_waves(rng, 4, (50.0, 90.0)),
        folia=cosine_waves(rng, 1, (4.0, 5.5)),
        fissure_half=u(0.7, 1.3) + 2.0 * atrophy,
        sylvian=(u(-0.2, -0.08) * c, u(-0.14, -0.04) * b, u(0.8, 1.5) + 2.0 * atrophy, u(0.5, 0.58) * a),
        tentorium=(-u(0.1, 0.2) * c, u(0.3, 0.45), u(0.003, 0.006)),
        ventricles=_ventricles(rng, s, vsize),
        brainstem=brainstem,
        nuclei=nuclei,
        cisterns=cisterns,
        calcifications=calcs,
    )


@dataclass
class Cortex:
    """Fields of the cerebral cortex at some points: sulcal CSF, the distance to it, grey matter."""

    csf: np.ndarray  # fraction of CSF in sulci and fissures
    sulcus: np.ndarray  # distance (mm) to the middle of the nearest sulcus or fissure
    grey: np.ndarray  # fraction of grey matter
    sylvian: np.ndarray  # fraction of CSF in the sylvian fissures (part of ``csf``)


def cortex(
    brain: Brain,
    s: HeadShape,
    u: np.ndarray,
    v: np.ndarray,
    w: np.ndarray,
    pial: np.ndarray,
    surface_scale: np.ndarray,
    edge: float,
) -> Cortex:
    """Cortical fields at points with depth ``pial`` (mm) under the brain surface.

    ``surface_scale`` projects a point radially onto the cavity surface, where the gyral labyrinth is drawn.
    """
    pu, pv, pw = u * surface_scale, v * surface_scale, w * surface_scale
    nu = np.abs(wave_sum(pu, pv, pw, *brain.gyri))
    sulc = nu * F32(1.0 / (0.8 * brain.k_gyri))
    depth = F32(brain.sulcus_depth) + F32(3.0) * wave_sum(pu, pv, pw, *brain.gyri_depth)
    half = F32(brain.sulcus_half)
    csf = soft(half - sulc, edge) * soft(depth - pial, 2.0)
    far = F32(99.0)
    gap = np.maximum(sulc - half, F32(0.0))
    below = np.maximum(pial - depth, F32(0.0))
    e = np.minimum(pial, np.sqrt(gap * gap + below * below))

    # Interhemispheric fissure: full depth in front of and behind the corpus callosum, above it elsewhere.
    au = np.abs(u - F32(0.6) * np.sin(v * F32(0.05)))
    limit = np.maximum(w - F32(0.3 * s.c_up) - F32(0.12 * s.c_up) * (v * F32(1.0 / s.b)) ** 2,
                       np.abs(v + F32(0.05 * s.b)) - F32(0.45 * s.b))  # fmt: skip
    fh = F32(brain.fissure_half)
    csf = np.maximum(csf, soft(fh - au, edge) * soft(limit, 2.0))
    gap = np.maximum(au - fh, F32(0.0))
    np.minimum(e, np.sqrt(gap * gap + np.maximum(-limit, F32(0.0)) ** 2), out=e)
    sulc = np.where(pial < depth, sulc, far)
    np.minimum(sulc, np.where(limit > 0, au, far), out=sulc)

    # Sylvian fissures: a cleft from the lateral surface in to the insula, rising backwards, and the insular
    # cistern along the insula.
    w_mid, v0, sh, insula = brain.sylvian
    dw = w - F32(w_mid)
    au = np.abs(u)
    sylvian = np.zeros_like(csf)
    for dist, lim, half in (
        (np.abs(v - F32(v0) - F32(0.8) * dw + F32(2.5) * np.sin(au * F32(0.15))), np.minimum(au - F32(insula), F32(0.2 * s.c_up) - np.abs(dw)), sh),
        (np.abs(au - F32(insula + 1.5) + F32(1.5) * np.sin(v * F32(0.12))),
         np.minimum(F32(0.2 * s.b) - np.abs(v - F32(v0 + 0.04 * s.b)), F32(0.16 * s.c_up) - np.abs(dw)), 0.6 * sh),
    ):  # fmt: skip
        np.maximum(sylvian, soft(F32(half) - dist, edge) * soft(lim, 2.0), out=sylvian)
        gap = np.maximum(dist - F32(half), F32(0.0))
        np.minimum(e, np.sqrt(gap * gap + np.maximum(-lim, F32(0.0)) ** 2), out=e)
        np.minimum(sulc, np.where(lim > 0, dist, far), out=sulc)
    csf = np.maximum(csf, sylvian)
    grey = soft(F32(brain.grey_thickness) - e, 1.5)
    return Cortex(csf, sulc, grey, sylvian)
