"""Acquisition of the second family: working grid, slab averaging, upsampling, kernel and noise.

The head is painted on a working grid coarser in-plane than the image and finer than a slice in z; slabs
average its fine planes into slices (partial volume), cubic interpolation brings them to the image matrix,
and the reconstruction kernel acts in the frequency domain: a soft kernel blurs a little, a sharp one
enhances edges. Noise is drawn in the frequency domain with the kernel's noise power spectrum (ramp times
apodisation), so its grain differs between kernels, then the field outside the reconstruction circle is
set to -1024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft

from viewer.synth.other.fields import F32

HU_MIN, HU_MAX = -1024.0, 3071.0
# Working voxels painted per study at most; sets the in-plane working pixel of large studies.
WORK_BUDGET = 3.5e6


@dataclass(frozen=True)
class Kernel:
    """A reconstruction kernel: its modulation transfer and noise power spectrum (frequencies in 1/mm)."""

    sharp: bool
    cutoff: float  # apodisation of the noise power spectrum
    boost: float  # edge enhancement of a sharp kernel
    blur: float  # resolution of a soft kernel

    def mtf(self, f: np.ndarray) -> np.ndarray:
        """Gain of the kernel at spatial frequency ``f``."""
        if self.sharp:
            return 1.0 + self.boost * (1.0 - np.exp(-((f / 0.25) ** 2))) * np.exp(-((f / 0.9) ** 2))
        return np.exp(-((f / self.blur) ** 2))

    def nps_amplitude(self, f: np.ndarray) -> np.ndarray:
        """Square root of the noise power at ``f`` (arbitrary scale)."""
        p = 4 if self.sharp else 2
        return np.sqrt(f * np.exp(-((f / self.cutoff) ** p)))


def draw_kernel(rng: np.random.Generator) -> Kernel:
    """A soft kernel most of the time, a sharp one sometimes."""
    if rng.uniform() < 0.3:
        return Kernel(True, float(rng.uniform(0.6, 0.9)), float(rng.uniform(0.3, 0.7)), 0.0)
    return Kernel(False, float(rng.uniform(0.3, 0.45)), 0.0, float(rng.uniform(0.55, 0.8)))


def _taps(t: np.ndarray, n: int, cubic: bool) -> tuple[np.ndarray, np.ndarray]:
    i = np.floor(t).astype(np.int64)
    f = (t - i).astype(F32)[:, None]
    if cubic:
        idx = i[:, None] + np.arange(-1, 3)
        f2, f3 = f * f, f * f * f
        w = np.concatenate(
            [(-f3 + 2 * f2 - f) / 2, (3 * f3 - 5 * f2 + 2) / 2, (-3 * f3 + 4 * f2 + f) / 2, (f3 - f2) / 2],
            axis=1,
        )
    else:
        idx = i[:, None] + np.arange(0, 2)
        w = np.concatenate([1 - f, f], axis=1)
    return np.clip(idx, 0, n - 1), w.astype(F32)


def resample(src: np.ndarray, ty: np.ndarray, tx: np.ndarray, fill: float, cubic: bool) -> np.ndarray:
    """Slices ``src`` (k, ny, nx) at fractional rows ``ty`` and columns ``tx``; ``fill`` beyond its edges."""
    pad = 2
    s = np.pad(src, ((0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    iy, wy = _taps(np.clip(ty + pad, 0, s.shape[1] - 1), s.shape[1], cubic)
    ix, wx = _taps(np.clip(tx + pad, 0, s.shape[2] - 1), s.shape[2], cubic)
    tmp = s[:, iy[:, 0], :] * wy[None, :, 0, None]
    for j in range(1, iy.shape[1]):
        tmp += s[:, iy[:, j], :] * wy[None, :, j, None]
    out = tmp[:, :, ix[:, 0]] * wx[None, None, :, 0]
    for j in range(1, ix.shape[1]):
        out += tmp[:, :, ix[:, j]] * wx[None, None, :, j]
    return out


def reconstruct(
    slabs: np.ndarray, px: float, kernel: Kernel, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Apply the kernel to image slices ``slabs`` (k, m, m), add its noise of SD ``sigma``, mask the circle."""
    k, m, _ = slabs.shape
    fy = np.fft.fftfreq(m, px)[:, None]
    fx = np.fft.rfftfreq(m, px)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    amp = kernel.nps_amplitude(f)
    amp[0, 0] = 0.0
    power = 2.0 * amp * amp
    var = (2.0 * power.sum() - power[:, 0].sum() - power[:, -1].sum()) / float(m) ** 4
    amp = (amp * (sigma / math.sqrt(var))).astype(F32)
    spec = fft.rfft2(slabs, workers=2)
    spec *= kernel.mtf(f).astype(F32)
    noise = rng.standard_normal((k, m, m // 2 + 1, 2), dtype=F32)
    spec += (noise[..., 0] + 1j * noise[..., 1]) * amp
    out = fft.irfft2(spec, s=(m, m), workers=2).astype(F32, copy=False)
    c = (np.arange(m) - (m - 1) / 2.0) / (m / 2.0)
    outside = (c[:, None] ** 2 + c[None, :] ** 2) > 1.0
    out[:, outside] = HU_MIN
    np.clip(out, HU_MIN, HU_MAX, out=out)
    return out


def draw_slice_mm(rng: np.random.Generator) -> float:
    """Slice thickness (mm) of a study: most often 2.5–5, sometimes thin or thick."""
    choices = (0.625, 1.0, 1.25, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
    p = np.array([0.04, 0.04, 0.06, 0.04, 0.16, 0.1, 0.12, 0.34, 0.05, 0.05])
    return float(rng.choice(choices, p=p / p.sum()))
