"""Synthetic non-contrast head CT studies with and without hyperdense bleeds, written as real DICOM series.

No dataset can be downloaded here, so the default model learns from these phantoms, the tests read them and
``make run`` opens one. Each study is drawn from a seeded generator: a head of varied size, shape, position and
rotation with scalp, a skull with diploe, a skull base with sinuses, orbits, petrous bones and upper spine,
brain with grey/white contrast and sulci, ventricles, cisterns, calcifications that must not be mistaken for
blood, mild beam-hardening-like nonuniformity and correlated noise. Half of the studies get bleeds:
intraparenchymal, subdural crescents or subarachnoid blood in sulci and cisterns, from a few millimetres on one
or two slices to large haematomas, 15–50 HU above brain under 4–10 HU of noise. Per-slice and per-voxel ground
truth goes beside the DICOM in ``labels.json`` and ``masks/<SeriesInstanceUID>.npz``.

Anatomy lives in a head frame (u to the patient's left, v posterior, w superior, millimetres from the centre of
the cranial cavity) that is rotated and shifted into the patient frame (LPS) of the scanner. Tissues are drawn
painter-style with soft edges one pixel wide, so boundaries carry partial-volume values; bleeds are averaged
over the 5 mm slab of each slice, so a small bleed that only grazes a slice is faint there and not labelled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid
from scipy import ndimage

from viewer.errors import CancelledError, ViewerError
from viewer.synth.writer import (
    SeriesMeta,
    axial_geometry,
    series_folder_name,
    sop_instance_uid,
    write_ct_series,
)

LABELS_FORMAT = "gru-viewer-phantom-labels"
LABELS_VERSION = 1
KINDS = ("intraparenchymal", "subdural", "subarachnoid")
SLICE_THICKNESS_MM = 5.0
HU_MIN, HU_MAX = -1024.0, 3071.0
# A slice counts as showing a bleed only where at least this much of it is bleed; smaller slivers are dropped
# from the mask so that labels only claim what a reader could see.
MIN_SLICE_AREA_MM2 = 3.0

_FIRST_NAMES = (
    "ALICE", "BORIS", "CLARA", "DMITRI", "EDITH", "FELIX", "GRETA", "HUGO", "INES", "JONAS", "KAREN", "LEON",
    "MARTA", "NIKO", "OLGA", "PAVEL", "QUINN", "ROSA", "SVEN", "TILDA", "ULRIK", "VERA", "WILMA", "XAVIER",
    "YARA", "ZENO", "AMIR", "BEATA", "CYRIL", "DAGNY", "EMIL", "FRIDA", "GUNNAR", "HEDDA", "IVAN", "JUNO",
)  # fmt: skip

_F32 = np.float32


# --------------------------------------------------------------------------------------------------------------
# Public data


@dataclass(frozen=True, slots=True)
class LesionInfo:
    """One bleed of a study: its kind, contrast above brain, and extent of its mask."""

    kind: str
    contrast_hu: float
    size_mm: float  # largest extent of its mask along x, y or z
    volume_ml: float
    first_slice: int  # slice indices (ascending along the normal, i.e. inferior to superior)
    last_slice: int

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "contrast_hu": round(self.contrast_hu, 2),
            "size_mm": round(self.size_mm, 2),
            "volume_ml": round(self.volume_ml, 3),
            "first_slice": self.first_slice,
            "last_slice": self.last_slice,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> LesionInfo:
        return cls(
            str(d["kind"]),
            float(d["contrast_hu"]),  # type: ignore[arg-type]
            float(d["size_mm"]),  # type: ignore[arg-type]
            float(d["volume_ml"]),  # type: ignore[arg-type]
            int(d["first_slice"]),  # type: ignore[call-overload]
            int(d["last_slice"]),  # type: ignore[call-overload]
        )


@dataclass
class PhantomStudy:
    """One synthetic head CT in memory, before it is written.

    ``hu`` and ``mask`` are (z, y, x) with index 0 the most inferior slice; rows run anterior to posterior and
    columns from the patient's right to left, as an axial image is displayed.
    """

    hu: np.ndarray  # (z, y, x) float32 HU
    spacing: tuple[float, float, float]  # (dz, dy, dx) mm
    mask: np.ndarray  # (z, y, x) bool, bleed voxels
    slice_labels: np.ndarray  # (z,) uint8
    label: int  # 1 if any bleed
    kind: str  # "none" or the bleed kinds joined by "+"
    lesions: list[LesionInfo] = field(default_factory=list)
    contrast_hu: float | None = None  # the most conspicuous bleed's contrast above brain
    size_mm: float | None = None  # the largest bleed extent
    noise_hu: float = 0.0  # standard deviation of the added noise
    z0_mm: float = 0.0  # patient z of the first (most inferior) slice centre

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])


@dataclass
class StudyLabels:
    """Ground truth of one written phantom study, as kept in ``labels.json``."""

    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    series_dir: Path
    label: int
    kind: str
    contrast_hu: float | None
    size_mm: float | None
    noise_hu: float
    lesions: list[LesionInfo]
    sop_uids: list[str]  # ascending along the slice normal
    slice_labels: np.ndarray  # (z,) uint8, same order as sop_uids
    mask_path: Path

    @property
    def slice_labels_by_sop(self) -> dict[str, int]:
        return {uid: int(v) for uid, v in zip(self.sop_uids, self.slice_labels, strict=True)}

    def load_mask(self) -> np.ndarray:
        """The (z, y, x) bool bleed mask, slices ascending along the normal like ``sop_uids``."""
        with np.load(self.mask_path) as data:
            return data["mask"].astype(bool)

    def to_dict(self, root: Path) -> dict[str, object]:
        return {
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "series_dir": self.series_dir.relative_to(root).as_posix(),
            "label": self.label,
            "kind": self.kind,
            "contrast_hu": None if self.contrast_hu is None else round(self.contrast_hu, 2),
            "size_mm": None if self.size_mm is None else round(self.size_mm, 2),
            "noise_hu": round(self.noise_hu, 2),
            "lesions": [les.to_dict() for les in self.lesions],
            "n_slices": len(self.sop_uids),
            "sop_uids": list(self.sop_uids),
            "slice_labels": [int(v) for v in self.slice_labels],
            "slice_labels_by_sop": self.slice_labels_by_sop,
            "mask": self.mask_path.relative_to(root).as_posix(),
        }


@dataclass
class PhantomManifest:
    """Everything ``labels.json`` says about a phantom dataset; paths are absolute."""

    root: Path
    seed: int
    matrix: int
    studies: list[StudyLabels]

    @property
    def labels_path(self) -> Path:
        return self.root / "labels.json"

    def by_series(self, series_uid: str) -> StudyLabels:
        for s in self.studies:
            if s.series_uid == series_uid:
                return s
        raise KeyError(series_uid)


# --------------------------------------------------------------------------------------------------------------
# Small numeric helpers


def _ramp(x: np.ndarray, inv_edge: float) -> np.ndarray:
    """Soft step of width ``1 / inv_edge`` centred on 0: 0 below, 1 above (partial volume at edges)."""
    out = np.multiply(x, _F32(inv_edge), dtype=_F32)
    out += _F32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _paint(dst: np.ndarray, value: np.ndarray | float, alpha: np.ndarray) -> None:
    """``dst = dst + alpha * (value - dst)`` in place."""
    dst += alpha * (value - dst)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (radians) about z, then x, then y; columns are the rotated frame's axes."""
    cz, sz = math.cos(yaw), math.sin(yaw)
    cx, sx = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(roll), math.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return rz @ rx @ ry


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=_F32)))


