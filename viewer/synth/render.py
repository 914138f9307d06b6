"""Drawing a phantom study slice by slice, then adding noise and blur like a scanner's reconstruction.

Tissues are painted in order with soft edges one pixel wide, so boundaries carry partial-volume values; bleeds
are averaged over the 5 mm slab of each slice, so a small bleed that only grazes a slice is faint there. Only
the part of each slice covered by the head is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from viewer.synth.anatomy import Ellipsoid, Head
from viewer.synth.bleeds import Bleed
from viewer.synth.numeric import EMPTY_BOX, Box, SmoothField, paint, ramp

HU_MIN, HU_MAX = -1024.0, 3071.0

_F32 = np.float32


@dataclass(frozen=True)
class Streak:
    """One beam-hardening streak in the posterior fossa: a line through (u, v) at ``angle``, ``hu`` strong."""

    u: float
    v: float
    angle: float
    hu: float
    width: float


def skull_base_streaks(rng: np.random.Generator, head: Head) -> list[Streak]:
    """Bright and dark streaks fanning out between and from the petrous bones, as in real head CT."""
    out: list[Streak] = []
    for _ in range(int(rng.integers(3, 9))):
        s = float(rng.choice([-1.0, 1.0]))
        out.append(
            Streak(
                u=s * float(rng.uniform(15.0, 35.0)) * float(head.ref_scale[0]),
                v=float(rng.uniform(0.0, 15.0)) * float(head.ref_scale[1]),
                angle=float(rng.uniform(0.0, math.pi)),
                hu=float(rng.choice([-1.0, 1.0]) * rng.uniform(8.0, 40.0)),
                width=float(rng.uniform(0.8, 2.5)),
            )
        )
    return out


def streak_pattern(
    streaks: Sequence[Streak], u: np.ndarray, v: np.ndarray, w: np.ndarray, c_lo: float
) -> np.ndarray:
    """HU added by ``streaks`` at head-frame points: strongest at the petrous level, fading above and below."""
    level = np.exp(-(((w + _F32(0.6 * c_lo)) * _F32(1.0 / (0.18 * c_lo))) ** 2))
    out = np.zeros(np.shape(u), _F32)
    if float(level.max(initial=0.0)) < 0.02:
        return out
    for st in streaks:
        d = (u - _F32(st.u)) * _F32(math.sin(st.angle)) - (v - _F32(st.v)) * _F32(math.cos(st.angle))
        out += _F32(st.hu) * np.exp(-((d * _F32(1.0 / st.width)) ** 2))
    return out * level


class Renderer:
    """Draws one study slice by slice; only the part of each slice covered by the head is computed."""

    def __init__(
        self,
        head: Head,
        bleeds: list[Bleed],
        rot: np.ndarray,
        center: np.ndarray,
        xs: np.ndarray,
        ys: np.ndarray,
        zs: np.ndarray,
        dz: float,
        fold: SmoothField,
        tissue: SmoothField,
    ) -> None:
        self.head, self.bleeds, self.rot, self.center = head, bleeds, rot, center
        self.xs, self.ys, self.zs, self.dz = xs.astype(_F32), ys.astype(_F32), zs, dz
        self.px = float(abs(xs[1] - xs[0]))
        self.inv_edge = 1.0 / max(self.px, 0.35)
        self.fold, self.tissue = fold, tissue
        self.full = Box(0, ys.size, 0, xs.size)
        self.streaks: list[Streak] = []

    def coords(self, k: int, box: Box, step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    def box_of(self, center_head: np.ndarray, radius: float, k: int, slab: float = 0.0) -> Box:
        """Pixels of slice ``k`` that a sphere in the head frame can touch."""
        p = self.center + self.rot @ center_head
        dz = abs(self.zs[k] - p[2]) - slab
        if dz >= radius:
            return EMPTY_BOX
        rr = math.sqrt(radius * radius - max(dz, 0.0) ** 2) + 2 * self.px
        x0, y0 = float(self.xs[0]), float(self.ys[0])
        c0 = max(0, int((p[0] - rr - x0) / self.px))
        c1 = min(self.xs.size, int((p[0] + rr - x0) / self.px) + 2)
        r0 = max(0, int((p[1] - rr - y0) / self.px))
        r1 = min(self.ys.size, int((p[1] + rr - y0) / self.px) + 2)
        return Box(r0, r1, c0, c1)

    def head_box(self, k: int) -> Box:
        """Bounding box of the head on slice ``k``, from a coarse look at the outline plus external parts."""
        step = max(1, round(3.0 / self.px))
        u, v, w = self.coords(k, self.full, step)
        depth, _, ct, _ = self.head.cavity(u, v, w)
        outer = depth + self.head.t_skull * 1.3 + self.head.scalp_thickness(ct, w) + 4
        inside = outer > 0
        inside |= (self.head.face_depth(u, v, w) > -4) & (w < self.head.face_top() + 4)
        rows = np.flatnonzero(inside.any(axis=1))
        cols = np.flatnonzero(inside.any(axis=0))
        box = EMPTY_BOX
        if rows.size:
            pad = 2 * step + 2
            box = Box(
                max(0, rows[0] * step - pad),
                min(self.ys.size, rows[-1] * step + pad),
                max(0, cols[0] * step - pad),
                min(self.xs.size, cols[-1] * step + pad),
            )
        for e in self.head.face:
            if e.outside:
                box = box.union(self.box_of(e.center, float(e.semi.max()), k))
        return box

    def geometry(self, k: int, box: Box) -> tuple[np.ndarray, ...]:
        """Depth under the inner table, height above the fossa floor, skull and scalp thickness, face depth.

        These are smooth, so on fine matrices they are computed on every other pixel and interpolated.
        """
        head = self.head
        step = 2 if self.px < 0.7 else 1
        rows, cols = box.r1 - box.r0, box.c1 - box.c0
        coarse = (
            Box(box.r0, box.r0 + 2 * (rows // 2) + 1, box.c0, box.c0 + 2 * (cols // 2) + 1)
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
        prims: Sequence[Ellipsoid],
        k: int,
        box: Box,
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
            paint(hu[idx], value, a)
            if csf_space is not None:
                if e.role == "csf":
                    np.maximum(csf_space[idx], a, out=csf_space[idx])
                else:
                    csf_space[idx] *= 1.0 - a
            if vent is not None and e.role == "ventricle":
                np.maximum(vent[idx], a, out=vent[idx])
            for arr in keep:
                arr[idx] *= 1.0 - a

    def render(self, k: int, out: np.ndarray, lesion_alpha: list[np.ndarray]) -> Box:
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
        soft = ramp(depth + t_sk + t_sc, ie)
        lowest = float(w.min())
        if lowest < head.face_top() + 5.0:
            face_a = ramp(face_d, ie) * ramp(head.face_top() - w, 0.1)
            np.maximum(soft, face_a, out=soft)
        paint(hu, head.scalp, soft)
        if lowest < head.face_top() - 6.0:
            low = ramp(head.face_top() - 10 - w, 0.15)
            fat = ramp(face_d - 1.5, ie) * ramp(1.5 + head.t_fat - face_d, ie) * low
            paint(hu, -90.0, fat)

        # Skull: vault with tables and diploe, and the skull base.
        bone = ramp(depth + t_sk, ie) * ramp(f + head.t_base, ie)
        x = np.clip(-depth / t_sk, 0.0, 1.0)
        dipl = ramp(np.minimum(x - 0.3, 0.7 - x) * t_sk, ie) * ramp(t_sk - 4.0, 1.0)
        bone_hu = head.table + (head.diploe + 180.0 * fold - head.table) * dipl
        if float(f.min()) < 2.0:
            paint(bone_hu, 1050.0 + 350.0 * fold, ramp(-f, 0.3))
        paint(hu, bone_hu, bone)
        uvw = (u, v, w)
        self.paint_list(head.face, k, box, hu, uvw)

        # Cranial cavity.
        cav = ramp(depth, ie) * ramp(f, ie)
        rows = np.flatnonzero(cav.any(axis=1))
        weights = [np.zeros(depth.shape, _F32) for _ in self.bleeds]
        if rows.size:
            cols = np.flatnonzero(cav.any(axis=0))
            cbox = Box(box.r0 + rows[0], box.r0 + rows[-1] + 1, box.c0 + cols[0], box.c0 + cols[-1] + 1)
            idx = cbox.rel(box)
            content = self.cavity_content(
                k, cbox, (u[idx], v[idx], w[idx]), depth[idx], f[idx], fold[idx], [wt[idx] for wt in weights]
            )
            paint(hu[idx], content, cav[idx])
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
        box: Box,
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
        sdh_thick: list[tuple[Box, list[np.ndarray]]] = []
        sah_region: list[tuple[Box, np.ndarray]] = []
        widen = np.zeros_like(depth)
        for b in self.bleeds:
            sub = self.box_of(b.center, b.bound, k, slab=self.dz / 2).within(box)
            if sub.empty:
                sdh_thick.append((EMPTY_BOX, []))
                sah_region.append((EMPTY_BOX, np.zeros(0)))
                continue
            idx = sub.rel(box)
            if b.kind in ("subdural", "epidural") and b.site == "convexity":
                # Across the slab only the height changes appreciably.
                spread = b.subdural_spread(u[idx], v[idx])
                profile = b.lens_thickness if b.kind == "epidural" else b.subdural_thickness
                ts = [profile(spread, w[idx] + o * shift[2]) for o in offsets]
                surface[idx] -= ts[1]
                sdh_thick.append((sub, ts))
                sah_region.append((EMPTY_BOX, np.zeros(0)))
            elif b.kind == "subarachnoid":
                samples = [
                    (u[idx] + o * shift[0], v[idx] + o * shift[1], w[idx] + o * shift[2]) for o in offsets
                ]
                reg = sum(b.sah_region(*s) for s in samples) / 3.0
                widen[idx] = np.maximum(widen[idx], reg)
                sah_region.append((sub, reg))
                sdh_thick.append((EMPTY_BOX, []))
            else:
                sah_region.append((sub, np.zeros(0)))
                sdh_thick.append((EMPTY_BOX, []))

        # Cortex: grey ribbon under the surface and around sulci; CSF over the surface and in the sulci.
        band = np.abs(fold)
        fe = 1.0 / (0.36 * max(self.px, 0.35))  # the folding field changes by about 0.36 per mm
        # Sulci open at the surface and taper to nothing at their depth; grey matter lines them.
        taper = np.clip(1.0 - surface * _F32(1.0 / head.sulcal_depth), 0.0, 1.0)
        sulc_w = head.sulcal_width * (1.0 + 0.9 * widen) * taper
        sas = ramp(head.t_sas + 1.2 * widen - surface, ie)
        sulci = ramp(sulc_w - band, fe)
        lining = np.clip((head.sulcal_depth + 3.0 - surface) * _F32(1.0 / 3.0), 0.0, 1.0) * head.grey_width
        grey = np.maximum(ramp(head.t_sas + 2.8 - surface, ie), ramp(sulc_w + lining - band, fe))
        hu = head.white + (head.grey - head.white) * grey + 1.2 * tissue
        cb = head.cerebellum(u, v, w)
        if cb.any():
            r4 = np.sqrt(u * u + (v - 0.22 * head.b) ** 2 + (w + 0.68 * head.c_lo) ** 2)
            folia = head.grey - 3.0 + 3.5 * np.cos(r4 * _F32(2 * math.pi / 3.2) + 1.5 * fold)
            paint(hu, folia, cb)
        # Interhemispheric fissure with the falx in it, and the tentorium.
        fissure = ramp(1.2 + 0.8 * head.t_sas - np.abs(u), ie) * (1.0 - head.core(v, w))
        csf_space = np.maximum(np.maximum(sas, sulci), fissure)
        paint(hu, head.csf, csf_space)
        falx = ramp(0.6 - np.abs(u), ie) * fissure
        tent = ramp(0.6 - np.abs(w - head.tentorium(u, v)), ie) * (v > 0.1 * head.b) * _F32(0.4)
        np.maximum(falx, tent, out=falx)
        paint(hu, head.falx, falx)
        csf_space *= 1.0 - falx
        # Brighter just under the inner table, as residual beam hardening leaves it.
        hu += head.subcortical_bh * np.clip(1.0 - depth / 10.0, 0.0, 1.0) ** 2

        vent = np.zeros_like(hu)
        self.paint_list(head.cavity_prims, k, box, hu, uvw, csf_space=csf_space, vent=vent)
        self.paint_list(head.calcs, k, box, hu, uvw, csf_space=csf_space)
        if head.streak:
            # Hounsfield bar: a dark band between the petrous apices.
            level = ramp(9.0 - np.abs(w + 0.69 * head.c_lo), 0.3)
            paint(hu, hu - head.streak, ramp(4.0 - np.abs(v - 0.05 * head.b), 0.5) * level)
        if self.streaks:
            hu += streak_pattern(self.streaks, u, v, w, head.c_lo)

        for b, wt, (sbox, tsamples), (rbox, reg) in zip(
            self.bleeds, weights, sdh_thick, sah_region, strict=True
        ):
            if b.kind in ("subdural", "epidural") and b.site == "convexity" and not sbox.empty:
                idx = sbox.rel(box)
                a = sum(ramp(t - depth[idx], ie) * (t > 0.3) for t in tsamples) / 3.0
                a *= ramp(depth[idx], ie)
                paint(hu[idx], b.hu, a)
                wt[idx] = np.maximum(wt[idx], a)
            elif b.kind == "subarachnoid" and not rbox.empty:
                idx = rbox.rel(box)
                a = csf_space[idx] * reg
                paint(hu[idx], b.hu, a)
                wt[idx] = np.maximum(wt[idx], a)
            elif b.kind == "intraventricular" or (b.kind == "subdural" and b.site != "convexity"):
                self._paint_wide(k, box, b, wt, hu, uvw, vent, depth)
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
                    ring = sum(ramp(s + b.edema_mm, ie) for s in shapes) / 3.0
                    paint(hu[idx], hu[idx] - 7.0, ring * (1.0 - vent[idx]))
                a = sum(ramp(s, ie) for s in shapes) / 3.0
                paint(hu[idx], b.hu, a)
                wt[idx] = np.maximum(wt[idx], a)
        return hu

    def _paint_wide(
        self,
        k: int,
        box: Box,
        b: Bleed,
        wt: np.ndarray,
        hu: np.ndarray,
        uvw: tuple[np.ndarray, np.ndarray, np.ndarray],
        vent: np.ndarray,
        depth: np.ndarray,
    ) -> None:
        """Paint a falx or tentorium subdural or intraventricular blood (wide family), averaged over the slab."""
        sub = self.box_of(b.center, b.bound, k, slab=self.dz / 2).within(box)
        if sub.empty:
            return
        idx = sub.rel(box)
        u, v, w = (c[idx] for c in uvw)
        ie = self.inv_edge
        shift = self.rot[2]
        a = np.zeros(u.shape, _F32)
        for o in (-self.dz / 3.0, 0.0, self.dz / 3.0):
            su, sv, sw = u + o * shift[0], v + o * shift[1], w + o * shift[2]
            if b.kind == "intraventricular":
                part = b.sah_region(su, sv, sw)
                if b.level is not None:
                    part = part * ramp(sv - _F32(b.level), ie)
            elif b.site == "falx":
                t = b.sheet_thickness(sv, sw)
                d = su * _F32(b.side)
                part = ramp(d - 0.4, ie) * ramp(t + 0.4 - d, ie) * (t > 0.3)
                part = part * (1.0 - self.head.core(sv, sw))
            else:
                t = b.sheet_thickness(su, sv)
                d = sw - self.head.tentorium(su, sv)
                part = ramp(d - 0.4, ie) * ramp(t + 0.4 - d, ie) * (t > 0.3)
            a += part
        a *= _F32(1.0 / 3.0)
        if b.kind == "intraventricular":
            a *= vent[idx]
        else:
            a *= ramp(depth[idx] - 0.5, ie)
        paint(hu[idx], b.hu, a)
        wt[idx] = np.maximum(wt[idx], a)


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
NOISE_GAIN = (1.0, 6.0 / 16.0, 70.0 / 256.0)


def reconstruct(img: np.ndarray, rng: np.random.Generator, sigma: float, passes: int) -> np.ndarray:
    """Add noise and blur like a soft-tissue kernel: noise of standard deviation ``sigma`` with a ~1 mm grain.

    Uniform noise is cheaper to draw than Gaussian and the smoothing sums enough of it to look Gaussian.
    """
    if passes == 0:
        out = img + rng.standard_normal(img.shape, dtype=_F32) * _F32(sigma)
    else:
        noise = rng.random(img.shape, dtype=_F32)
        noise -= _F32(0.5)
        out = img + noise * _F32(sigma * math.sqrt(12.0) / NOISE_GAIN[passes])
        for _ in range(passes):
            out = _smooth121(out)
    np.clip(out, HU_MIN, HU_MAX, out=out)
    return out
