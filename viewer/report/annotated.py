"""The planes of the view on screen and of the measurements, rendered headless with the measurements drawn in.

A plane is named by a :class:`~viewer.dicom.reformat.annotations.PlaneRef` (an acquired slice or an axial,
coronal or sagittal reformat of the true geometry), rebuilt here from the volume alone, windowed, resampled to
square pixels of its true aspect and drawn as RGB with each measurement on it: its outline and its number (and, in
the PNG, its value). The report's measurements page and the PNG export of the current view both come from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from viewer.dicom.pixels import to_display
from viewer.dicom.reformat import PlaneKind, Reformatter
from viewer.dicom.reformat.annotations import (
    ACQUIRED,
    Measurement,
    PlaneRef,
    Tool,
    outline,
    plane_data,
    plane_grid,
)
from viewer.dicom.stacks import orientation_letters
from viewer.report.fonts import bold_font_file
from viewer.report.images import (
    BRAIN_WINDOW,
    DEFAULT_WIDTH_PX,
    output_shape,
    png_bytes,
    render_key_image,
    resample,
)
from viewer.report.output import check_output_path, write_atomic

COLOUR = (255, 213, 79)
SHADOW = (0, 0, 0)
#: At most this many planes go on the measurements page.
MAX_PLANES = 6


@dataclass(frozen=True)
class PlaneFigure:
    """One plane, rendered: ``image`` (h, w, 3) uint8 with square pixels spanning ``extent_mm`` (width, height),
    the orientation letters of its edges, and the numbers of the measurements drawn on it."""

    ref: PlaneRef
    image: np.ndarray
    extent_mm: tuple[float, float]
    letters: dict[str, str]
    numbers: list[int] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The plane's name, as the measurements list says it."""
        return self.ref.title()


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(bold_font_file(), size)


def _letters(volume: Any, reformat: Reformatter, ref: PlaneRef) -> dict[str, str]:
    if ref.name == ACQUIRED:
        return orientation_letters(volume.orientation)
    return reformat.layout.axes[PlaneKind(ref.name)].edge_letters()


def render_plane(
    volume: Any,
    reformat: Reformatter,
    ref: PlaneRef,
    measurements: Sequence[Measurement] = (),
    *,
    window: tuple[float, float] = BRAIN_WINDOW,
    invert: bool = False,
    width_px: int = 768,
    values: bool = False,
) -> PlaneFigure:
    """Plane ``ref`` of ``volume`` windowed and with the ``measurements`` that lie on it drawn in; ``values``:
    each label says its value too (the PNG), else its number only (the report's table says the rest)."""
    grid = plane_grid(reformat, ref)
    data = plane_data(reformat, volume.array, ref)
    outside = np.isnan(data)
    shown = to_display(np.where(outside, np.float32(window[0]), data), window[0], window[1], invert)
    shown = np.where(outside, 0.0, shown)
    rows, cols = data.shape
    h, w = output_shape((rows, cols), (grid.dy, grid.dx), width_px)
    grey = np.round(np.clip(resample(shown, (h, w)), 0.0, 1.0) * 255.0).astype(np.uint8)
    image = np.repeat(grey[..., None], 3, axis=-1)
    drawn = [m for m in measurements if m.on_plane(ref)]
    if drawn:
        image = _draw(image, drawn, grid, (h / rows, w / cols), values)
    extent = (cols * grid.dx, rows * grid.dy)
    return PlaneFigure(ref, image, extent, _letters(volume, reformat, ref), [m.id for m in drawn])


def _draw(
    image: np.ndarray,
    measurements: Sequence[Measurement],
    grid: Any,
    scale: tuple[float, float],
    values: bool,
) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    h, w = image.shape[:2]
    line_width = max(2, round(w / 320))
    font = _font(max(12, round(w / (40 if values else 30))))
    sy, sx = scale
    for m in measurements:
        pixels = [grid.pixel_of(np.asarray(p)) for p in m.points]
        points = [((c + 0.5) * sx - 0.5, (r + 0.5) * sy - 0.5) for r, c in pixels]
        line, closed = outline(m.tool, points)
        for colour, extra, offset in ((SHADOW, 2, 1), (COLOUR, 0, 0)):
            shifted = [(x + offset, y + offset) for x, y in line]
            if m.tool == Tool.PROBE:
                x, y = shifted[0]
                arm = 4 * line_width
                draw.line([(x - arm, y), (x + arm, y)], fill=colour, width=line_width + extra)
                draw.line([(x, y - arm), (x, y + arm)], fill=colour, width=line_width + extra)
            elif len(shifted) > 1:
                draw.line(shifted + shifted[:1] if closed else shifted, fill=colour, width=line_width + extra)
        label = f"{m.id}: {m.label_lines()[0]}" if values else str(m.id)
        right = max(points, key=lambda p: p[0])
        left_edge = min(p[0] for p in points)
        box = draw.textbbox((0, 0), label, font=font)
        tw, th = box[2] - box[0], box[3] - box[1]
        clear = (5 if m.tool == Tool.PROBE else 3) * line_width  # a probe's label clears its cross's arm
        x = right[0] + clear
        if x + tw > w - 2:
            x = left_edge - clear - tw
        y = min(max(2.0, right[1] - th / 2), h - th - 4)
        x = max(2.0, x)
        draw.rectangle([x - 2, y - 1, x + tw + 3, y + th + 5], fill=(0, 0, 0))
        draw.text((x, y - box[1]), label, fill=COLOUR, font=font)
    return np.asarray(canvas)


