"""The shape of one head of the second family: a Fourier-perturbed radial cranial cavity with fossae.

The cranial cavity is a radial surface: an ellipsoid whose radius is perturbed by a few azimuthal harmonics
that change with height (the fourth makes it boxier). Its floor steps down from the
anterior fossa over the orbits to the middle fossae and, behind the petrous ridges and clivus, to the
posterior fossa, which opens into the spinal canal through the foramen magnum. Skull, scalp and the sutures
that bound epidural haematomas are defined from the same surface. Head frame: u to the patient's left,
v posterior, w superior, millimetres from the centre of the cavity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from viewer.synth.other.fields import F32, soft

EPS = F32(1e-3)


@dataclass
class HeadShape:
    """Sizes and outline of one head, drawn by :func:`draw_shape`."""

    a: float  # cavity semi-axes: lateral, antero-posterior, up, down (mm)
    b: float
    c_up: float
    c_lo: float
    harm: np.ndarray  # (4, 2, 2): harmonic k, cos/sin, constant/height-slope
    lift: tuple[float, float]  # height terms of the radius
    t_skull: float  # mean vault thickness
    t_scalp: float
    t_base: float  # skull base plate
    anterior_floor: float  # heights of the fossa floors, in c_up
    middle_floor: float
    ridge_v: float  # petrous ridge / dorsum sellae position at the midline (mm, v)
    canal_v: float  # foramen magnum centre (v)
    canal_r: float

    @property
    def half_extent(self) -> np.ndarray:
        """Half size (u, v, w) of a box that holds the whole head down to the upper neck."""
        t = self.t_skull + self.t_scalp + 16.0
        return np.array([self.a + t, self.b + t + 12.0, self.c_up + t])

    def outline(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Relative radius (about 1) of the outline in the direction of each point: harmonics and height terms.

        Azimuthal harmonic k is weighted by sin(polar angle)**k, so the outline stays smooth at the poles.
        """
        inv = F32(1.0) / (np.sqrt(u * u + v * v + w * w) + EPS)
        c1, s1, ez = u * inv, v * inv, w * inv
        pert = F32(1.0) + (F32(self.lift[0]) + F32(self.lift[1]) * ez) * ez
        ck, sk = c1, s1
        for k in range(4):
            h = self.harm[k]
            pert += (F32(h[0, 0]) + F32(h[0, 1]) * ez) * ck
            pert += (F32(h[1, 0]) + F32(h[1, 1]) * ez) * sk
            if k < 3:
                ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        return pert

    def radial(
        self, u: np.ndarray, v: np.ndarray, w: np.ndarray, coarse: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Radial depth (mm) inside the outline surface, and the radius of that surface along the ray.

        ``coarse``: for (planes, rows, columns) grids, evaluate the slowly varying :meth:`outline` on every
        second voxel along each axis; on the working grid that moves the surface by at most about 0.25 mm.
        """
        if coarse and u.ndim == 3:
            sub = (slice(None, None, 2),) * 3
            pert = self.outline(u[sub], v[sub], w[sub])
            for axis in range(3):
                pert = np.repeat(pert, 2, axis=axis)
            pert = pert[: u.shape[0], : u.shape[1], : u.shape[2]]
        else:
            pert = self.outline(u, v, w)
        r = np.sqrt(u * u + v * v + w * w) + EPS
        q = (u * F32(1.0 / self.a)) ** 2 + (v * F32(1.0 / self.b)) ** 2
        cz = np.where(w > 0, F32(1.0 / self.c_up), F32(1.0 / self.c_lo)).astype(F32)
        q += (w * cz) ** 2
        rho = np.sqrt(q) + EPS
        scale = r / rho
        return (pert - rho) * scale, scale * pert

    def ridge(self, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """v of the front wall of the posterior fossa (petrous ridges, clivus) at (u, w)."""
        w_mid = -self.middle_floor * self.c_up
        return F32(self.ridge_v) + F32(0.55) * np.abs(u) - F32(0.45) * (w - F32(w_mid))

    def floor_depth(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Height (mm) above the cranial floor: anterior, middle and posterior fossae, foramen magnum."""
        c = self.c_up
        au = np.abs(u)
        ant = F32(-self.anterior_floor * c) - F32(5.0) * soft(F32(9.0) - au, 4.0)  # cribriform plate dips
        ant += F32(5.0) * np.exp(-(((au - F32(0.45 * self.a)) * F32(1 / 16.0)) ** 2))  # orbital roofs dome
        ant += F32(0.15) * np.maximum(F32(-0.6 * self.b) - v, F32(0.0))  # rising to the frontal bone
        ant += F32(1.5) * np.sin(u * F32(0.3)) * np.sin(v * F32(0.25))  # irregular roofs
        bowl = (au - F32(0.55 * self.a)) ** 2 + (v + F32(0.1 * self.b)) ** 2
        mid = (
            F32(-self.middle_floor * c) + F32(0.01) * bowl
        )  # middle fossae: bowls, deepest at the temporal lobes
        mid += F32(0.22 * c) * soft(F32(14.0) - au, 6.0)  # sphenoid body
        sphenoid_ridge = F32(-0.22 * self.b) - F32(0.35) * au + F32(0.006) * au * au  # arcs, convex forwards
        step = soft(v - sphenoid_ridge, 6.0)
        front = w - (ant + step * (mid - ant))
        back = (v - self.ridge(u, w)) * F32(0.9)
        depth = np.maximum(front, back)
        return np.maximum(depth, self._canal(u, v, w))

    def cavity_depth(
        self, u: np.ndarray, v: np.ndarray, w: np.ndarray, rad: np.ndarray | None = None
    ) -> np.ndarray:
        """Depth (mm) inside the cranial cavity (negative outside); ``rad`` is :meth:`radial`'s depth if known."""
        if rad is None:
            rad = self.radial(u, v, w)[0]
        return np.minimum(np.maximum(rad, self._canal(u, v, w)), self.floor_depth(u, v, w))

    def _canal(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Depth inside the foramen magnum and the spinal canal below it."""
        r = np.sqrt(u * u + (v - F32(self.canal_v)) ** 2)
        return np.minimum(F32(self.canal_r) - r, -w - F32(0.7 * self.c_up))

    def skull_thickness(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Vault thickness (mm) by direction: thicker frontally and occipitally, thin over the temples."""
        r = np.sqrt(u * u + v * v + w * w) + EPS
        ex, ey, ez = u / r, v / r, w / r
        t = F32(self.t_skull) * (F32(1.0) + F32(0.25) * ey * ey - F32(0.35) * ex * ex * (F32(1.0) - ez * ez))
        return np.maximum(t, F32(2.0))

    def plate(
        self, u: np.ndarray, v: np.ndarray, w: np.ndarray, which: str, side: float, edge: float = 3.0
    ) -> np.ndarray:
        """Soft indicator (0–1) of one skull bone of the vault, bounded by its sutures.

        ``which``: "frontal", "parietal", "temporal" or "occipital"; ``side`` +1 left, -1 right (the frontal
        and occipital bones span both sides); ``edge`` (mm): the width over which the indicator falls to 0
        inside the bone, at its sutures.
        """
        coronal = v - (F32(-0.12 * self.b) + F32(0.3) * w)
        lambdoid = v - (F32(0.62 * self.b) - F32(0.55) * w)
        squamosal = w - (F32(-0.05 * self.c_up) + F32(0.15) * v)

        def inside(d: np.ndarray) -> np.ndarray:  # d: mm inside the bone from the suture
            return soft(d - F32(0.5 * edge), edge)

        if which == "frontal":
            return inside(-coronal)
        if which == "occipital":
            return inside(lambdoid)
        between = inside(coronal) * inside(-lambdoid) * inside(F32(side) * u)
        return between * inside(squamosal if which == "parietal" else -squamosal)


def draw_shape(rng: np.random.Generator) -> HeadShape:
    """Draw the outline and fossae of one head."""
    u = rng.uniform
    scale = u(0.88, 1.1)
    a = 66.0 * scale * u(0.92, 1.08)
    b = 84.0 * scale * u(0.92, 1.08)
    c_up = 68.0 * scale * u(0.93, 1.07)
    harm = rng.normal(0.0, 1.0, (4, 2, 2)) * np.array([0.012, 0.022, 0.01, 0.007])[:, None, None]
    harm[0, 1, 0] = u(0.0, 0.045)  # occiput broader than the forehead
    harm[1, :, 1] *= 0.5
    harm[3, 0, 0] = u(0.0, 0.03)  # a boxier outline
    return HeadShape(
        a=a,
        b=b,
        c_up=c_up,
        c_lo=c_up * u(0.92, 1.02),
        harm=harm,
        lift=(u(-0.04, 0.03), u(-0.05, 0.02)),
        t_skull=u(5.0, 8.0),
        t_scalp=u(3.5, 7.0),
        t_base=u(3.0, 6.0),
        anterior_floor=u(0.26, 0.34),
        middle_floor=u(0.58, 0.68),
        ridge_v=-0.05 * b + u(-4.0, 4.0),
        canal_v=0.22 * b + u(-3.0, 3.0),
        canal_r=u(13.0, 17.0),
    )


def direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Head-frame unit vector: azimuth 0 towards the patient's left, 90 posterior; elevation up from axial."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
