"""One synthetic non-contrast head CT in memory, with and without hyperdense bleeds: :func:`generate_study`.

No dataset can be downloaded here, so the default model learns from these phantoms, the tests read them and
``make run`` opens one. Each study is drawn from a seeded generator: a head (:mod:`viewer.synth.anatomy`) at a
varied position and rotation, mild beam-hardening-like nonuniformity and correlated noise. Half of the studies
get bleeds (:mod:`viewer.synth.bleeds`), 15–50 HU above brain under 4–10 HU of noise. Per-slice and per-voxel
ground truth come with the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from viewer.synth.anatomy import Head
from viewer.synth.bleeds import KINDS, Bleed, make_bleed
from viewer.synth.labels import LesionInfo
from viewer.synth.numeric import SmoothField, rotation
from viewer.synth.render import Renderer, reconstruct

SLICE_THICKNESS_MM = 5.0
# A slice counts as showing a bleed only where at least this much of it is bleed; smaller slivers are dropped
# from the mask so that labels only claim what a reader could see.
MIN_SLICE_AREA_MM2 = 3.0

_F32 = np.float32


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
        """Number of slices."""
        return int(self.hu.shape[0])


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
    head = Head(rng)
    fov = float(rng.uniform(220.0, 250.0))
    px = fov / matrix
    dz = SLICE_THICKNESS_MM
    noise = float(rng.uniform(4.0, 5.0) if clear else rng.uniform(4.0, 10.0))
    rot = rotation(
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
    fold = SmoothField(rng, xs, ys, zs, 4.0)
    tissue = SmoothField(rng, xs, ys, zs, 25.0)

    bleeds: list[Bleed] = []
    if bleed:
        w_range = (bottom + 1.5 * dz, bottom + span - 1.5 * dz)
        if clear:
            kinds = ["intraparenchymal"]
        else:
            kinds = [str(rng.choice(KINDS))]
            if rng.uniform() < 0.2:
                kinds.append(str(rng.choice([k for k in KINDS if k != kinds[0]])))
        for kind in kinds:
            b = make_bleed(rng, head, kind, noise, w_range, clear)
            if b is None:
                return None
            bleeds.append(b)

    renderer = Renderer(head, bleeds, rot, center, xs, ys, zs, dz, fold, tissue)
    hu = np.empty((n_slices, matrix, matrix), _F32)
    lesion_id = np.zeros(hu.shape, np.uint8)  # 1 + index of the bleed a voxel belongs to, 0 for none
    weights = np.zeros((len(bleeds), matrix, matrix), _F32)
    passes = 2 if px < 0.6 else 1 if px < 1.2 else 0
    for k in range(n_slices):
        hu[k] = -1000.0
        weights[:] = 0.0
        box = renderer.render(k, hu[k], list(weights))
        hu[k] = reconstruct(hu[k], rng, noise, passes)
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