def planes_to_show(views: Sequence[PlaneRef], measurements: Sequence[Measurement]) -> list[PlaneRef]:
    """The view's planes in order, then every other plane a measurement lies on (at most :data:`MAX_PLANES`); a
    plane shown thin and as a slab is both."""
    planes: list[PlaneRef] = []
    for ref in [*views, *(m.plane for m in measurements)]:
        if not any(ref.same_plane(other) and ref.slab == other.slab for other in planes):
            planes.append(ref)
    return planes[:MAX_PLANES]


def plane_figures(
    volume: Any,
    views: Sequence[PlaneRef],
    measurements: Sequence[Measurement],
    *,
    window: tuple[float, float] = BRAIN_WINDOW,
    invert: bool = False,
    width_px: int = 768,
) -> list[PlaneFigure]:
    """The figures of :func:`planes_to_show` (none for a colour volume, which has no reformats)."""
    if getattr(volume, "is_colour", False) or np.ndim(volume.array) != 3:
        return []
    reformat = Reformatter.of(volume)
    return [
        render_plane(volume, reformat, ref, measurements, window=window, invert=invert, width_px=width_px)
        for ref in planes_to_show(views, measurements)
    ]


def side_by_side(figures: Sequence[PlaneFigure], gap: int = 8) -> np.ndarray:
    """Figures in a row on black, tops aligned (the PNG of a 1 × 3 view)."""
    height = max(f.image.shape[0] for f in figures)
    width = sum(f.image.shape[1] for f in figures) + gap * (len(figures) - 1)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    x = 0
    for f in figures:
        h, w = f.image.shape[:2]
        out[:h, x : x + w] = f.image
        x += w + gap
    return out


def export_view_png(
    path: str | Path,
    volume: Any,
    result: Any,
    index: int,
    views: Sequence[PlaneRef] = (),
    measurements: Sequence[Measurement] = (),
    *,
    window: tuple[float, float] = BRAIN_WINDOW,
    width_px: int = DEFAULT_WIDTH_PX,
    invert: bool | None = None,
    **overlay: Any,
) -> Path:
    """The PNG of the view on screen with its measurements (number and value) drawn in.

    The 1 × 1 view (``views`` empty or one acquired slice): slice ``index`` as
    :func:`~viewer.report.images.render_key_image` renders it (``overlay`` holds its saliency options:
    ``overlay``, ``opacity``, ``threshold``, ``pixel_map``, ``scaling``). A reformat layout: its planes side by
    side, grey only. Refuses (:class:`~viewer.errors.ViewerError`) a path inside the series' own folder.
    """
    path = Path(path)
    check_output_path(path, volume)
    if invert is None:
        invert = bool(getattr(volume, "invert", False))
    single = not views or (len(views) == 1 and views[0].name == ACQUIRED)
    if single:
        show_overlay = bool(overlay.pop("overlay", True))
        key = render_key_image(
            volume,
            result if show_overlay else None,
            index,
            window=window,
            width_px=width_px,
            invert=invert,
            **overlay,
        )
        image = key.overlay if show_overlay and key.overlay is not None else key.plain
        drawn = [m for m in measurements if views and m.on_plane(views[0])]
        if drawn and not getattr(volume, "is_colour", False):
            grid = plane_grid(Reformatter.of(volume), views[0])
            h, w = image.shape[:2]
            rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
            image = _draw(rgb, drawn, grid, (h / grid.height, w / grid.width), True)
    else:
        reformat = Reformatter.of(volume)
        image = side_by_side(
            [
                render_plane(
                    volume,
                    reformat,
                    ref,
                    measurements,
                    window=window,
                    invert=invert,
                    width_px=width_px,
                    values=True,
                )
                for ref in views
            ]
        )
    write_atomic(path, png_bytes(image))
    return path
