"""One synthetic non-contrast head CT in memory, with and without hyperdense bleeds: :func:`generate_study`.

No dataset can be downloaded here, so the default model learns from these phantoms, the tests read them and
``make run`` opens one. Each study is drawn from a seeded generator: a head (:mod:`viewer.synth.anatomy`) at a
varied position and rotation, mild beam-hardening-like nonuniformity and correlated noise. Half of the studies
get bleeds (:mod:`viewer.synth.bleeds`), 15–50 HU above brain under 4–10 HU of noise. Per-slice and per-voxel
ground truth come with the pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from viewer.synth.acquisition import (
    MAX_SLICES,
    WideAcquisition,
    apply_motion,
    draw_motion,
    draw_wide,
    extra_calcifications,
)
from viewer.synth.anatomy import Head
from viewer.synth.bleeds import CLASSIC_KINDS, KINDS, Bleed, make_bleed, make_wide_bleed
from viewer.synth.labels import LesionInfo
from viewer.synth.numeric import EMPTY_BOX, Box, SmoothField, rotation
from viewer.synth.render import Renderer, reconstruct, skull_base_streaks

SLICE_THICKNESS_MM = 5.0
FAMILIES = ("classic", "wide")
# How often the wide family draws each bleed kind (KINDS order).
_WIDE_KIND_P = (0.3, 0.25, 0.15, 0.12, 0.18)
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
    family: str = "classic",
    slice_mm: float | None = None,
    kinds: Sequence[str] | None = None,
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
    family:
        ``"classic"``: 5 mm slices, three bleed kinds, the set the model was first trained on (its seeds stay the
        same studies). ``"wide"``: every bleed kind of :data:`~viewer.synth.bleeds.KINDS` incl. small and faint
        ones, slice thickness 0.625–10 mm, field of view 180–300 mm, more head tilt and offset, noise texture
        of sharp to soft kernels, partial volume through thick slices, skull-base streaks, motion and more
        calcifications (:mod:`viewer.synth.acquisition`). ``n_slices`` then follows from the head's height.
    slice_mm:
        Wide family only: the slice thickness instead of a drawn one.
    kinds:
        The bleed kinds to place (implies ``bleed``) instead of drawn ones.

    Returns
    -------
    PhantomStudy
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    if slice_mm is not None and family != "wide":
        raise ValueError("slice_mm is for the wide family")
    allowed = CLASSIC_KINDS if family == "classic" else KINDS
    if kinds is not None and not set(kinds) <= set(allowed):
        raise ValueError(f"the {family} family draws only {', '.join(allowed)}")
    if kinds:
        bleed = True
    if bleed is None:
        bleed = bool(rng.uniform() < 0.5)
    if n_slices is None and family == "classic":
        n_slices = int(rng.integers(28, 41))
    for _ in range(20):
        acq = draw_wide(rng, slice_mm) if family == "wide" else None
        study = _try_study(rng, matrix, n_slices, bleed or clear, clear, acq, kinds)
        if study is not None:
            return study
    raise RuntimeError("could not place a bleed in 20 tries")


def _try_study(
    rng: np.random.Generator,
    matrix: int,
    n_slices: int | None,
    bleed: bool,
    clear: bool,
    acq: WideAcquisition | None = None,
    chosen: Sequence[str] | None = None,
) -> PhantomStudy | None:
    head = Head(rng)
    if acq is None:
        fov = float(rng.uniform(220.0, 250.0))
        dz = SLICE_THICKNESS_MM
        noise = float(rng.uniform(4.0, 5.0) if clear else rng.uniform(4.0, 10.0))
        rot = rotation(
            math.radians(rng.uniform(-9, 9)),
            math.radians(rng.uniform(-12, 8)),
            math.radians(rng.uniform(-5, 5)),
        )
        center_xy = rng.uniform(-10.0, 10.0, 2)
    else:
        fov, dz, rot, center_xy = acq.fov_mm, acq.slice_mm, acq.rot, acq.center_xy
        noise = min(acq.noise_hu, 5.0) if clear else acq.noise_hu
        head.calcs.extend(extra_calcifications(rng, head))
    px = fov / matrix

    # Scan range, in head-frame height: from below the foramen magnum to just over the vertex.
    vertex = head.c_up + head.t_skull + head.t_scalp
    # Slices beyond that go down into the upper neck, as a long scan would; too few cut both ends short.
    top, bottom = vertex + rng.uniform(-6.0, 3.0), -rng.uniform(0.92, 1.15) * head.c_lo
    if n_slices is None:
        n_slices = min(MAX_SLICES, int((top - bottom) / dz) + 1 + int(rng.integers(0, 3)))
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
        elif chosen:
            kinds = list(chosen)
        elif acq is None:
            kinds = [str(rng.choice(CLASSIC_KINDS))]
            if rng.uniform() < 0.2:
                kinds.append(str(rng.choice([k for k in CLASSIC_KINDS if k != kinds[0]])))
        else:
            kinds = [str(rng.choice(KINDS, p=_WIDE_KIND_P))]
            if rng.uniform() < 0.2:
                kinds.append(str(rng.choice([k for k in KINDS if k != kinds[0]])))
        for kind in kinds:
            if acq is None or clear:
                b = make_bleed(rng, head, kind, noise, w_range, clear)
            else:
                b = make_wide_bleed(rng, head, kind, noise, w_range)
            if b is None:
                return None
            bleeds.append(b)

    subs = 1 if acq is None else acq.sub_slabs
    renderers = [
        Renderer(
            head, bleeds, rot, center, xs, ys, zs + (j + 0.5) * dz / subs - 0.5 * dz, dz / subs, fold, tissue
        )
        for j in range(subs)
    ]
    if acq is not None and acq.streaks:
        streaks = skull_base_streaks(rng, head)
        for r in renderers:
            r.streaks = streaks
    motion = draw_motion(rng, n_slices, px) if acq is not None else None
    hu = np.empty((n_slices, matrix, matrix), _F32)
    lesion_id = np.zeros(hu.shape, np.uint8)  # 1 + index of the bleed a voxel belongs to, 0 for none
    weights = np.zeros((len(bleeds), matrix, matrix), _F32)
    if acq is None:
        passes = 2 if px < 0.6 else 1 if px < 1.2 else 0
    else:
        passes = acq.smoothing_passes
    for k in range(n_slices):
        hu[k], box = _render_slab(renderers, k, weights)
        apply_motion(hu[k], motion, k)
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


def _render_slab(renderers: list[Renderer], k: int, weights: np.ndarray) -> tuple[np.ndarray, Box]:
    """Slice ``k`` as the mean of its sub-slabs (one renderer each), bleed weights likewise, and the drawn box."""
    shape = weights.shape[1:]
    if len(renderers) == 1:
        out = np.full(shape, -1000.0, _F32)
        weights[:] = 0.0
        return out, renderers[0].render(k, out, list(weights))
    acc = np.zeros(shape, _F32)
    wsum = np.zeros_like(weights)
    box = EMPTY_BOX
    for r in renderers:
        out = np.full(shape, -1000.0, _F32)
        weights[:] = 0.0
        box = box.union(r.render(k, out, list(weights)))
        acc += out
        wsum += weights
    scale = _F32(1.0 / len(renderers))
    weights[:] = wsum * scale
    return acc * scale, box
