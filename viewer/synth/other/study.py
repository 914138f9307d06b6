"""One study of the second phantom family: :func:`generate_other_study`.

A head (:mod:`.anatomy`) at a drawn pose is painted on a working grid of fine planes, bleeds
(:mod:`.lesions`) are painted as blood fractions, fine planes are averaged into slabs of the slice
thickness, artefacts (:mod:`.artefacts`) are added and each slab is brought to the image matrix, filtered
by the kernel and given its noise (:mod:`.acquisition`). The voxel mask is where the slab-averaged blood
fraction reaches one half; a slice is labelled where its mask covers at least 3 mm².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from viewer.synth.bleeds import KINDS as NAME_ORDER
from viewer.synth.labels import LesionInfo
from viewer.synth.numeric import rotation  # generic maths, shared; nothing of the first family's anatomy
from viewer.synth.other.acquisition import (
    WORK_BUDGET,
    Kernel,
    draw_kernel,
    draw_slice_mm,
    reconstruct,
    resample,
)
from viewer.synth.other.anatomy import Head, draw_head, paint_head
from viewer.synth.other.artefacts import Artefacts, apply_artefacts, draw_artefacts
from viewer.synth.other.fields import F32, Block, Pose
from viewer.synth.other.lesions import KINDS, Bleed, draw_bleed, paint_bleed
from viewer.synth.study import PhantomStudy

MAX_SLICES = 400
MIN_SLICE_AREA_MM2 = 3.0
FINE_MM = 1.25  # the thickest fine plane a slab is averaged from
PLANES_PER_BLOCK = 40


@dataclass
class Scan:
    """Geometry and acquisition of one study."""

    matrix: int
    px: float
    dz: float
    n_sub: int
    z: np.ndarray  # slice centres (scanner mm), ascending
    pose: Pose
    kernel: Kernel
    noise: float
    artefacts: Artefacts
    wx: np.ndarray  # working grid columns and rows (scanner mm)
    wy: np.ndarray

    @property
    def h(self) -> float:
        """Working pixel (mm)."""
        return float(self.wx[1] - self.wx[0])


def draw_scan(rng: np.random.Generator, head: Head, matrix: int, dz: float, clear: bool) -> Scan:
    """Draw field of view, pose (off centre, turned, tilted up to 20°), scan range, kernel, noise, artefacts."""
    s = head.shape
    ext = s.half_extent
    half_length = s.b + s.t_skull + s.t_scalp  # the head's antero-posterior half length at the vault
    fov = float(np.clip(rng.normal(232.0, 22.0), max(180.0, 2.0 * half_length + 8.0), 300.0))
    px = fov / matrix
    rot = rotation(
        math.radians(rng.uniform(-10, 10)),
        math.radians(rng.uniform(-20, 20)),
        math.radians(rng.uniform(-7, 7)),
    )
    room = max(0.0, fov / 2.0 - half_length - 4.0)
    shift = rng.uniform(-1.0, 1.0, 2) * min(room, 25.0)
    pose = Pose(rot, np.array([shift[0], shift[1] + 0.1 * s.b, rng.uniform(60.0, 140.0)]))
    top_semi = np.array([s.a, s.b, s.c_up]) + s.t_skull + s.t_scalp
    z_top = pose.centre[2] + float(np.sqrt(((rot[2] * top_semi) ** 2).sum())) + rng.uniform(-3.0, 4.0)
    z_low = float(pose.to_scanner(np.array([0.0, s.canal_v, -1.15 * s.c_up * rng.uniform(0.9, 1.1)]))[2])
    n = min(int(math.ceil((z_top - z_low) / dz)) + 1, MAX_SLICES)
    z = z_top - dz * np.arange(n)[::-1]
    z0 = round(float(z[0]) * 8) / 8
    z = z0 + dz * np.arange(n)
    n_sub = max(1, int(math.ceil(dz / FINE_MM - 1e-6)))
    corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1.9, 1)]) * ext
    xy = pose.to_scanner(corners)[:, :2]
    half = fov / 2.0
    lo, hi = np.clip(xy.min(axis=0), -half, half), np.clip(xy.max(axis=0), -half, half)
    area = float(np.prod(hi - lo))
    h = max(px, math.sqrt(area * n * n_sub / WORK_BUDGET), 0.6)
    wx = np.arange(lo[0], hi[0] + h, h)
    wy = np.arange(lo[1], hi[1] + h, h)
    noise = float(rng.uniform(3.0, 5.0) if clear else 3.0 + 9.0 * rng.uniform() ** 1.5)
    return Scan(matrix, px, dz, n_sub, z, pose, draw_kernel(rng), noise, draw_artefacts(rng, n), wx, wy)


def _fine_planes(scan: Scan, k0: int, k1: int) -> np.ndarray:
    offs = scan.dz * ((np.arange(scan.n_sub) + 0.5) / scan.n_sub - 0.5)
    return (scan.z[k0:k1, None] + offs[None, :]).ravel()


def _render(
    head: Head, scan: Scan, bleeds: list[Bleed], rng: np.random.Generator, keep: tuple[str, ...]
) -> tuple[np.ndarray, list[np.ndarray], dict[str, np.ndarray]]:
    """Slabs on the working grid (HU), each bleed's slab-averaged blood fraction, and kept compartments."""
    n, ns = scan.z.size, scan.n_sub
    shape = (n, scan.wy.size, scan.wx.size)
    slabs = np.empty(shape, F32)
    fractions = [np.zeros(shape, F32) for _ in bleeds]
    kept = {name: np.zeros(shape, F32) for name in keep}
    step = max(1, PLANES_PER_BLOCK // ns)
    edge = scan.h
    for k0 in range(0, n, step):
        k1 = min(n, k0 + step)
        block = Block.make(scan.wx, scan.wy, _fine_planes(scan, k0, k1), scan.pose)
        comp = paint_head(head, block, edge)
        for name in keep:
            kept[name][k0:k1] = getattr(comp, name).reshape(k1 - k0, ns, *shape[1:]).mean(axis=1)
        for b, frac in zip(bleeds, fractions, strict=True):
            out = np.zeros(block.shape, F32)
            paint_bleed(head, b, block, comp, out, edge)
            frac[k0:k1] = out.reshape(k1 - k0, ns, *shape[1:]).mean(axis=1)
        slabs[k0:k1] = comp.hu.reshape(k1 - k0, ns, *shape[1:]).mean(axis=1)
    centre = scan.pose.centre
    for k in range(n):
        apply_artefacts(scan.artefacts, slabs[k], k, scan.wx, scan.wy, centre, scan.h, rng)
    return slabs, fractions, kept


def _to_image(scan: Scan, stack: np.ndarray, fill: float, cubic: bool) -> np.ndarray:
    m = scan.matrix
    c = (np.arange(m) - (m - 1) / 2.0) * scan.px
    return resample(stack, (c - scan.wy[0]) / scan.h, (c - scan.wx[0]) / scan.h, fill, cubic)


def _snap(b: Bleed, scan: Scan, rng: np.random.Generator) -> None:
    """Move a haematoma thinner than about a slice to near a slice centre, so that a slice shows it."""
    if b.kind != "intraparenchymal" or 2.0 * float(b.semi.max()) > 1.5 * scan.dz:
        return
    zc = float(scan.pose.to_scanner(b.centre)[2])
    k = int(np.argmin(np.abs(scan.z - zc)))
    target = scan.z[k] + rng.uniform(-0.15, 0.15) * scan.dz
    move = scan.pose.rot[2] * (target - zc)  # head-frame direction of scanner z, scaled
    b.centre = b.centre + move
    b.lo, b.hi = b.lo + move, b.hi + move


def _choose_kinds(rng: np.random.Generator) -> list[str]:
    p = np.array([0.24, 0.12, 0.22, 0.14, 0.28])
    kinds = [str(rng.choice(KINDS, p=p))]
    if rng.uniform() < 0.2:
        rest = [k for k in KINDS if k != kinds[0]]
        q = np.array([p[KINDS.index(k)] for k in rest])
        kinds.append(str(rng.choice(rest, p=q / q.sum())))
    return kinds


def _attempt(
    rng: np.random.Generator,
    matrix: int,
    dz: float,
    kinds: list[str],
    clear: bool,
    keep: tuple[str, ...],
) -> tuple[PhantomStudy, dict[str, np.ndarray]] | None:
    head = draw_head(rng)
    scan = draw_scan(rng, head, matrix, dz, clear)
    bleeds: list[Bleed] = []
    for kind in kinds:
        b = draw_bleed(rng, head, scan.pose, kind, clear)
        if b is None:
            return None
        _snap(b, scan, rng)
        bleeds.append(b)
    return render_study(head, scan, bleeds, rng, keep)


def render_study(
    head: Head, scan: Scan, bleeds: list[Bleed], rng: np.random.Generator, keep: tuple[str, ...] = ()
) -> tuple[PhantomStudy, dict[str, np.ndarray]] | None:
    """Render ``head`` with ``bleeds`` as ``scan`` acquires it; None when a bleed shows on no slice."""
    dz = scan.dz
    slabs, fractions, kept = _render(head, scan, bleeds, rng, keep)
    n, m = scan.z.size, scan.matrix
    hu = np.empty((n, m, m), F32)
    step = max(1, int(2.5e7 // (m * m * 8)))
    for k0 in range(0, n, step):
        img = _to_image(scan, slabs[k0 : k0 + step], -1000.0, True)
        hu[k0 : k0 + step] = reconstruct(img, scan.px, scan.kernel, scan.noise, rng)

    # Each voxel belongs to the bleed with the largest blood fraction there, if that fraction is at least 1/2.
    owner = np.zeros((n, m, m), np.uint8)
    if fractions:
        hit = np.any([f.max(axis=(1, 2)) >= 0.5 for f in fractions], axis=0)
        for k in np.flatnonzero(hit):
            up = _to_image(scan, np.stack([f[k] for f in fractions]), 0.0, False)
            owner[k] = np.where(up.max(axis=0) >= 0.5, up.argmax(axis=0) + 1, 0)
    lesions: list[LesionInfo] = []
    mask = np.zeros((n, m, m), bool)
    min_px = MIN_SLICE_AREA_MM2 / (scan.px * scan.px)
    for i, b in enumerate(bleeds):
        mi = owner == i + 1
        mi[mi.sum(axis=(1, 2)) < min_px] = False
        if not mi.any():
            return None
        zz, yy, xx = np.nonzero(mi)
        size = max(
            (zz.max() - zz.min() + 1) * dz,
            (yy.max() - yy.min() + 1) * scan.px,
            (xx.max() - xx.min() + 1) * scan.px,
        )
        volume = float(mi.sum()) * dz * scan.px * scan.px / 1000.0
        lesions.append(
            LesionInfo(b.kind, float(b.contrast), float(size), volume, int(zz.min()), int(zz.max()))
        )
        mask |= mi
    present = sorted(
        {les.kind for les in lesions}, key=NAME_ORDER.index
    )  # names as the first family joins them
    study = PhantomStudy(
        hu=hu,
        spacing=(dz, scan.px, scan.px),
        mask=mask,
        slice_labels=mask.any(axis=(1, 2)).astype(np.uint8),
        label=int(bool(lesions)),
        kind="+".join(present) if present else "none",
        lesions=lesions,
        contrast_hu=max((les.contrast_hu for les in lesions), default=None),
        size_mm=max((les.size_mm for les in lesions), default=None),
        noise_hu=scan.noise,
        z0_mm=float(scan.z[0]),
    )
    extra = {name: _to_image(scan, arr, 0.0, False) for name, arr in kept.items()}
    return study, extra


def build_study(
    rng: np.random.Generator,
    *,
    matrix: int = 512,
    bleed: bool | None = None,
    clear: bool = False,
    slice_mm: float | None = None,
    kinds: list[str] | None = None,
    keep: tuple[str, ...] = (),
) -> tuple[PhantomStudy, dict[str, np.ndarray]]:
    """:func:`generate_other_study` with the bleed kinds chosen and compartments kept (for tests and looks).

    ``kinds`` forces the bleeds (implies a bleed study); ``keep`` names fields of
    :class:`~viewer.synth.other.anatomy.Compartments` ("ventricle", "cavity", ...) returned slab-averaged on
    the image grid.
    """
    if bleed is None:
        bleed = bool(rng.uniform() < 0.5)
    dz = float(slice_mm) if slice_mm is not None else draw_slice_mm(rng)
    if dz <= 0:
        raise ValueError("slice_mm must be positive")
    for _ in range(12):
        if clear:
            chosen = ["intraparenchymal"]
        elif kinds is not None:
            chosen = list(kinds)
        else:
            chosen = _choose_kinds(rng) if bleed else []
        result = _attempt(rng, matrix, dz, chosen, clear, keep)
        if result is not None:
            return result
    raise RuntimeError("could not place the bleeds in 12 tries")


def generate_other_study(
    rng: np.random.Generator,
    *,
    matrix: int = 512,
    bleed: bool | None = None,
    clear: bool = False,
    slice_mm: float | None = None,
) -> PhantomStudy:
    """Draw one synthetic non-contrast head CT of the second generator family.

    Parameters
    ----------
    rng:
        The only source of randomness: the same generator state gives the same study.
    matrix:
        Rows and columns of each slice.
    bleed:
        Whether to add bleeds (one, sometimes two); a fair coin when None.
    clear:
        Make the bleed an obvious large intraparenchymal haematoma under low noise (the demo).
    slice_mm:
        Slice thickness and spacing (mm); drawn from 0.625–10 mm (most often 2.5–5) when None. Studies are cut
        to at most 400 slices, keeping the vertex.
    """
    return build_study(rng, matrix=matrix, bleed=bleed, clear=clear, slice_mm=slice_mm)[0]
