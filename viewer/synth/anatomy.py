"""The anatomy of one phantom head, drawn from a seeded generator.

A head of varied size, shape and tissue values: scalp, a skull with diploe, a skull base with sinuses,
orbits, petrous bones and upper spine, brain with grey/white contrast and sulci, ventricles, cisterns, and
calcifications that must not be mistaken for blood. Anatomy lives in a head frame (u to the patient's left,
v posterior, w superior, millimetres from the centre of the cranial cavity); :mod:`viewer.synth.render`
rotates and shifts it into the patient frame (LPS) of the scanner. The cranial cavity and vault are smooth implicit surfaces; the
other structures are soft-edged ellipsoids painted in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from viewer.synth.numeric import ramp, rotation, sigmoid

_F32 = np.float32


@dataclass
class Ellipsoid:
    """A soft-edged ellipsoid in the head frame; ``role`` says what painting it does to the bookkeeping."""

    center: np.ndarray  # (3,) head frame mm
    semi: np.ndarray  # (3,) semi-axes mm
    axes: np.ndarray  # (3, 3) rows: unit axis directions in the head frame
    hu: float
    role: str = "tissue"  # "tissue" | "csf" (subarachnoid space) | "ventricle" | "honeycomb"
    outside: bool = False  # sticks out of the head outline (nose, pinna)

    def alpha(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, inv_edge: float) -> np.ndarray:
        """Soft inside weight at head-frame points: 0 outside, 1 inside, a ramp across the surface."""
        du, dv, dw = u - _F32(self.center[0]), v - _F32(self.center[1]), w - _F32(self.center[2])
        a = self.axes.astype(_F32)
        s = self.semi.astype(_F32)
        q0 = (a[0, 0] * du + a[0, 1] * dv + a[0, 2] * dw) / s[0]
        q1 = (a[1, 0] * du + a[1, 1] * dv + a[1, 2] * dw) / s[1]
        q2 = (a[2, 0] * du + a[2, 1] * dv + a[2, 2] * dw) / s[2]
        rho = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2) + _F32(1e-4)
        grad = np.sqrt((q0 / s[0]) ** 2 + (q1 / s[1]) ** 2 + (q2 / s[2]) ** 2) / rho + _F32(1e-6)
        return ramp((1.0 - rho) / grad, inv_edge)


def ellipsoid(
    center: Sequence[float],
    semi: Sequence[float],
    hu: float,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    role: str = "tissue",
    outside: bool = False,
) -> Ellipsoid:
    """An :class:`Ellipsoid` turned by ``yaw_deg`` about w, then ``pitch_deg`` about u."""
    axes = rotation(math.radians(yaw_deg), math.radians(pitch_deg), 0.0).T
    return Ellipsoid(np.asarray(center, float), np.asarray(semi, float), axes, float(hu), role, outside)


class Head:
    """Anatomy of one phantom head: sizes, tissue values and structures, all drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator) -> None:
        u = rng.uniform
        scale = u(0.9, 1.08)
        self.a = 68.0 * scale * u(0.93, 1.07)  # cranial cavity semi-axes: lateral, AP, up, down (mm)
        self.b = 85.0 * scale * u(0.93, 1.07)
        self.c_up = 70.0 * scale * u(0.94, 1.06)
        self.c_lo = 68.0 * scale * u(0.95, 1.05)  # below the equator the cavity is a cubic bowl
        # Outline harmonics: k = 1..4, cosine and sine terms, each a + b * (w / c_up).
        self.harm = rng.normal(0.0, 1.0, (4, 2, 2)) * np.array([0.012, 0.02, 0.012, 0.008])[:, None, None]
        self.harm[0, 1, 0] = u(0.02, 0.055)  # the occiput is broader than the forehead
        self.t_skull = u(4.0, 6.0)
        self.t_scalp = u(3.5, 6.5)
        self.t_temporalis = u(3.0, 8.0)
        self.t_base = u(2.0, 3.5)
        self.t_fat = u(1.5, 4.0)
        atrophy = u(0.0, 1.0) ** 1.5
        self.t_sas = 0.7 + 2.3 * atrophy  # subarachnoid space over the convexity
        self.sulcal_depth = u(9.0, 16.0) + 5.0 * atrophy
        self.sulcal_width = 0.22 + 0.25 * atrophy  # in units of the folding field
        self.grey_width = u(0.85, 1.15)
        self.vent = u(0.7, 1.1) + 0.7 * atrophy + u(0.0, 0.3)
        self.grey = u(36.0, 40.0)
        self.white = min(u(26.0, 30.0), self.grey - 7.0)
        self.csf = u(2.0, 9.0)
        self.brain = 0.5 * (self.grey + self.white)
        self.table = u(1500.0, 1900.0)
        self.diploe = u(550.0, 850.0)
        self.scalp = u(30.0, 45.0)
        self.falx = self.brain + u(12.0, 30.0)
        self.subcortical_bh = u(0.0, 4.0)  # mild hyperdensity under the inner table (beam hardening)
        self.streak = u(4.0, 12.0) if u() < 0.6 else 0.0  # dark band between the petrous bones
        self.frontal_sinus = u() < 0.75
        sx, sy, sz = self.a / 68.0, self.b / 85.0, self.c_up / 70.0
        self.ref_scale = np.array([sx, sy, 0.5 * (sz + self.c_lo / 68.0)])
        self.face, self.late, self.cavity_prims, self.calcs = self._structures(rng)

    # Geometry of the cavity ---------------------------------------------------------------------------------

    def floor(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height of the anterior and middle fossa floors under (u, v); the posterior fossa is the bowl itself."""
        a, b, c = self.a, self.b, self.c_lo
        ua = np.abs(u) * _F32(1.0 / a)
        # The lesser sphenoid wings sweep back laterally; the petrous ridges run back and out from the clivus.
        s1 = sigmoid((v + b * (0.40 - 0.25 * ua * ua)) * _F32(0.25))
        s2 = sigmoid((v - b * (-0.08 + 0.35 * ua)) * _F32(0.25))
        # Anterior fossa: orbital roofs domed upwards either side of a lower cribriform plate.
        side = (np.abs(u) - _F32(0.42 * a)) * _F32(1.0 / (0.2 * a))
        f_ant = -0.35 * c + 6.0 / (1.0 + side * side) - 4.0 / (1.0 + u * u * _F32(1.0 / 36.0))
        f_mid, f_post = -0.66 * c, -2.0 * c
        floor = f_ant + (f_mid - f_ant) * s1 + (f_post - f_mid) * s2
        floor += 12.0 / (1.0 + u * u * _F32(1.0 / 200.0)) * (s1 - s2)  # sphenoid body, sella
        return floor

    def cavity(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
        """Depth below the inner table (mm, positive inside), height above the fossa floor, cos/sin of θ.

        The cavity is ``(u/a)² + (v/b)² + |w/c|^p < 1`` with outline harmonics in θ = atan2(v, u); p = 2 above
        the equator and 3 below, a flat-bottomed bowl like the posterior fossa. Depth is the first-order
        distance ``(1 - ρ) / |∇ρ|``, good to a fraction of a millimetre near the surface, where it matters.
        """
        r = np.sqrt(u * u + v * v) + _F32(1e-3)
        ct, st = u / r, v / r
        wn = w * _F32(1.0 / self.c_up)
        shape = np.ones_like(u)
        ck, sk = ct, st
        for k in range(4):
            h = self.harm[k]
            shape += (_F32(h[0, 0]) + _F32(h[0, 1]) * wn) * ck + (_F32(h[1, 0]) + _F32(h[1, 1]) * wn) * sk
            ck, sk = ck * ct - sk * st, sk * ct + ck * st
        ia = _F32(1.0 / self.a) / shape
        ib = _F32(1.0 / self.b) / shape
        qa, qb = u * ia, v * ib
        icu, icl = _F32(1.0 / self.c_up), _F32(1.0 / self.c_lo)
        wu = np.maximum(w, 0.0) * icu
        # Below the equator the bowl is deepest at the foramen magnum and rises towards the occiput and clivus.
        dv = v - _F32(0.2 * self.b)
        lift = 0.4 * (np.sqrt(dv * dv + 0.5 * u * u + 36.0) - 6.0)
        wl = np.minimum(w + lift, 0.0) * icl
        wl2 = wl * wl
        qc = wu * wu - wl2 * wl
        dqc = wu * (2.0 * icu) - wl2 * (3.0 * icl)
        rho = np.sqrt(qa * qa + qb * qb + qc) + _F32(1e-4)
        grad = np.sqrt((2.0 * qa * ia) ** 2 + (2.0 * qb * ib) ** 2 + dqc * dqc) / (2.0 * rho)
        depth = (1.0 - rho) / (grad + _F32(1e-6))
        return depth, w - self.floor(u, v), ct, st

    def skull_thickness(self, ct: np.ndarray, st: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Vault thickness (mm) by direction (cos, sin of θ) and height: thicker behind, thin at the temples."""
        c2 = ct * ct
        x = (w + _F32(0.45 * self.c_lo)) * _F32(1.0 / 22.0)
        temporal = c2 * c2 / (1.0 + x * x)
        back = np.maximum(st, 0.0)
        return self.t_skull * (1.0 + 0.25 * back * back - 0.5 * temporal)

    def scalp_thickness(self, ct: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Scalp thickness (mm), with the temporalis muscle over the sides of the head."""
        c2 = ct * ct
        x = (w + _F32(0.2 * self.c_lo)) * _F32(1.0 / 25.0)
        return self.t_scalp + self.t_temporalis * c2 * c2 / (1.0 + x * x)

    def face_depth(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Depth under the skin of the face and neck, an elliptic cylinder below the cranium."""
        rim = self.t_skull + self.t_scalp
        narrowing = sigmoid((-w - 1.25 * self.c_lo) / 8.0)
        fa = (self.a + rim) * (0.95 - 0.2 * narrowing)
        fb = (self.b + rim) * (0.96 - 0.12 * narrowing)
        qa, qb = u / fa, (v + 0.03 * self.b) / fb
        rho = np.sqrt(qa * qa + qb * qb) + _F32(1e-4)
        grad = np.sqrt((qa / fa) ** 2 + (qb / fb) ** 2) / rho + _F32(1e-6)
        return (1.0 - rho) / grad

    def face_top(self) -> float:
        """Head-frame height (mm) of the top of the face and neck; above it there is only the cranium."""
        return -0.25 * self.c_lo

    def ventricle_alpha(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """How much each point lies inside a ventricle, 0 to 1 (edges 1 mm wide)."""
        out = np.zeros(np.shape(u), _F32)
        for e in self.cavity_prims:
            if e.role == "ventricle":
                np.maximum(out, e.alpha(u, v, w, 1.0), out=out)
        return out

    # Structures ---------------------------------------------------------------------------------------------

    def _structures(
        self, rng: np.random.Generator
    ) -> tuple[list[Ellipsoid], list[Ellipsoid], list[Ellipsoid], list[Ellipsoid]]:
        """Ellipsoids placed on a reference head (a=68, b=85, c=70 mm) and scaled to this one."""
        k = self.ref_scale
        j = rng.normal

        def at(x: float, y: float, z: float, jitter: float = 1.5) -> tuple[float, float, float]:
            return x * k[0] + j(0, jitter), y * k[1] + j(0, jitter), z * k[2] + j(0, jitter)

        face: list[Ellipsoid] = []
        late: list[Ellipsoid] = []
        cav: list[Ellipsoid] = []
        calcs: list[Ellipsoid] = []
        grey, white, csf = self.grey, self.white, self.csf
        fat, air = -90.0, -1000.0
        for s in (-1.0, 1.0):
            # Orbit: bony wall, fat, globe, lens, optic nerve.
            oc = at(31 * s, -63, -38)
            face.append(ellipsoid((oc[0], oc[1] + 5, oc[2]), (17.5, 17, 17.5), 750.0))  # open in front
            face.append(ellipsoid(oc, (16, 20, 16), fat))
            face.append(ellipsoid((oc[0], oc[1] - 9, oc[2]), (11.5, 11.5, 11.5), 12.0))
            face.append(ellipsoid((oc[0], oc[1] - 20.5, oc[2]), (4.5, 1.8, 4.5), 95.0))
            face.append(ellipsoid((oc[0] - 8 * s, oc[1] + 12, oc[2]), (2.5, 13, 2.5), 32.0, yaw_deg=-25 * s))
            # Maxillary sinus in its bony shell; zygomatic arch; mandibular ramus; parapharyngeal fat.
            mc = at(27 * s, -55, -76)
            face.append(ellipsoid(mc, (16.5, 19, 19), 800.0))
            face.append(ellipsoid(mc, (14, 16.5, 17), air))
            cheek = 0.95 * (self.a + self.t_skull + self.t_scalp) - 9.0
            face.append(ellipsoid((s * cheek, -38 * k[1], -52 * k[2]), (3.5, 24, 4), 1300.0, yaw_deg=-12 * s))
            face.append(ellipsoid(at(50 * s, -8, -82), (5, 11, 22), 1200.0))
            face.append(ellipsoid(at(17 * s, -22, -88), (6, 10, 16), fat))
            # Ear: pinna outside the skin, external canal, mastoid air cells.
            ear = 0.93 * (self.a + self.t_skull + self.t_scalp)
            face.append(ellipsoid((s * (ear + 4), 8 * k[1], -40 * k[2]), (3.5, 14, 24), 30.0, outside=True))
            face.append(ellipsoid((s * (ear - 10), 5 * k[1], -48 * k[2]), (14, 3.5, 3.5), air))
            face.append(ellipsoid(at(50 * s, 12, -52), (11, 13, 14), 0.0, role="honeycomb"))
            # Occipital condyles, lateral masses of C1.
            face.append(ellipsoid(at(17 * s, 9, -72), (8, 12, 8), 1150.0))
            face.append(ellipsoid(at(20 * s, 12, -84), (9, 11, 7), 1000.0))
            # Petrous ridge: dense bone pointing anteromedially, drawn over the cavity edge.
            late.append(ellipsoid(at(33 * s, 6, -47), (28, 6.5, 7), rng.uniform(1700, 2100), yaw_deg=-42 * s))
        # Midline face and base.
        face.append(ellipsoid(at(0, -100, -72), (11, 14, 26), 35.0, outside=True))  # nose
        face.append(ellipsoid(at(0, -72, -74), (13, 28, 22), -960.0))  # nasal cavity
        face.append(ellipsoid(at(0, -72, -74), (1.3, 26, 20), 250.0))  # septum
        for s in (-1.0, 1.0):
            face.append(ellipsoid(at(8 * s, -70, -82), (4, 22, 5), 40.0))  # inferior turbinate
        face.append(ellipsoid(at(0, -62, -32), (11, 20, 11), -650.0))  # ethmoid cells
        sc = at(0, -28, -48)
        face.append(ellipsoid(sc, (15.5, 13.5, 12.5), 900.0))  # sphenoid body
        face.append(ellipsoid(sc, (13, 11, 10), air))  # sphenoid sinus
        if self.frontal_sinus:  # in a thickened frontal bone above the nose
            wf = -10 * k[2]
            inside, _, _, _ = self.cavity(*(np.array([x], _F32) for x in (0.0, -self.b, wf)))
            front = self.b + float(inside[0]) + 0.5 * self.t_skull
            face.append(ellipsoid((0, -front, wf), (14, 0.5 * self.t_skull + 2.0, 11), self.table))
            face.append(ellipsoid((0, -front - 0.5, wf), (rng.uniform(6, 12), 2.5, 7), air))
        face.append(ellipsoid(at(0, -55, -87), (20, 24, 2.5), 900.0))  # hard palate
        face.append(ellipsoid(at(0, -24, -94), (14, 7, 22), air))  # pharynx
        face.append(ellipsoid(at(0, -6, -82), (9, 4, 5), 1000.0))  # anterior arch of C1
        face.append(ellipsoid(at(0, 42, -80), (20, 5, 5), 1000.0))  # posterior arch of C1
        c2 = at(0, 2, -96)
        face.append(ellipsoid(c2, (7, 7, 14), 1100.0))  # dens and body of C2: cortex, then marrow
        face.append(ellipsoid(c2, (5, 5, 12.5), 300.0))
        # Upper neck: mandible around the tongue, parotids, airway, C3 with its arch and spinous process.
        mand = at(0, -45, -116)
        face.append(ellipsoid(mand, (40, 45, 9), 1200.0))
        face.append(ellipsoid((mand[0], mand[1] + 7, mand[2]), (33, 40, 10), 45.0))
        for s in (-1.0, 1.0):
            face.append(ellipsoid(at(40 * s, -2, -104), (11, 15, 18), 10.0))  # parotid
            face.append(ellipsoid(at(11 * s, 31, -116), (3.5, 9, 6), 950.0, yaw_deg=25 * s))  # lamina
        face.append(ellipsoid(at(0, -22, -122), (12, 6, 20), air))  # oropharynx
        c3 = at(0, 4, -122)
        face.append(ellipsoid(c3, (9, 8, 9), 1050.0))
        face.append(ellipsoid(c3, (7, 6, 8), 300.0))
        face.append(ellipsoid(at(0, 44, -118), (4, 10, 6), 950.0))  # spinous process
        face.append(ellipsoid((0, 0.2 * self.b, -self.c_lo - 3), (14, 16, 9), csf))  # foramen magnum
        face.append(ellipsoid(at(0, 20, -90), (9.5, 9.5, 36), csf))  # spinal canal
        face.append(ellipsoid(at(0, 20, -90), (6, 6, 36), 32.0))  # cord
        late.append(ellipsoid(at(0, -10, -60), (9, 7, 21), 1000.0, pitch_deg=-30))  # clivus

        # Inside the cranial cavity.
        vw = self.vent
        gap = 1.5  # half the septum pellucidum
        for s in (-1.0, 1.0):
            cav.append(ellipsoid(at(36 * s, -6, -2), (3, 18, 12), grey))  # insular cortex
            cav.append(ellipsoid(at(39.5 * s, -6, -2), (1.6, 17, 11), csf, role="csf"))  # sylvian cistern
            cav.append(ellipsoid(at((13 + 5.5 * vw) * s, -22, 14), (4.5, 9, 10), grey))  # caudate head
            cav.append(ellipsoid(at(23 * s, -6, 0), (6.5, 15, 10), grey - 1.0, yaw_deg=10 * s))  # lentiform
            cav.append(ellipsoid(at(10 * s, 9, 2), (8.5, 13, 9), grey - 2.0))  # thalamus
            cav.append(ellipsoid(at(46 * s, -22, -22), (14, 2.2, 16), csf, yaw_deg=-10 * s, role="csf"))
        cav.append(ellipsoid(at(0, -18, -26), (13, 10, 6), csf, role="csf"))  # suprasellar cistern
        cav.append(ellipsoid(at(0, 4, -18), (14, 13.5, 9.5), csf, role="csf"))  # ambient cistern
        cav.append(ellipsoid(at(0, 22, -12), (9, 6, 7), csf, role="csf"))  # quadrigeminal cistern
        cav.append(ellipsoid(at(0, 3, -18), (12.5, 11.5, 10), white + 3.0))  # midbrain
        cav.append(ellipsoid(at(0, -6, -40), (14.5, 14.5, 14), csf, role="csf"))  # prepontine cistern
        cav.append(ellipsoid(at(0, 0, -41), (14, 13, 15), white + 3.0))  # pons
        cav.append(ellipsoid(at(0, 12, -60), (9.5, 9, 14), white + 3.0))  # medulla
        for s in (-1.0, 1.0):
            uw = 6.5 * vw
            cav.append(
                ellipsoid(at((gap + uw * 0.9) * s, -28, 18), (uw * 0.9, 13, 10), csf, 15 * s, 0, "ventricle")
            )
            cav.append(ellipsoid(at((gap + uw) * s, -2, 26), (uw, 24, 7 + vw), csf, role="ventricle"))
            cav.append(ellipsoid(at((14 + 5 * vw) * s, 26, 15), (8 * vw, 11, 10), csf, role="ventricle"))
            cav.append(
                ellipsoid(at((20 + 3 * vw) * s, 42, 11), (4 * vw, 12, 6), csf, -15 * s, 0, "ventricle")
            )
            cav.append(ellipsoid(at(30 * s, -12, -22), (3.5 * vw, 13, 4.5), csf, 10 * s, 0, "ventricle"))
        cav.append(ellipsoid(at(0, -4, -6), (2.2 * vw, 13, 9), csf, role="ventricle"))  # third
        cav.append(ellipsoid(at(0, 19, -46), (7, 4.5, 8), csf, role="ventricle"))  # fourth

        # Calcifications: bright, small, and not blood.
        if rng.uniform() < 0.55:
            for s in (-1.0, 1.0):
                r = rng.uniform(1.5, 3.5)
                calcs.append(ellipsoid(at((14 + 5 * vw) * s, 27, 15), (r, r * 1.3, r), rng.uniform(110, 300)))
        if rng.uniform() < 0.45:
            r = rng.uniform(1.5, 3.0)
            calcs.append(ellipsoid(at(0, 16, -4), (r, r, r), rng.uniform(100, 250)))
        if rng.uniform() < 0.2:
            calcs.append(
                ellipsoid(
                    at(0, rng.uniform(-50, 50), rng.uniform(20, 55)),
                    (0.9, rng.uniform(3, 8), 4),
                    rng.uniform(150, 400),
                )
            )
        if rng.uniform() < 0.08:
            for s in (-1.0, 1.0):
                calcs.append(ellipsoid(at(23 * s, -8, 0, 4.0), (2, 2.5, 2), rng.uniform(90, 180)))
        return face, late, cav, calcs

    def tentorium(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height of the tentorium, the roof of the posterior fossa: it slopes down backwards and sideways."""
        b, c = self.b, self.c_lo
        back = np.clip((v - 0.1 * b) * _F32(1.0 / (0.8 * b)), 0.0, 1.0)
        side = u * _F32(1.0 / self.a)
        return -0.22 * c - 0.3 * c * back - 0.12 * c * side * side

    def cerebellum(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Weight of the posterior fossa below the tentorium."""
        return sigmoid((self.tentorium(u, v) - w) / 1.2) * sigmoid((v - 0.06 * self.b) / 1.5)

    def core(self, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Where the hemispheres are joined (corpus callosum, diencephalon): no interhemispheric fissure."""
        q = ((v - 0.02 * self.b) / (0.47 * self.b)) ** 2 + ((w + 0.05 * self.c_up) / (0.42 * self.c_up)) ** 2
        return ramp(1.0 - q, 8.0)