@dataclass(frozen=True, slots=True)
class _Box:
    """Rows r0:r1 and columns c0:c1 of a slice."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def empty(self) -> bool:
        return self.r1 <= self.r0 or self.c1 <= self.c0

    def within(self, outer: _Box) -> _Box:
        return _Box(
            max(self.r0, outer.r0), min(self.r1, outer.r1), max(self.c0, outer.c0), min(self.c1, outer.c1)
        )

    def rel(self, outer: _Box) -> tuple[slice, slice]:
        """Index of this box inside arrays that cover ``outer``."""
        return slice(self.r0 - outer.r0, self.r1 - outer.r0), slice(self.c0 - outer.c0, self.c1 - outer.c0)

    def union(self, other: _Box) -> _Box:
        if self.empty:
            return other
        if other.empty:
            return self
        return _Box(
            min(self.r0, other.r0), max(self.r1, other.r1), min(self.c0, other.c0), max(self.c1, other.c1)
        )


_EMPTY = _Box(0, 0, 0, 0)


class _SmoothField:
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
        mid = self.slice(len(zs) // 2, _Box(0, ys.size, 0, xs.size))
        self._planes = planes / _F32(max(float(mid.std()), 1e-6))

    def slice(self, k: int, box: _Box) -> np.ndarray:
        j0, j1 = self._sy[box.r0, 0], self._sy[box.r1 - 1, 1]
        i0, i1 = self._sx[box.c0, 0], self._sx[box.c1 - 1, 1]
        t = np.einsum("jk,lk->jl", self._planes[k, j0:j1, i0:i1], self._wx[box.c0 : box.c1, i0:i1])
        return np.einsum("rj,jl->rl", self._wy[box.r0 : box.r1, j0:j1], t)


# --------------------------------------------------------------------------------------------------------------
# Anatomy


@dataclass
class _Ellipsoid:
    """A soft-edged ellipsoid in the head frame; ``role`` says what painting it does to the bookkeeping."""

    center: np.ndarray  # (3,) head frame mm
    semi: np.ndarray  # (3,) semi-axes mm
    axes: np.ndarray  # (3, 3) rows: unit axis directions in the head frame
    hu: float
    role: str = "tissue"  # "tissue" | "csf" (subarachnoid space) | "ventricle" | "honeycomb"
    outside: bool = False  # sticks out of the head outline (nose, pinna)

    def alpha(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, inv_edge: float) -> np.ndarray:
        du, dv, dw = u - _F32(self.center[0]), v - _F32(self.center[1]), w - _F32(self.center[2])
        a = self.axes.astype(_F32)
        s = self.semi.astype(_F32)
        q0 = (a[0, 0] * du + a[0, 1] * dv + a[0, 2] * dw) / s[0]
        q1 = (a[1, 0] * du + a[1, 1] * dv + a[1, 2] * dw) / s[1]
        q2 = (a[2, 0] * du + a[2, 1] * dv + a[2, 2] * dw) / s[2]
        rho = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2) + _F32(1e-4)
        grad = np.sqrt((q0 / s[0]) ** 2 + (q1 / s[1]) ** 2 + (q2 / s[2]) ** 2) / rho + _F32(1e-6)
        return _ramp((1.0 - rho) / grad, inv_edge)


def _ellipsoid(
    center: Sequence[float],
    semi: Sequence[float],
    hu: float,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    role: str = "tissue",
    outside: bool = False,
) -> _Ellipsoid:
    axes = _rotation(math.radians(yaw_deg), math.radians(pitch_deg), 0.0).T
    return _Ellipsoid(np.asarray(center, float), np.asarray(semi, float), axes, float(hu), role, outside)


class _Head:
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
        s1 = _sigmoid((v + b * (0.40 - 0.25 * ua * ua)) * _F32(0.25))
        s2 = _sigmoid((v - b * (-0.08 + 0.35 * ua)) * _F32(0.25))
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
        c2 = ct * ct
        x = (w + _F32(0.45 * self.c_lo)) * _F32(1.0 / 22.0)
        temporal = c2 * c2 / (1.0 + x * x)
        back = np.maximum(st, 0.0)
        return self.t_skull * (1.0 + 0.25 * back * back - 0.5 * temporal)

    def scalp_thickness(self, ct: np.ndarray, w: np.ndarray) -> np.ndarray:
        c2 = ct * ct
        x = (w + _F32(0.2 * self.c_lo)) * _F32(1.0 / 25.0)
        return self.t_scalp + self.t_temporalis * c2 * c2 / (1.0 + x * x)

    def face_depth(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Depth under the skin of the face and neck, an elliptic cylinder below the cranium."""
        rim = self.t_skull + self.t_scalp
        narrowing = _sigmoid((-w - 1.25 * self.c_lo) / 8.0)
        fa = (self.a + rim) * (0.95 - 0.2 * narrowing)
        fb = (self.b + rim) * (0.96 - 0.12 * narrowing)
        qa, qb = u / fa, (v + 0.03 * self.b) / fb
        rho = np.sqrt(qa * qa + qb * qb) + _F32(1e-4)
        grad = np.sqrt((qa / fa) ** 2 + (qb / fb) ** 2) / rho + _F32(1e-6)
        return (1.0 - rho) / grad

    def face_top(self) -> float:
        return -0.25 * self.c_lo

    def ventricle_alpha(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(u), _F32)
        for e in self.cavity_prims:
            if e.role == "ventricle":
                np.maximum(out, e.alpha(u, v, w, 1.0), out=out)
        return out

    # Structures ---------------------------------------------------------------------------------------------

    def _structures(
        self, rng: np.random.Generator
    ) -> tuple[list[_Ellipsoid], list[_Ellipsoid], list[_Ellipsoid], list[_Ellipsoid]]:
        """Ellipsoids placed on a reference head (a=68, b=85, c=70 mm) and scaled to this one."""
        k = self.ref_scale
        j = rng.normal

        def at(x: float, y: float, z: float, jitter: float = 1.5) -> tuple[float, float, float]:
            return x * k[0] + j(0, jitter), y * k[1] + j(0, jitter), z * k[2] + j(0, jitter)

        face: list[_Ellipsoid] = []
        late: list[_Ellipsoid] = []
        cav: list[_Ellipsoid] = []
        calcs: list[_Ellipsoid] = []
        grey, white, csf = self.grey, self.white, self.csf
        fat, air = -90.0, -1000.0
        for s in (-1.0, 1.0):
            # Orbit: bony wall, fat, globe, lens, optic nerve.
            oc = at(31 * s, -63, -38)
            face.append(_ellipsoid((oc[0], oc[1] + 5, oc[2]), (17.5, 17, 17.5), 750.0))  # open in front
            face.append(_ellipsoid(oc, (16, 20, 16), fat))
            face.append(_ellipsoid((oc[0], oc[1] - 9, oc[2]), (11.5, 11.5, 11.5), 12.0))
            face.append(_ellipsoid((oc[0], oc[1] - 20.5, oc[2]), (4.5, 1.8, 4.5), 95.0))
            face.append(_ellipsoid((oc[0] - 8 * s, oc[1] + 12, oc[2]), (2.5, 13, 2.5), 32.0, yaw_deg=-25 * s))
            # Maxillary sinus in its bony shell; zygomatic arch; mandibular ramus; parapharyngeal fat.
            mc = at(27 * s, -55, -76)
            face.append(_ellipsoid(mc, (16.5, 19, 19), 800.0))
            face.append(_ellipsoid(mc, (14, 16.5, 17), air))
            cheek = 0.95 * (self.a + self.t_skull + self.t_scalp) - 9.0
            face.append(
                _ellipsoid((s * cheek, -38 * k[1], -52 * k[2]), (3.5, 24, 4), 1300.0, yaw_deg=-12 * s)
            )
            face.append(_ellipsoid(at(50 * s, -8, -82), (5, 11, 22), 1200.0))
            face.append(_ellipsoid(at(17 * s, -22, -88), (6, 10, 16), fat))
            # Ear: pinna outside the skin, external canal, mastoid air cells.
            ear = 0.93 * (self.a + self.t_skull + self.t_scalp)
            face.append(_ellipsoid((s * (ear + 4), 8 * k[1], -40 * k[2]), (3.5, 14, 24), 30.0, outside=True))
            face.append(_ellipsoid((s * (ear - 10), 5 * k[1], -48 * k[2]), (14, 3.5, 3.5), air))
            face.append(_ellipsoid(at(50 * s, 12, -52), (11, 13, 14), 0.0, role="honeycomb"))
            # Occipital condyles, lateral masses of C1.
            face.append(_ellipsoid(at(17 * s, 9, -72), (8, 12, 8), 1150.0))
            face.append(_ellipsoid(at(20 * s, 12, -84), (9, 11, 7), 1000.0))
            # Petrous ridge: dense bone pointing anteromedially, drawn over the cavity edge.
            late.append(
                _ellipsoid(at(33 * s, 6, -47), (28, 6.5, 7), rng.uniform(1700, 2100), yaw_deg=-42 * s)
            )
        # Midline face and base.
        face.append(_ellipsoid(at(0, -100, -72), (11, 14, 26), 35.0, outside=True))  # nose
        face.append(_ellipsoid(at(0, -72, -74), (13, 28, 22), -960.0))  # nasal cavity
        face.append(_ellipsoid(at(0, -72, -74), (1.3, 26, 20), 250.0))  # septum
        for s in (-1.0, 1.0):
            face.append(_ellipsoid(at(8 * s, -70, -82), (4, 22, 5), 40.0))  # inferior turbinate
        face.append(_ellipsoid(at(0, -62, -32), (11, 20, 11), -650.0))  # ethmoid cells
        sc = at(0, -28, -48)
        face.append(_ellipsoid(sc, (15.5, 13.5, 12.5), 900.0))  # sphenoid body
        face.append(_ellipsoid(sc, (13, 11, 10), air))  # sphenoid sinus
        if self.frontal_sinus:  # in a thickened frontal bone above the nose
            wf = -10 * k[2]
            inside, _, _, _ = self.cavity(*(np.array([x], _F32) for x in (0.0, -self.b, wf)))
            front = self.b + float(inside[0]) + 0.5 * self.t_skull
            face.append(_ellipsoid((0, -front, wf), (14, 0.5 * self.t_skull + 2.0, 11), self.table))
            face.append(_ellipsoid((0, -front - 0.5, wf), (rng.uniform(6, 12), 2.5, 7), air))
        face.append(_ellipsoid(at(0, -55, -87), (20, 24, 2.5), 900.0))  # hard palate
        face.append(_ellipsoid(at(0, -24, -94), (14, 7, 22), air))  # pharynx
        face.append(_ellipsoid(at(0, -6, -82), (9, 4, 5), 1000.0))  # anterior arch of C1
        face.append(_ellipsoid(at(0, 42, -80), (20, 5, 5), 1000.0))  # posterior arch of C1
        c2 = at(0, 2, -96)
        face.append(_ellipsoid(c2, (7, 7, 14), 1100.0))  # dens and body of C2: cortex, then marrow
        face.append(_ellipsoid(c2, (5, 5, 12.5), 300.0))
        # Upper neck: mandible around the tongue, parotids, airway, C3 with its arch and spinous process.
        mand = at(0, -45, -116)
        face.append(_ellipsoid(mand, (40, 45, 9), 1200.0))
        face.append(_ellipsoid((mand[0], mand[1] + 7, mand[2]), (33, 40, 10), 45.0))
        for s in (-1.0, 1.0):
            face.append(_ellipsoid(at(40 * s, -2, -104), (11, 15, 18), 10.0))  # parotid
            face.append(_ellipsoid(at(11 * s, 31, -116), (3.5, 9, 6), 950.0, yaw_deg=25 * s))  # lamina
        face.append(_ellipsoid(at(0, -22, -122), (12, 6, 20), air))  # oropharynx
        c3 = at(0, 4, -122)
        face.append(_ellipsoid(c3, (9, 8, 9), 1050.0))
        face.append(_ellipsoid(c3, (7, 6, 8), 300.0))
        face.append(_ellipsoid(at(0, 44, -118), (4, 10, 6), 950.0))  # spinous process
        face.append(_ellipsoid((0, 0.2 * self.b, -self.c_lo - 3), (14, 16, 9), csf))  # foramen magnum
        face.append(_ellipsoid(at(0, 20, -90), (9.5, 9.5, 36), csf))  # spinal canal
        face.append(_ellipsoid(at(0, 20, -90), (6, 6, 36), 32.0))  # cord
        late.append(_ellipsoid(at(0, -10, -60), (9, 7, 21), 1000.0, pitch_deg=-30))  # clivus

        # Inside the cranial cavity.
        vw = self.vent
        gap = 1.5  # half the septum pellucidum
        for s in (-1.0, 1.0):
            cav.append(_ellipsoid(at(36 * s, -6, -2), (3, 18, 12), grey))  # insular cortex
            cav.append(_ellipsoid(at(39.5 * s, -6, -2), (1.6, 17, 11), csf, role="csf"))  # sylvian cistern
            cav.append(_ellipsoid(at((13 + 5.5 * vw) * s, -22, 14), (4.5, 9, 10), grey))  # caudate head
            cav.append(_ellipsoid(at(23 * s, -6, 0), (6.5, 15, 10), grey - 1.0, yaw_deg=10 * s))  # lentiform
            cav.append(_ellipsoid(at(10 * s, 9, 2), (8.5, 13, 9), grey - 2.0))  # thalamus
            cav.append(_ellipsoid(at(46 * s, -22, -22), (14, 2.2, 16), csf, yaw_deg=-10 * s, role="csf"))
        cav.append(_ellipsoid(at(0, -18, -26), (13, 10, 6), csf, role="csf"))  # suprasellar cistern
        cav.append(_ellipsoid(at(0, 4, -18), (14, 13.5, 9.5), csf, role="csf"))  # ambient cistern
        cav.append(_ellipsoid(at(0, 22, -12), (9, 6, 7), csf, role="csf"))  # quadrigeminal cistern
        cav.append(_ellipsoid(at(0, 3, -18), (12.5, 11.5, 10), white + 3.0))  # midbrain
        cav.append(_ellipsoid(at(0, -6, -40), (14.5, 14.5, 14), csf, role="csf"))  # prepontine cistern
        cav.append(_ellipsoid(at(0, 0, -41), (14, 13, 15), white + 3.0))  # pons
        cav.append(_ellipsoid(at(0, 12, -60), (9.5, 9, 14), white + 3.0))  # medulla
        for s in (-1.0, 1.0):
            uw = 6.5 * vw
            cav.append(
                _ellipsoid(at((gap + uw * 0.9) * s, -28, 18), (uw * 0.9, 13, 10), csf, 15 * s, 0, "ventricle")
            )
            cav.append(_ellipsoid(at((gap + uw) * s, -2, 26), (uw, 24, 7 + vw), csf, role="ventricle"))
            cav.append(_ellipsoid(at((14 + 5 * vw) * s, 26, 15), (8 * vw, 11, 10), csf, role="ventricle"))
            cav.append(
                _ellipsoid(at((20 + 3 * vw) * s, 42, 11), (4 * vw, 12, 6), csf, -15 * s, 0, "ventricle")
            )
            cav.append(_ellipsoid(at(30 * s, -12, -22), (3.5 * vw, 13, 4.5), csf, 10 * s, 0, "ventricle"))
        cav.append(_ellipsoid(at(0, -4, -6), (2.2 * vw, 13, 9), csf, role="ventricle"))  # third
        cav.append(_ellipsoid(at(0, 19, -46), (7, 4.5, 8), csf, role="ventricle"))  # fourth

        # Calcifications: bright, small, and not blood.
        if rng.uniform() < 0.55:
            for s in (-1.0, 1.0):
                r = rng.uniform(1.5, 3.5)
                calcs.append(
                    _ellipsoid(at((14 + 5 * vw) * s, 27, 15), (r, r * 1.3, r), rng.uniform(110, 300))
                )
        if rng.uniform() < 0.45:
            r = rng.uniform(1.5, 3.0)
            calcs.append(_ellipsoid(at(0, 16, -4), (r, r, r), rng.uniform(100, 250)))
        if rng.uniform() < 0.2:
            calcs.append(
                _ellipsoid(
                    at(0, rng.uniform(-50, 50), rng.uniform(20, 55)),
                    (0.9, rng.uniform(3, 8), 4),
                    rng.uniform(150, 400),
                )
            )
        if rng.uniform() < 0.08:
            for s in (-1.0, 1.0):
                calcs.append(_ellipsoid(at(23 * s, -8, 0, 4.0), (2, 2.5, 2), rng.uniform(90, 180)))
        return face, late, cav, calcs

    def tentorium(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height of the tentorium, the roof of the posterior fossa: it slopes down backwards and sideways."""
        b, c = self.b, self.c_lo
        back = np.clip((v - 0.1 * b) * _F32(1.0 / (0.8 * b)), 0.0, 1.0)
        side = u * _F32(1.0 / self.a)
        return -0.22 * c - 0.3 * c * back - 0.12 * c * side * side

    def cerebellum(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Weight of the posterior fossa below the tentorium."""
        return _sigmoid((self.tentorium(u, v) - w) / 1.2) * _sigmoid((v - 0.06 * self.b) / 1.5)

    def core(self, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Where the hemispheres are joined (corpus callosum, diencephalon): no interhemispheric fissure."""
        q = ((v - 0.02 * self.b) / (0.47 * self.b)) ** 2 + ((w + 0.05 * self.c_up) / (0.42 * self.c_up)) ** 2
        return _ramp(1.0 - q, 8.0)


# --------------------------------------------------------------------------------------------------------------
# Bleeds


@dataclass
class _Bleed:
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
        x = (w - _F32(self.center[2])) * _F32(1.0 / self.half_height)
        return _F32(self.thickness) * np.sqrt(spread * np.clip(1.0 - x * x, 0.0, 1.0))

    def sah_region(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
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
    rng: np.random.Generator, head: _Head, w_range: tuple[float, float], min_depth: float, max_depth: float
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


def _make_bleed(
    rng: np.random.Generator, head: _Head, kind: str, noise: float, w_range: tuple[float, float], clear: bool
) -> _Bleed | None:
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
        return _Bleed(
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
        half_angle = math.radians(half_angle_deg)
        contrast = _contrast(rng, noise, band == 0)
        theta = rng.choice([0.0, math.pi]) + rng.uniform(-1.1, 1.1)
        w0 = rng.uniform(max(w_range[0], -0.15 * head.c_up), min(w_range[1], 0.65 * head.c_up))
        direction = (math.cos(theta), math.sin(theta))
        center = np.array([direction[0] * head.a * 0.9, direction[1] * head.b * 0.9, w0])
        bound = half_angle * max(head.a, head.b) + half_height + thickness + 10
        return _Bleed(
            kind, contrast, brain + contrast, center, bound,
            direction=direction, half_angle=half_angle, half_height=half_height, thickness=thickness,
        )  # fmt: skip
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
        return _Bleed(
            kind, contrast, brain + contrast, center, radius + 3, semi=np.array([radius, radius, radius])
        )
    raise ValueError(f"unknown bleed kind {kind!r}")


# --------------------------------------------------------------------------------------------------------------
# Rendering


class _Renderer:
    """Draws one study slice by slice; only the part of each slice covered by the head is computed."""

    def __init__(
        self,
        head: _Head,
        bleeds: list[_Bleed],
        rot: np.ndarray,
        center: np.ndarray,
        xs: np.ndarray,
        ys: np.ndarray,
        zs: np.ndarray,
        dz: float,
        fold: _SmoothField,
        tissue: _SmoothField,
    ) -> None:
        self.head, self.bleeds, self.rot, self.center = head, bleeds, rot, center
        self.xs, self.ys, self.zs, self.dz = xs.astype(_F32), ys.astype(_F32), zs, dz
        self.px = float(abs(xs[1] - xs[0]))
        self.inv_edge = 1.0 / max(self.px, 0.35)
        self.fold, self.tissue = fold, tissue
        self.full = _Box(0, ys.size, 0, xs.size)

    def coords(self, k: int, box: _Box, step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head-frame (u, v, w) of the pixels of ``box`` on slice ``k`` (every ``step``-th pixel).

        The box may reach past the image; those pixel centres continue the grid.
        """
        r = self.rot.astype(_F32)
        half = (self.xs.size - 1) / 2.0
        x = ((np.arange(box.c0, box.c1, step) - half) * self.px - self.center[0]).astype(_F32)
        y = ((np.arange(box.r0, box.r1, step) - half) * self.px - self.center[1]).astype(_F32)
        z = _F32(self.zs[k] - self.center[2])
        return tuple(  # type: ignore[return-value]
            (r[0, i] * x)[None, :] + (r[1, i] * y)[:, None] + r[2, i] * z for i in range(3)
        )

    def box_of(self, center_head: np.ndarray, radius: float, k: int, slab: float = 0.0) -> _Box:
        """Pixels of slice ``k`` that a sphere in the head frame can touch."""
        p = self.center + self.rot @ center_head
        dz = abs(self.zs[k] - p[2]) - slab
        if dz >= radius:
            return _EMPTY
        rr = math.sqrt(radius * radius - max(dz, 0.0) ** 2) + 2 * self.px
        x0, y0 = float(self.xs[0]), float(self.ys[0])
        c0 = max(0, int((p[0] - rr - x0) / self.px))
        c1 = min(self.xs.size, int((p[0] + rr - x0) / self.px) + 2)
        r0 = max(0, int((p[1] - rr - y0) / self.px))
        r1 = min(self.ys.size, int((p[1] + rr - y0) / self.px) + 2)
        return _Box(r0, r1, c0, c1)

    def head_box(self, k: int) -> _Box:
        """Bounding box of the head on slice ``k``, from a coarse look at the outline plus external parts."""
        step = max(1, round(3.0 / self.px))
        u, v, w = self.coords(k, self.full, step)
        depth, _, ct, _ = self.head.cavity(u, v, w)
        outer = depth + self.head.t_skull * 1.3 + self.head.scalp_thickness(ct, w) + 4
        inside = outer > 0
        inside |= (self.head.face_depth(u, v, w) > -4) & (w < self.head.face_top() + 4)
        rows = np.flatnonzero(inside.any(axis=1))
        cols = np.flatnonzero(inside.any(axis=0))
        box = _EMPTY
        if rows.size:
            pad = 2 * step + 2
            box = _Box(
                max(0, rows[0] * step - pad),
                min(self.ys.size, rows[-1] * step + pad),
                max(0, cols[0] * step - pad),
                min(self.xs.size, cols[-1] * step + pad),
            )
        for e in self.head.face:
            if e.outside:
                box = box.union(self.box_of(e.center, float(e.semi.max()), k))
        return box

    def geometry(self, k: int, box: _Box) -> tuple[np.ndarray, ...]:
        """Depth under the inner table, height above the fossa floor, skull and scalp thickness, face depth.

        These are smooth, so on fine matrices they are computed on every other pixel and interpolated.
        """
        head = self.head
        step = 2 if self.px < 0.7 else 1
        rows, cols = box.r1 - box.r0, box.c1 - box.c0
        coarse = (
            _Box(box.r0, box.r0 + 2 * (rows // 2) + 1, box.c0, box.c0 + 2 * (cols // 2) + 1)
            if step == 2
            else box
        )
        u, v, w = self.coords(k, coarse, step)
        depth, f, ct, st = head.cavity(u, v, w)
        fields = (
            depth,
            f,
            head.skull_thickness(ct, st, w),
            head.scalp_thickness(ct, w),
            head.face_depth(u, v, w),
        )
        if step == 1:
            return fields
        return tuple(_upsample2(a, rows, cols) for a in fields)

    def paint_list(
        self,
        prims: Sequence[_Ellipsoid],
        k: int,
        box: _Box,
        hu: np.ndarray,
        coords: tuple[np.ndarray, np.ndarray, np.ndarray],
        csf_space: np.ndarray | None = None,
        vent: np.ndarray | None = None,
        keep: Sequence[np.ndarray] = (),
    ) -> None:
        """Paint ellipsoids in order; ``keep`` arrays (bleed weights) are erased where something covers them."""
        u, v, w = coords
        for e in prims:
            sub = self.box_of(e.center, float(e.semi.max()), k).within(box)
            if sub.empty:
                continue
            idx = sub.rel(box)
            su, sv, sw = u[idx], v[idx], w[idx]
            a = e.alpha(su, sv, sw, self.inv_edge)
            if not a.any():
                continue
            if e.role == "honeycomb":
                cells = np.cos(1.9 * su) * np.cos(1.9 * sv) * np.cos(1.9 * sw)
                value: np.ndarray | float = np.clip(250.0 + 1500.0 * cells, -900.0, 1400.0)
            else:
                value = e.hu
            _paint(hu[idx], value, a)
            if csf_space is not None:
                if e.role == "csf":
                    np.maximum(csf_space[idx], a, out=csf_space[idx])
                else:
                    csf_space[idx] *= 1.0 - a
            if vent is not None and e.role == "ventricle":
                np.maximum(vent[idx], a, out=vent[idx])
            for arr in keep:
                arr[idx] *= 1.0 - a

    def render(self, k: int, out: np.ndarray, lesion_alpha: list[np.ndarray]) -> _Box:
        """Draw slice ``k`` into ``out`` (a full slice already holding air) and the bleeds' weights.

        Returns the box of the slice that was drawn; outside it ``out`` and the weights are untouched.
        """
        head = self.head
        box = self.head_box(k)
        if box.empty:
            return box
        ie = self.inv_edge
        u, v, w = self.coords(k, box)
        depth, f, t_sk, t_sc, face_d = self.geometry(k, box)
        fold = self.fold.slice(k, box)

        # Scalp and face.
        hu = np.full(depth.shape, -1000.0, _F32)
        soft = _ramp(depth + t_sk + t_sc, ie)
        lowest = float(w.min())
        if lowest < head.face_top() + 5.0:
            face_a = _ramp(face_d, ie) * _ramp(head.face_top() - w, 0.1)
            np.maximum(soft, face_a, out=soft)
        _paint(hu, head.scalp, soft)
        if lowest < head.face_top() - 6.0:
            low = _ramp(head.face_top() - 10 - w, 0.15)
            fat = _ramp(face_d - 1.5, ie) * _ramp(1.5 + head.t_fat - face_d, ie) * low
            _paint(hu, -90.0, fat)

        # Skull: vault with tables and diploe, and the skull base.
        bone = _ramp(depth + t_sk, ie) * _ramp(f + head.t_base, ie)
        x = np.clip(-depth / t_sk, 0.0, 1.0)
        dipl = _ramp(np.minimum(x - 0.3, 0.7 - x) * t_sk, ie) * _ramp(t_sk - 4.0, 1.0)
        bone_hu = head.table + (head.diploe + 180.0 * fold - head.table) * dipl
        if float(f.min()) < 2.0:
            _paint(bone_hu, 1050.0 + 350.0 * fold, _ramp(-f, 0.3))
        _paint(hu, bone_hu, bone)
        uvw = (u, v, w)
        self.paint_list(head.face, k, box, hu, uvw)

        # Cranial cavity.
        cav = _ramp(depth, ie) * _ramp(f, ie)
        rows = np.flatnonzero(cav.any(axis=1))
        weights = [np.zeros(depth.shape, _F32) for _ in self.bleeds]
        if rows.size:
            cols = np.flatnonzero(cav.any(axis=0))
            cbox = _Box(box.r0 + rows[0], box.r0 + rows[-1] + 1, box.c0 + cols[0], box.c0 + cols[-1] + 1)
            idx = cbox.rel(box)
            content = self.cavity_content(
                k, cbox, (u[idx], v[idx], w[idx]), depth[idx], f[idx], fold[idx], [wt[idx] for wt in weights]
            )
            _paint(hu[idx], content, cav[idx])
            for wt in weights:
                wt *= cav
        self.paint_list(head.late, k, box, hu, uvw, keep=weights)

        out[box.r0 : box.r1, box.c0 : box.c1] = hu
        for wt, dst in zip(weights, lesion_alpha, strict=True):
            dst[box.r0 : box.r1, box.c0 : box.c1] = wt
        return box

    def cavity_content(
        self,
        k: int,
        box: _Box,
        uvw: tuple[np.ndarray, np.ndarray, np.ndarray],
        depth: np.ndarray,
        f: np.ndarray,
        fold: np.ndarray,
        weights: list[np.ndarray],
    ) -> np.ndarray:
        """HU inside the cranial cavity, and each bleed's weight written into ``weights``."""
        head, ie = self.head, self.inv_edge
        u, v, w = uvw
        surface = np.minimum(depth, f)
        tissue = self.tissue.slice(k, box)

        # Bleeds' footprints on this slab: three samples across the 5 mm slab, so partial volume along z.
        offsets = (-self.dz / 3.0, 0.0, self.dz / 3.0)
        shift = self.rot[2]  # patient z in head-frame coordinates
        sdh_thick: list[tuple[_Box, list[np.ndarray]]] = []
        sah_region: list[tuple[_Box, np.ndarray]] = []
        widen = np.zeros_like(depth)
        for b in self.bleeds:
            sub = self.box_of(b.center, b.bound, k, slab=self.dz / 2).within(box)
            if sub.empty:
                sdh_thick.append((_EMPTY, []))
                sah_region.append((_EMPTY, np.zeros(0)))
                continue
            idx = sub.rel(box)
            if b.kind == "subdural":
                # Across the slab only the height changes appreciably.
                spread = b.subdural_spread(u[idx], v[idx])
                ts = [b.subdural_thickness(spread, w[idx] + o * shift[2]) for o in offsets]
                surface[idx] -= ts[1]
                sdh_thick.append((sub, ts))
                sah_region.append((_EMPTY, np.zeros(0)))
            elif b.kind == "subarachnoid":
                samples = [
                    (u[idx] + o * shift[0], v[idx] + o * shift[1], w[idx] + o * shift[2]) for o in offsets
                ]
                reg = sum(b.sah_region(*s) for s in samples) / 3.0
                widen[idx] = np.maximum(widen[idx], reg)
                sah_region.append((sub, reg))
                sdh_thick.append((_EMPTY, []))
            else:
                sah_region.append((sub, np.zeros(0)))
                sdh_thick.append((_EMPTY, []))

        # Cortex: grey ribbon under the surface and around sulci; CSF over the surface and in the sulci.
        band = np.abs(fold)
        fe = 1.0 / (0.36 * max(self.px, 0.35))  # the folding field changes by about 0.36 per mm
        # Sulci open at the surface and taper to nothing at their depth; grey matter lines them.
        taper = np.clip(1.0 - surface * _F32(1.0 / head.sulcal_depth), 0.0, 1.0)
        sulc_w = head.sulcal_width * (1.0 + 0.9 * widen) * taper
        sas = _ramp(head.t_sas + 1.2 * widen - surface, ie)
        sulci = _ramp(sulc_w - band, fe)
        lining = np.clip((head.sulcal_depth + 3.0 - surface) * _F32(1.0 / 3.0), 0.0, 1.0) * head.grey_width
        grey = np.maximum(_ramp(head.t_sas + 2.8 - surface, ie), _ramp(sulc_w + lining - band, fe))
        hu = head.white + (head.grey - head.white) * grey + 1.2 * tissue
        cb = head.cerebellum(u, v, w)
        if cb.any():
            r4 = np.sqrt(u * u + (v - 0.22 * head.b) ** 2 + (w + 0.68 * head.c_lo) ** 2)
            folia = head.grey - 3.0 + 3.5 * np.cos(r4 * _F32(2 * math.pi / 3.2) + 1.5 * fold)
            _paint(hu, folia, cb)
        # Interhemispheric fissure with the falx in it, and the tentorium.
        fissure = _ramp(1.2 + 0.8 * head.t_sas - np.abs(u), ie) * (1.0 - head.core(v, w))
        csf_space = np.maximum(np.maximum(sas, sulci), fissure)
        _paint(hu, head.csf, csf_space)
        falx = _ramp(0.6 - np.abs(u), ie) * fissure
        tent = _ramp(0.6 - np.abs(w - head.tentorium(u, v)), ie) * (v > 0.1 * head.b) * _F32(0.4)
        np.maximum(falx, tent, out=falx)
        _paint(hu, head.falx, falx)
        csf_space *= 1.0 - falx
        # Brighter just under the inner table, as residual beam hardening leaves it.
        hu += head.subcortical_bh * np.clip(1.0 - depth / 10.0, 0.0, 1.0) ** 2

        vent = np.zeros_like(hu)
        self.paint_list(head.cavity_prims, k, box, hu, uvw, csf_space=csf_space, vent=vent)
        self.paint_list(head.calcs, k, box, hu, uvw, csf_space=csf_space)
        if head.streak:
            # Hounsfield bar: a dark band between the petrous apices.
            level = _ramp(9.0 - np.abs(w + 0.69 * head.c_lo), 0.3)
            _paint(hu, hu - head.streak, _ramp(4.0 - np.abs(v - 0.05 * head.b), 0.5) * level)

        for b, wt, (sbox, tsamples), (rbox, reg) in zip(
            self.bleeds, weights, sdh_thick, sah_region, strict=True
        ):
            if b.kind == "subdural" and not sbox.empty:
                idx = sbox.rel(box)
                a = sum(_ramp(t - depth[idx], ie) * (t > 0.3) for t in tsamples) / 3.0
                a *= _ramp(depth[idx], ie)
                _paint(hu[idx], b.hu, a)
                wt[idx] = np.maximum(wt[idx], a)
            elif b.kind == "subarachnoid" and not rbox.empty:
                idx = rbox.rel(box)
                a = csf_space[idx] * reg
                _paint(hu[idx], b.hu, a)
                wt[idx] = np.maximum(wt[idx], a)
            elif b.kind == "intraparenchymal":
                ibox = self.box_of(b.center, b.bound, k, slab=self.dz / 2).within(box)
                if ibox.empty:
                    continue
                idx = ibox.rel(box)
                samples = [
                    (u[idx] + o * shift[0], v[idx] + o * shift[1], w[idx] + o * shift[2]) for o in offsets
                ]
                shapes = [b.iph_shape(*s) for s in samples]
                if b.edema_mm:
                    ring = sum(_ramp(s + b.edema_mm, ie) for s in shapes) / 3.0
                    _paint(hu[idx], hu[idx] - 7.0, ring * (1.0 - vent[idx]))
                a = sum(_ramp(s, ie) for s in shapes) / 3.0
                _paint(hu[idx], b.hu, a)
                wt[idx] = np.maximum(wt[idx], a)
        return hu


# --------------------------------------------------------------------------------------------------------------
# Studies


def _upsample2(c: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Linear interpolation of values on every other pixel (pixels 0, 2, 4, ... and one past) to all pixels."""
    m, n = c.shape
    out = np.empty((2 * m - 1, 2 * n - 1), _F32)
    out[::2, ::2] = c
    out[1::2, ::2] = c[:-1] + c[1:]
    out[1::2, ::2] *= _F32(0.5)
    out[:, 1::2] = out[:, :-2:2] + out[:, 2::2]
    out[:, 1::2] *= _F32(0.5)
    return out[:rows, :cols]


def _smooth121(img: np.ndarray) -> np.ndarray:
    """One [1, 2, 1] / 4 pass along rows and columns, edges repeated."""
    out = img * _F32(2.0)
    out[1:] += img[:-1]
    out[:-1] += img[1:]
    out[0] += img[0]
    out[-1] += img[-1]
    img = out
    out = img * _F32(2.0)
    out[:, 1:] += img[:, :-1]
    out[:, :-1] += img[:, 1:]
    out[:, 0] += img[:, 0]
    out[:, -1] += img[:, -1]
    out *= _F32(1.0 / 16.0)
    return out


# Standard deviation left of unit white noise after 0, 1 or 2 passes of _smooth121 (sqrt of summed squares).
_NOISE_GAIN = (1.0, 6.0 / 16.0, 70.0 / 256.0)


def _reconstruct(img: np.ndarray, rng: np.random.Generator, sigma: float, passes: int) -> np.ndarray:
    """Add noise and blur like a soft-tissue kernel: noise of standard deviation ``sigma`` with a ~1 mm grain.

    Uniform noise is cheaper to draw than Gaussian and the smoothing sums enough of it to look Gaussian.
    """
    if passes == 0:
        out = img + rng.standard_normal(img.shape, dtype=_F32) * _F32(sigma)
    else:
        noise = rng.random(img.shape, dtype=_F32)
        noise -= _F32(0.5)
        out = img + noise * _F32(sigma * math.sqrt(12.0) / _NOISE_GAIN[passes])
        for _ in range(passes):
            out = _smooth121(out)
    np.clip(out, HU_MIN, HU_MAX, out=out)
    return out


def generate_study(
    rng: np.random.Generator,
    *,
    matrix: int = 512,
    n_slices: int | None = None,
    bleed: bool | None = None,
    clear: bool = False,
) -> PhantomStudy:
    """Draw one synthetic non-contrast head CT.

    Parameters
    ----------
    rng:
        The only source of randomness: the same generator state gives the same study.
    matrix:
        Rows and columns of each slice.
    n_slices:
        Number of 5 mm axial slices; drawn from 28–40 when None.
    bleed:
        Whether to add bleeds; a fair coin when None.
    clear:
        Make the bleed an obvious one (a large, dense intraparenchymal haematoma under low noise): the demo.

    Returns
    -------
    PhantomStudy
    """
    if bleed is None:
        bleed = bool(rng.uniform() < 0.5)
    if n_slices is None:
        n_slices = int(rng.integers(28, 41))
    for _ in range(20):
        study = _try_study(rng, matrix, n_slices, bleed or clear, clear)
        if study is not None:
            return study
    raise RuntimeError("could not place a bleed in 20 tries")


def _try_study(
    rng: np.random.Generator, matrix: int, n_slices: int, bleed: bool, clear: bool
) -> PhantomStudy | None:
    head = _Head(rng)
    fov = float(rng.uniform(220.0, 250.0))
    px = fov / matrix
    dz = SLICE_THICKNESS_MM
    noise = float(rng.uniform(4.0, 5.0) if clear else rng.uniform(4.0, 10.0))
    rot = _rotation(
        math.radians(rng.uniform(-9, 9)), math.radians(rng.uniform(-12, 8)), math.radians(rng.uniform(-5, 5))
    )
    center_xy = rng.uniform(-10.0, 10.0, 2)

    # Scan range, in head-frame height: from below the foramen magnum to just over the vertex.
    vertex = head.c_up + head.t_skull + head.t_scalp
    # Slices beyond that go down into the upper neck, as a long scan would; too few cut both ends short.
    top, bottom = vertex + rng.uniform(-6.0, 3.0), -rng.uniform(0.92, 1.15) * head.c_lo
    span = (n_slices - 1) * dz
    extra = span - (top - bottom)
    bottom -= extra if extra >= 0 else 0.5 * extra
    z0 = round(float(rng.uniform(-160.0, -100.0)) * 2) / 2
    center = np.array([center_xy[0], center_xy[1], z0 - bottom])
    xs = (np.arange(matrix) - (matrix - 1) / 2.0) * px
    ys = xs.copy()
    zs = z0 + dz * np.arange(n_slices)
    fold = _SmoothField(rng, xs, ys, zs, 4.0)
    tissue = _SmoothField(rng, xs, ys, zs, 25.0)

    bleeds: list[_Bleed] = []
    if bleed:
        w_range = (bottom + 1.5 * dz, bottom + span - 1.5 * dz)
        if clear:
            kinds = ["intraparenchymal"]
        else:
            kinds = [str(rng.choice(KINDS))]
            if rng.uniform() < 0.2:
                kinds.append(str(rng.choice([k for k in KINDS if k != kinds[0]])))
        for kind in kinds:
            b = _make_bleed(rng, head, kind, noise, w_range, clear)
            if b is None:
                return None
            bleeds.append(b)

    renderer = _Renderer(head, bleeds, rot, center, xs, ys, zs, dz, fold, tissue)
    hu = np.empty((n_slices, matrix, matrix), _F32)
    lesion_id = np.zeros(hu.shape, np.uint8)  # 1 + index of the bleed a voxel belongs to, 0 for none
    weights = np.zeros((len(bleeds), matrix, matrix), _F32)
    passes = 2 if px < 0.6 else 1 if px < 1.2 else 0
    for k in range(n_slices):
        hu[k] = -1000.0
        weights[:] = 0.0
        box = renderer.render(k, hu[k], list(weights))
        hu[k] = _reconstruct(hu[k], rng, noise, passes)
        if bleeds and not box.empty:
            wb = weights[:, box.r0 : box.r1, box.c0 : box.c1]
            if wb.max(initial=0.0) >= 0.5:
                ids = wb.argmax(axis=0).astype(np.uint8) + 1
                ids[wb.max(axis=0) < 0.5] = 0
                lesion_id[k, box.r0 : box.r1, box.c0 : box.c1] = ids

    lesions: list[LesionInfo] = []
    mask = np.zeros(hu.shape, bool)
    if bleeds:
        min_px = MIN_SLICE_AREA_MM2 / (px * px)
        for i, b in enumerate(bleeds):
            m = lesion_id == i + 1
            areas = m.sum(axis=(1, 2))
            m[areas < min_px] = False
            if not m.any():
                return None
            zz, yy, xx = np.nonzero(m)
            size = max(
                (zz.max() - zz.min() + 1) * dz, (yy.max() - yy.min() + 1) * px, (xx.max() - xx.min() + 1) * px
            )
            volume = float(m.sum()) * dz * px * px / 1000.0
            lesions.append(
                LesionInfo(b.kind, float(b.contrast), float(size), volume, int(zz.min()), int(zz.max()))
            )
            mask |= m
    slice_labels = mask.any(axis=(1, 2)).astype(np.uint8)
    kinds_present = sorted({les.kind for les in lesions}, key=KINDS.index)
    return PhantomStudy(
        hu=hu,
        spacing=(dz, px, px),
        mask=mask,
        slice_labels=slice_labels,
        label=int(bool(lesions)),
        kind="+".join(kinds_present) if kinds_present else "none",
        lesions=lesions,
        contrast_hu=max((les.contrast_hu for les in lesions), default=None),
        size_mm=max((les.size_mm for les in lesions), default=None),
        noise_hu=noise,
        z0_mm=float(z0),
    )


# --------------------------------------------------------------------------------------------------------------
# Datasets on disk


def _study_uid(seed: int, index: int, what: str) -> str:
    return str(generate_uid(entropy_srcs=["gru-viewer-phantom", str(seed), str(index), what]))


def _meta(rng: np.random.Generator, seed: int, index: int) -> SeriesMeta:
    year = 2024
    birth_year = int(rng.integers(1935, 2004))
    study_day = np.datetime64(f"{year}-01-01") + np.timedelta64(int(rng.integers(0, 365)), "D")
    birth_day = np.datetime64(f"{birth_year}-01-01") + np.timedelta64(int(rng.integers(0, 365)), "D")
    age = int((study_day - birth_day).astype(int) // 365.25)
    seconds = int(rng.integers(7 * 3600, 22 * 3600))
    name = _FIRST_NAMES[int(rng.integers(len(_FIRST_NAMES)))]
    return SeriesMeta(
        patient_name=f"PHANTOM^{name}",
        patient_id=f"PH{seed:03d}-{index + 1:04d}",
        birth_date=str(birth_day).replace("-", ""),
        sex=str(rng.choice(["F", "M"])),
        patient_age=f"{age:03d}Y",
        study_uid=_study_uid(seed, index, "study"),
        study_date=str(study_day).replace("-", ""),
        study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        study_description="CT HEAD WO CONTRAST",
        accession_number=f"PA{seed % 1000:03d}{index + 1:06d}",
        series_uid=_study_uid(seed, index, "series"),
        series_number=2,
        series_description="HEAD 5mm AXIAL",
        frame_of_reference_uid=_study_uid(seed, index, "frame"),
        kvp=float(rng.choice([100.0, 120.0])),
        tube_current_ma=int(rng.integers(200, 350)),
        image_comments="Synthetic phantom made by GRU Viewer - not a patient",
    )


def _bleed_plan(seed: int, studies: int) -> list[bool]:
    """Balanced bleed flags: one of each pair has bleeds (order drawn from the seed); study 0 always does."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    flags: list[bool] = []
    for pair in range(0, studies, 2):
        first = True if pair == 0 else bool(rng.uniform() < 0.5)
        flags.extend([first, not first])
    return flags[:studies]


def _write_labels(root: Path, seed: int, matrix: int, studies: list[StudyLabels]) -> None:
    doc = {
        "format": LABELS_FORMAT,
        "version": LABELS_VERSION,
        "seed": seed,
        "matrix": matrix,
        "note": "Synthetic phantoms for software testing and model development; not patient data.",
        "studies": [s.to_dict(root) for s in studies],
    }
    tmp = root / "labels.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(root / "labels.json")


def _dataset_study(
    seq: np.random.SeedSequence, seed: int, index: int, bleed: bool, matrix: int
) -> tuple[PhantomStudy, SeriesMeta]:
    rng = np.random.default_rng(seq)
    meta = _meta(rng, seed, index)
    return generate_study(rng, matrix=matrix, bleed=bleed, clear=index == 0), meta


def dataset_study(seed: int, index: int, matrix: int = 512) -> tuple[PhantomStudy, SeriesMeta]:
    """Study ``index`` of the set ``write_phantom_dataset(seed=seed, matrix=matrix)`` writes, in memory only.

    ``dataset_study(0, 0)`` is the demo study ``make run`` opens.
    """
    if index < 0:
        raise ValueError("index must be at least 0")
    seq = np.random.SeedSequence(seed).spawn(index + 1)[index]
    return _dataset_study(seq, seed, index, _bleed_plan(seed, index + 1)[index], matrix)


def write_phantom_dataset(
    out: Path,
    *,
    studies: int = 1,
    seed: int = 0,
    matrix: int = 512,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PhantomManifest:
    """Write ``studies`` phantom head CTs under ``out``, with ``labels.json`` and masks beside them.

    Layout: ``out/<PatientID>/<SeriesNumber>_<description>/IM0001.dcm …`` (one patient, study and axial series
    each; IM0001 is the most inferior slice), ``out/labels.json`` and ``out/masks/<SeriesInstanceUID>.npz``
    (``mask``: bool (z, y, x) ascending along the slice normal; ``sop_uids``: the slices' SOP Instance UIDs in
    the same order). Study ``i`` is the same whatever ``studies`` is; study 0 is the demo, a clearly visible
    bleed, and every pair of studies holds one with and one without bleeds. DICOM files left in a series
    folder by an earlier run are removed first so a series never mixes runs; nothing is written outside ``out``.

    Parameters
    ----------
    progress:
        Called as ``progress(done, total, text)`` before each study and once at the end.
    cancel:
        Checked before each study; when it returns True the studies finished so far are listed in
        ``labels.json`` and :class:`~viewer.errors.CancelledError` is raised.
    """
    if studies < 1:
        raise ValueError("studies must be at least 1")
    root = Path(out).resolve()
    plan = _bleed_plan(seed, studies)
    children = np.random.SeedSequence(seed).spawn(studies)
    done: list[StudyLabels] = []
    try:
        (root / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(studies):
            if cancel is not None and cancel():
                _write_labels(root, seed, matrix, done)
                raise CancelledError("Phantom generation cancelled")
            if progress is not None:
                progress(i, studies, f"Phantom study {i + 1}/{studies}")
            study, meta = _dataset_study(children[i], seed, i, plan[i], matrix)
            done.append(_write_study(root, study, meta))
        _write_labels(root, seed, matrix, done)
    except OSError as err:
        raise ViewerError(
            "Cannot write the phantom dataset", str(err.strerror or err), str(err.filename or root)
        ) from err
    if progress is not None:
        progress(studies, studies, f"Wrote {studies} phantom studies to {root}")
    return PhantomManifest(root, seed, matrix, done)


def _write_study(root: Path, study: PhantomStudy, meta: SeriesMeta) -> StudyLabels:
    dz, dy, dx = study.spacing
    n, rows, cols = study.hu.shape
    origin = (-(cols - 1) / 2.0 * dx, -(rows - 1) / 2.0 * dy, study.z0_mm)
    positions, orientation = axial_geometry(n, dz, (dy, dx), (rows, cols), origin=origin)
    series_dir = root / meta.patient_id / series_folder_name(meta)
    if series_dir.is_dir():
        for old in series_dir.glob("IM*.dcm"):
            old.unlink()
    write_ct_series(
        study.hu,
        series_dir,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(dy, dx),
        slice_thickness=dz,
        meta=meta,
    )
    uids = [str(sop_instance_uid(meta.series_uid, k)) for k in range(n)]
    order = np.argsort(positions @ np.cross(orientation[:3], orientation[3:]), kind="stable")
    sop_sorted = [uids[k] for k in order]
    mask = study.mask[order]
    mask_path = root / "masks" / f"{meta.series_uid}.npz"
    np.savez_compressed(mask_path, mask=mask, sop_uids=np.array(sop_sorted))
    return StudyLabels(
        patient_id=meta.patient_id,
        patient_name=meta.patient_name,
        study_uid=meta.study_uid,
        series_uid=meta.series_uid,
        series_dir=series_dir,
        label=study.label,
        kind=study.kind,
        contrast_hu=study.contrast_hu,
        size_mm=study.size_mm,
        noise_hu=study.noise_hu,
        lesions=list(study.lesions),
        sop_uids=sop_sorted,
        slice_labels=study.slice_labels[order].astype(np.uint8),
        mask_path=mask_path,
    )


def load_labels(path: Path) -> PhantomManifest:
    """Read ``labels.json`` (or the folder holding it) back into a :class:`PhantomManifest`."""
    path = Path(path)
    if path.is_dir():
        path = path / "labels.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise ViewerError("Cannot read phantom labels", str(err.strerror or err), str(path)) from err
    except json.JSONDecodeError as err:
        raise ViewerError("Cannot read phantom labels", f"not valid JSON ({err})", str(path)) from err
    if doc.get("format") != LABELS_FORMAT:
        raise ViewerError("Cannot read phantom labels", "not a GRU Viewer phantom labels file", str(path))
    if int(doc.get("version", 0)) > LABELS_VERSION:
        raise ViewerError(
            "Cannot read phantom labels", f"format version {doc['version']} is newer than this app", str(path)
        )
    root = path.parent.resolve()

    def inside(rel: str) -> Path:
        p = (root / rel).resolve()
        if not p.is_relative_to(root):
            raise ViewerError(
                "Cannot read phantom labels", f"path {rel!r} leaves the dataset folder", str(path)
            )
        return p

    studies = [
        StudyLabels(
            patient_id=s["patient_id"],
            patient_name=s["patient_name"],
            study_uid=s["study_uid"],
            series_uid=s["series_uid"],
            series_dir=inside(s["series_dir"]),
            label=int(s["label"]),
            kind=s["kind"],
            contrast_hu=s["contrast_hu"],
            size_mm=s["size_mm"],
            noise_hu=float(s["noise_hu"]),
            lesions=[LesionInfo.from_dict(d) for d in s["lesions"]],
            sop_uids=list(s["sop_uids"]),
            slice_labels=np.asarray(s["slice_labels"], dtype=np.uint8),
            mask_path=inside(s["mask"]),
        )
        for s in doc["studies"]
    ]
    return PhantomManifest(root, int(doc["seed"]), int(doc["matrix"]), studies)
