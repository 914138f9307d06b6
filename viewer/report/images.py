"""Key images as the viewer shows them, rendered headless from numpy: windowed slice and saliency overlay.

Orientation is the viewer's: row 0 at the top, column 0 on the left, no flips (for a standard axial slice the
patient's right is on the image's left). Pixels are resampled to square pixels of the true aspect (pixel
spacing), so the image can be printed at any size without distortion.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from viewer.analysis.display import saliency_magnitude, slice_weight
from viewer.analysis.result import PixelMapFn
from viewer.dicom.pixels import to_display
from viewer.report.output import check_output_path, write_atomic

BRAIN_WINDOW: tuple[float, float] = (40.0, 80.0)  # (center, width) in HU
DEFAULT_WIDTH_PX = 512
DEFAULT_OPACITY = 0.65


@dataclass(frozen=True)
class KeyImage:
    """One key slice, rendered: the plain windowed image and the same with the saliency overlay.

    ``plain`` is ``(h, w)`` uint8 grey, ``overlay`` ``(h, w, 3)`` uint8 RGB or None when the slice has no
    saliency map; both have square pixels spanning ``extent_mm`` (width, height).
    """

    index: int
    plain: np.ndarray
    overlay: np.ndarray | None
    extent_mm: tuple[float, float]
    window: tuple[float, float]


def output_shape(shape: tuple[int, int], spacing_yx: tuple[float, float], width_px: int) -> tuple[int, int]:
    """``(h, w)`` in square pixels for an image of ``shape`` pixels of ``spacing_yx`` mm, the longer side
    ``width_px`` long."""
    rows, cols = shape
    dy, dx = (abs(s) if s and np.isfinite(s) else 1.0 for s in spacing_yx)
    height_mm, width_mm = rows * dy, cols * dx
    if width_mm >= height_mm:
        return max(1, round(width_px * height_mm / width_mm)), width_px
    return width_px, max(1, round(width_px * width_mm / height_mm))


def resample(image: np.ndarray, out_shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """``image`` (2-D float) resampled to ``out_shape`` with pixel centres aligned (linear by default)."""
    rows, cols = image.shape
    h, w = out_shape
    if (h, w) == (rows, cols):
        return image.astype(np.float32, copy=False)
    y = (np.arange(h) + 0.5) * rows / h - 0.5
    x = (np.arange(w) + 0.5) * cols / w - 0.5
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return ndimage.map_coordinates(image.astype(np.float32), [yy, xx], order=order, mode="nearest")


def saliency_colour(t: np.ndarray) -> np.ndarray:
    """Colour of saliency magnitude ``t`` in [0, 1]: red → yellow → white, ``(..., 3)`` float in [0, 1]."""
    t = np.clip(np.asarray(t, dtype=np.float32), 0.0, 1.0)
    return np.stack(
        [np.ones_like(t), np.clip(t * 1.4, 0.0, 1.0), np.clip((t - 0.7) / 0.3, 0.0, 1.0)], axis=-1
    )


def saliency_alpha(t: np.ndarray, opacity: float) -> np.ndarray:
    """Opacity of the overlay: transparent below 10 % of the top saliency, ``opacity`` from 40 % up."""
    t = np.clip((np.asarray(t, dtype=np.float32) - 0.1) / 0.3, 0.0, 1.0)
    return opacity * t * t * (3.0 - 2.0 * t)


def blend(
    grey: np.ndarray, magnitude: np.ndarray, opacity: float = DEFAULT_OPACITY, threshold: float = 0.0
) -> np.ndarray:
    """``grey`` (uint8) with ``magnitude`` in [0, 1] drawn over it in colour, nothing below ``threshold`` (the
    viewer's overlay threshold); ``(h, w, 3)`` uint8."""
    base = np.repeat((grey.astype(np.float32) / 255.0)[..., None], 3, axis=-1)
    alpha = (saliency_alpha(magnitude, opacity) * (magnitude >= threshold))[..., None]
    out = base * (1.0 - alpha) + saliency_colour(magnitude) * alpha
    return np.round(out * 255.0).astype(np.uint8)


def render_key_image(
    volume: Any,
    result: Any,
    index: int,
    *,
    window: tuple[float, float] = BRAIN_WINDOW,
    width_px: int = DEFAULT_WIDTH_PX,
    opacity: float = DEFAULT_OPACITY,
    invert: bool | None = None,
    threshold: float = 0.0,
    pixel_map: PixelMapFn | None = None,
    scaling: str = "series",
) -> KeyImage:
    """Render original slice ``index`` of ``volume`` plain and with ``result``'s pixel saliency over it.

    ``invert``: grey scale inverted (None: as the series says, MONOCHROME1 inverted); ``threshold``: saliency
    below it is left out of the overlay; ``pixel_map``: where the map comes from (default: the maps ``result``
    holds; an open analysis session's ``pixel_map`` computes a missing one); ``scaling``: ``"series"`` or
    ``"slice"``, as :mod:`viewer.analysis.display` explains (the screen's scaling, so the image matches it).
    """
    center, width = window
    if invert is None:
        invert = bool(getattr(volume, "invert", False))
    values = np.asarray(volume.array[index], dtype=np.float32)
    spacing_yx = (float(volume.spacing[1]), float(volume.spacing[2]))
    shape = output_shape(values.shape, spacing_yx, width_px)
    shown = to_display(values, center, width, invert)
    plain = np.round(np.clip(resample(shown, shape), 0.0, 1.0) * 255.0).astype(np.uint8)
    saliency = None
    if result is not None:
        saliency = pixel_map(index) if pixel_map is not None else result.pixel_saliency.get(index)
    overlay = None
    if saliency is not None:
        weight = slice_weight(result.slice_probabilities, index, scaling)
        magnitude = resample(saliency_magnitude(saliency, weight), shape)
        overlay = blend(plain, magnitude, opacity, threshold)
    extent = (values.shape[1] * spacing_yx[1], values.shape[0] * spacing_yx[0])
    return KeyImage(index, plain, overlay, extent, (float(center), float(width)))


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a ``(h, w)`` grey or ``(h, w, 3)`` RGB uint8 array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def export_png(
    path: str | Path,
    volume: Any,
    result: Any,
    index: int,
    *,
    overlay: bool = True,
    window: tuple[float, float] = BRAIN_WINDOW,
    width_px: int = DEFAULT_WIDTH_PX,
    opacity: float = DEFAULT_OPACITY,
    invert: bool | None = None,
    threshold: float = 0.0,
    pixel_map: PixelMapFn | None = None,
    scaling: str = "series",
) -> Path:
    """Write original slice ``index`` as PNG, with ``result``'s saliency over it when ``overlay``
    (``invert``, ``threshold``, ``pixel_map`` and ``scaling`` as in :func:`render_key_image`, so the PNG can
    match the screen).

    Refuses (:class:`~viewer.errors.ViewerError`) a path inside the series' own folder.
    """
    path = Path(path)
    check_output_path(path, volume)
    image = render_key_image(
        volume,
        result if overlay else None,
        index,
        window=window,
        width_px=width_px,
        opacity=opacity,
        invert=invert,
        threshold=threshold,
        pixel_map=pixel_map,
        scaling=scaling,
    )
    data = png_bytes(image.overlay if overlay and image.overlay is not None else image.plain)
    write_atomic(path, data)
    return path
