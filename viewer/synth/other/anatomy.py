"""One head of the second family, drawn from a seed and painted into a block of the working grid.

:func:`draw_head` draws the outline (:mod:`.head`), brain (:mod:`.brain`) and skull base (:mod:`.skullbase`);
:func:`paint_head` paints scalp, skull with diploe and sutures, skull base, CSF, cortex and white matter,
cerebellum with folia, brainstem, deep nuclei, cisterns, ventricles, dura and calcifications into a block,
and keeps the compartments bleeds are placed by (cavity depth, sulci, cisterns, ventricles).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.synth.other.brain import Blob, Brain, cortex, draw_brain
from viewer.synth.other.fields import F32, Block, blend, soft
from viewer.synth.other.head import HeadShape, draw_shape
from viewer.synth.other.skullbase import AIR, SkullBase, draw_base, paint_base

FAR = 99.0  # "no sulcus near": the sulcal distance outside the cortex


@dataclass
class Head:
    """Everything about one head: outline, brain, skull base and the HU of its soft tissues and bone."""

    shape: HeadShape
    brain: Brain
    base: SkullBase
    cortical_hu: float
    diploe_hu: float
    skin_hu: float
    fat_hu: float
    temporalis: float  # extra soft-tissue thickness over the temples (mm)
    face: Blob
    neck: Blob


def draw_head(rng: np.random.Generator) -> Head:
    """Draw one head."""
    s = draw_shape(rng)
    brain = draw_brain(rng, s)
    base = draw_base(rng, s)
    u = rng.uniform
    w_af = -s.anterior_floor * s.c_up
    face = Blob(
        np.array([0.0, -0.6 * s.b, w_af - 45]), np.array([0.85 * s.a, 0.62 * s.b, 60.0]), 2.0, 0.0, 0.0
    )
    neck = Blob(
        np.array([0.0, -0.1 * s.b, -1.75 * s.c_up]), np.array([0.9 * s.a, s.b, s.c_up]), 2.0, 0.0, 0.0
    )
    return Head(
        shape=s,
        brain=brain,
        base=base,
        cortical_hu=u(1400.0, 1850.0),
        diploe_hu=u(600.0, 1000.0),
        skin_hu=u(35.0, 55.0),
        fat_hu=u(-110.0, -70.0),
        temporalis=u(2.0, 8.0),
        face=face,
        neck=neck,
    )


@dataclass
class Compartments:
    """One painted block: HU and the fields bleeds are drawn from (all (planes, rows, columns))."""

    hu: np.ndarray
    cavity: np.ndarray  # depth inside the cranial cavity (mm; negative outside)
    sulcus: np.ndarray  # distance to the nearest cerebral sulcus or fissure (mm; FAR where none)
    cistern: np.ndarray  # fraction of basal-cistern or sylvian CSF
    ventricle: np.ndarray  # fraction of ventricular CSF
    brain_hu: np.ndarray  # HU of the brain tissue painted (grey/white), where there is brain


def _scalp_and_bone(
    head: Head, block: Block, hu: np.ndarray, rad: np.ndarray, cav: np.ndarray, edge: float
) -> None:
    s = head.shape
    u, v, w = block.u, block.v, block.w
    t_sk = s.skull_thickness(u, v, w)
    r = np.sqrt(u * u + v * v + w * w) + F32(1e-3)
    ex = u / r
    band = soft(F32(0.3 * s.c_up) - w, 15.0) * soft(w + F32(0.75 * s.c_up), 10.0)
    t_sc = F32(s.t_scalp) + F32(head.temporalis) * ex * ex * band
    out = rad + t_sk + t_sc  # depth under the skin
    alpha = soft(out, edge)
    for blob in (head.face, head.neck):
        sl = block.region(*blob.box)
        if sl is not None:
            d = blob.depth(*block.coords(sl))
            np.maximum(alpha[sl], soft(d, edge), out=alpha[sl])
            np.maximum(out[sl], d, out=out[sl])
    fat = soft(out - F32(1.5), 1.0) * soft(t_sc - F32(1.5) - out, 1.5) * F32(0.6)
    blend(hu, head.skin_hu + (head.fat_hu - head.skin_hu) * fat, alpha)
    # Skull: cortical tables with diploe between around the whole cavity (thinner under the floor), sutures as
    # thin serrated gaps.
    t_sk = np.where(rad - cav > 1.0, np.minimum(t_sk, F32(s.t_base)), t_sk)
    f = -cav / t_sk
    diploe = soft(f - F32(0.3), 0.2) * soft(F32(0.72) - f, 0.2) * soft(t_sk - F32(4.5), 1.0)
    value = F32(head.cortical_hu) + F32(head.diploe_hu - head.cortical_hu) * diploe
    coronal = np.abs(v - (F32(-0.12 * s.b) + F32(0.3) * w) + F32(1.2) * np.sin(w * F32(0.9)))
    lambdoid = np.abs(v - (F32(0.62 * s.b) - F32(0.55) * w) + F32(1.2) * np.sin(u * F32(0.9)))
    sagittal = np.abs(u + F32(1.0) * np.sin(v * F32(0.9))) + soft(F32(-0.12 * s.b) - v, 1.0) * F32(FAR)
    suture = np.minimum(np.minimum(coronal, lambdoid), sagittal)
    value *= F32(1.0) - F32(0.6) * soft(F32(0.5) - suture, edge) * soft(w, 10.0)
    blend(hu, value, soft(cav + t_sk, edge))


def paint_head(head: Head, block: Block, edge: float) -> Compartments:
    """Paint ``head`` into ``block``; ``edge`` (mm) is the width of partial volume at a surface."""
    s, br = head.shape, head.brain
    u, v, w = block.u, block.v, block.w
    shape = block.shape
    hu = np.full(shape, AIR, F32)
    rad, surface = s.radial(u, v, w, coarse=True)
    cav = s.cavity_depth(u, v, w, rad)
    _scalp_and_bone(head, block, hu, rad, cav, edge)
    inside = soft(cav, edge)
    paint_base(head.base, s, block, hu, F32(1.0) - inside, rad, edge)
    blend(hu, br.csf, inside)

    sulcus = np.full(shape, FAR, F32)
    cistern = np.zeros(shape, F32)
    ventricle = np.zeros(shape, F32)
    brain_hu = np.full(shape, br.white, F32)
    idx = np.flatnonzero(cav > -1.0)
    if idx.size:
        _paint_brain(
            head, block, idx, cav.ravel()[idx], surface.ravel()[idx], hu, sulcus, cistern, brain_hu, edge
        )
    _paint_deep(head, block, hu, cav, cistern, ventricle, brain_hu, edge)
    return Compartments(hu, cav, sulcus, cistern, ventricle, brain_hu)


def _paint_brain(
    head: Head,
    block: Block,
    idx: np.ndarray,
    cav: np.ndarray,
    surface: np.ndarray,
    hu: np.ndarray,
    sulcus: np.ndarray,
    cistern: np.ndarray,
    brain_hu: np.ndarray,
    edge: float,
) -> None:
    """Cerebral cortex and white matter, cerebellum and dura at the cavity voxels ``idx``."""
    s, br = head.shape, head.brain
    u, v, w = block.u.ravel()[idx], block.v.ravel()[idx], block.w.ravel()[idx]
    pial = cav - F32(br.subarachnoid)
    scale = F32(0.45) + F32(0.55) * surface / (
        np.sqrt(u * u + v * v + w * w) + F32(1e-3)
    )  # sulci bend inwards
    cx = cortex(br, s, u, v, w, pial, scale, edge)
    tissue = F32(br.white) + F32(br.grey - br.white) * cx.grey
    csf = cx.csf

    # Posterior fossa below the tentorium: cerebellum with concentric folia and a white core.
    tent = br.tentorium_height(u, v)
    ridge = s.ridge(u, w)
    cb = soft(tent - w, 2.0) * soft(v - ridge, 3.0)
    if cb.max(initial=0.0) > 0.0:
        dc = np.sqrt(u * u + (v - F32(0.45 * s.b)) ** 2 + (w + F32(0.4 * s.c_up)) ** 2)
        ripple = (
            dc * F32(2 * np.pi / 4.5) + F32(1.5) * np.sin(u * F32(0.15)) + F32(1.2) * np.sin(v * F32(0.11))
        )
        folia = F32(0.35) * soft(F32(0.3) - np.abs(np.cos(ripple)), 0.3) * soft(F32(10.0) - pial, 3.0)
        core = np.minimum(
            np.sqrt(
                (np.abs(u) - F32(0.3 * s.a)) ** 2 + (v - F32(0.45 * s.b)) ** 2 + (w + F32(0.62 * s.c_up)) ** 2
            ),
            F32(FAR),
        )
        t_cb = F32(br.grey - 2.0) + F32(br.white - br.grey + 2.0) * soft(F32(11.0) - core, 4.0)
        tissue += cb * (t_cb - tissue)
        csf = csf + cb * (folia - csf)
        np.maximum(cx.sulcus, cb * F32(FAR), out=cx.sulcus)
    # Tentorium and falx: thin dural sheets, a little denser than brain, in a thin CSF cleft.
    notch = soft(np.abs(u) - F32(14.0), 3.0) + soft(v - F32(0.3 * s.b), 3.0)
    sheet = soft(F32(0.9) - np.abs(w - tent), edge) * soft(v - ridge, 2.0) * np.minimum(notch, F32(1.0))
    csf = np.maximum(csf, sheet)
    alpha = soft(pial, edge) * (F32(1.0) - csf)
    flat = hu.ravel()
    value = flat[idx]
    blend(value, tissue, alpha)
    falx = soft(F32(0.5) - np.abs(u), edge) * soft(w - F32(0.1 * s.c_up), 4.0) * soft(cav - F32(2.0), 2.0)
    blend(value, F32(br.grey + 15.0), np.maximum(falx, sheet) * F32(0.8))
    flat[idx] = value
    sulcus.ravel()[idx] = np.where(pial > -1.0, cx.sulcus, F32(FAR))
    cistern.ravel()[idx] = cx.sylvian
    brain_hu.ravel()[idx] = tissue


def _paint_deep(
    head: Head,
    block: Block,
    hu: np.ndarray,
    cav: np.ndarray,
    cistern: np.ndarray,
    ventricle: np.ndarray,
    brain_hu: np.ndarray,
    edge: float,
) -> None:
    """Deep nuclei, cisterns, brainstem, ventricles and calcifications."""
    br = head.brain
    for blob in br.nuclei:
        sl = block.region(*blob.box)
        if sl is not None:
            alpha = soft(blob.depth(*block.coords(sl)), 3.0)
            blend(hu[sl], blob.hu, alpha)
            blend(brain_hu[sl], blob.hu, alpha)
    for blob in br.cisterns:
        sl = block.region(*blob.box)
        if sl is not None:
            alpha = soft(blob.depth(*block.coords(sl)), edge) * soft(cav[sl], edge)
            blend(hu[sl], br.csf, alpha)
            np.maximum(cistern[sl], alpha, out=cistern[sl])
    bs = br.brainstem
    sl = block.region(*bs.box)
    if sl is not None:
        u, v, w = block.coords(sl)
        d = bs.distance(u, v, w)
        shell = soft(F32(4.0) - d, edge) * soft(d, edge) * soft(F32(-0.02 * head.shape.c_up) - w, 4.0)
        shell *= soft(cav[sl], edge)
        blend(hu[sl], br.csf, shell)
        np.maximum(cistern[sl], shell, out=cistern[sl])
        alpha = soft(-d, edge)
        blend(hu[sl], br.white + 4.0, alpha)
        blend(brain_hu[sl], br.white + 4.0, alpha)
    sl = block.region(*br.ventricle_box)
    if sl is not None:
        alpha = soft(-br.ventricle_distance(*block.coords(sl)), edge)
        blend(hu[sl], br.csf, alpha)
        ventricle[sl] = alpha
    for blob in br.calcifications:
        sl = block.region(*blob.box)
        if sl is not None:
            blend(hu[sl], blob.hu, soft(blob.depth(*block.coords(sl)), edge))
