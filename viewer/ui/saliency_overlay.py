"""Pixel saliency over the image: a heat colour map with a threshold and an opacity, and a legend that says what it is.

The maps arrive normalised (``|attribution|`` scaled to the series or per slice, see :mod:`viewer.analysis.display`)
as uint8 0–255 (:data:`MAP_LEVELS` = 1), and the legend names the scaling; values below the threshold are fully transparent, so the grey
image stays readable around the few pixels that matter. The colour map starts at dark red, not black, because a
black-starting map (inferno, magma) disappears over dark brain in a head-CT window.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QFontMetrics, QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from viewer.analysis.display import MAP_LEVELS, SCALING_NAMES
from viewer.ui.image_view import Z_OVERLAY, ImageView

OVERLAY_NAME = "pixel-saliency"
DEFAULT_OPACITY = 0.5
DEFAULT_THRESHOLD = 0.3
LUT_SIZE = MAP_LEVELS + 1

#: Colour stops (position in [0, 1], RGB): dark red → red → orange → yellow. No white at the top: a hyperdense
#: bleed is near-white in a brain window, and a white-topped map would hide the very thing it points at.
HEAT_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (120, 0, 0)),
    (0.35, (220, 30, 0)),
    (0.7, (255, 140, 0)),
    (1.0, (255, 225, 0)),
)


def heat_colours(n: int = LUT_SIZE) -> np.ndarray:
    """``(n, 3)`` uint8 colours of the saliency map from low to high."""
    pos = np.array([p for p, _ in HEAT_STOPS])
    rgb = np.array([c for _, c in HEAT_STOPS], dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(x, pos, rgb[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def saliency_lut(threshold: float, n: int = LUT_SIZE) -> np.ndarray:
    """``(n, 4)`` RGBA lookup table for a [0, 1] map: transparent below ``threshold``, colours spread above it.

    Above the threshold the alpha rises from 0.45 to 1, so the strongest pixels stand out from the merely
    visible ones even at a low overlay opacity.
    """
    threshold = float(min(max(threshold, 0.0), 0.99))
    x = np.linspace(0.0, 1.0, n)
    above = x >= threshold
    t = np.clip((x - threshold) / (1.0 - threshold), 0.0, 1.0)
    lut = np.zeros((n, 4), np.uint8)
    lut[:, :3] = heat_colours(n)[np.round(t * (n - 1)).astype(int)]
    lut[:, 3] = np.where(above, np.round(255 * (0.45 + 0.55 * t)), 0).astype(np.uint8)
    return lut


def colour_bar_pixmap(threshold: float, width: int = 140, height: int = 10) -> QPixmap:
    """The colours drawn for values from ``threshold`` (left) to 1 (right)."""
    lut = saliency_lut(threshold, width * 4)
    start = int(np.searchsorted(lut[:, 3] > 0, True))
    row = lut[start:, :3]
    idx = np.linspace(0, len(row) - 1, width).round().astype(int)
    pixels = np.ascontiguousarray(np.repeat(row[idx][None, :, :], height, axis=0))
    image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())  # QImage shares the numpy buffer: copy before it goes away


class SaliencyLegend(QWidget):
    """A small box over the image: colour bar, its range, what the map is, and whether it is still computing."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("saliency-legend")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(
            "#saliency-legend { background: rgba(0, 0, 0, 170); border: 1px solid #444; border-radius: 4px; }"
            "QLabel { color: #d9d9d9; background: transparent; padding: 0px; }"
        )
        self.title = QLabel("Pixel saliency")
        self.title.setStyleSheet("font-weight: bold;")
        self.low = QLabel()
        self.bar = QLabel()
        self.high = QLabel("1 (max)")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setStyleSheet("color: #b0b0b0; font-size: 11px;")
        self.status = QLabel()
        self.status.setStyleSheet("color: #e0b050; font-size: 11px;")
        row = QHBoxLayout()
        row.setSpacing(4)
        row.addWidget(self.low)
        row.addWidget(self.bar)
        row.addWidget(self.high)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 5, 8, 5)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addLayout(row)
        layout.addWidget(self.text)
        layout.addWidget(self.status)
        self.setFixedWidth(250)
        self.set_threshold(DEFAULT_THRESHOLD)
        self.set_status("")

    def set_threshold(self, threshold: float) -> None:
        """Show the threshold below which pixels stay transparent."""
        self.low.setText(f"{threshold:.2f}")
        self.bar.setPixmap(colour_bar_pixmap(threshold))

    def set_label(self, pixel_label: str, scaling: str = "series") -> None:
        """Say what the map shows (``pixel_label``, e.g. the gradient's name) and how it is scaled
        (``"series"`` or ``"slice"``)."""
        how = SCALING_NAMES.get(scaling, SCALING_NAMES["series"])
        self.text.setText(
            f"|{pixel_label}|, {how}. Where the gradient is large, not proof of a bleed. O hides it."
        )
        self.fit()

    def set_status(self, text: str) -> None:
        """A status line under the legend (hidden when empty)."""
        self.status.setText(text)
        self.status.setVisible(bool(text))
        self.fit()

    def fit(self) -> None:
        """Take the height the wrapped text needs at the legend's fixed width."""
        layout = self.layout()
        height = layout.totalHeightForWidth(self.width())
        self.setFixedHeight(height if height > 0 else layout.totalSizeHint().height())


class SaliencyOverlay(QObject):
    """The saliency layer of an :class:`ImageView`: its look (opacity, threshold, on/off) and its legend.

    ``source(k)`` (set with :meth:`show_maps`) returns slice ``k``'s normalised uint8 map, or None when it is not there
    (yet); ``on_missing(k)`` is then called so the owner can compute it. ``changed`` is emitted whenever what is
    drawn may change (maps, look, on/off), for other views of the same maps (the reformats).
    """

    changed = Signal()

    def __init__(self, view: ImageView, on_missing: Callable[[int], None] | None = None) -> None:
        super().__init__(view)
        self.view = view
        self.enabled = True
        self.opacity = DEFAULT_OPACITY
        self.threshold = DEFAULT_THRESHOLD
        self.scaling = "series"
        self._label = ""
        self._source: Callable[[int], np.ndarray | None] | None = None
        self._on_missing = on_missing
        self.legend = SaliencyLegend(view.canvas)
        self.legend.hide()
        view.canvas.installEventFilter(self)

    @property
    def active(self) -> bool:
        """Maps are set (a result is on screen)."""
        return self._source is not None

    @property
    def item(self) -> pg.ImageItem | None:
        """The overlay's image item while maps are set."""
        overlay = self.view.overlays.get(OVERLAY_NAME)
        return overlay.item if overlay is not None else None

    def show_maps(self, source: Callable[[int], np.ndarray | None], pixel_label: str) -> None:
        """Draw ``source``'s maps over the image from now on (replacing any before)."""
        self._source = source
        self._label = pixel_label
        self.legend.set_label(pixel_label, self.scaling)
        self.view.set_overlay(
            OVERLAY_NAME,
            self._provide,
            opacity=self.opacity,
            levels=(0.0, float(MAP_LEVELS)),
            lut=saliency_lut(self.threshold),
            z=Z_OVERLAY,
        )
        self._update_legend()
        self.changed.emit()

    def clear(self) -> None:
        """Remove the map and its legend."""
        self._source = None
        self.view.remove_overlay(OVERLAY_NAME)
        self.legend.hide()
        self.changed.emit()

    def set_enabled(self, on: bool) -> None:
        """Show or hide the map."""
        self.enabled = bool(on)
        self.view.refresh_overlays()
        self._update_legend()
        self.changed.emit()

    def set_scaling(self, scaling: str) -> None:
        """Name the maps' scaling (``"series"`` or ``"slice"``) in the legend; the owner supplies maps scaled so."""
        self.scaling = scaling
        if self._label:
            self.legend.set_label(self._label, scaling)
            self._place_legend()

    def set_opacity(self, opacity: float) -> None:
        """Map opacity, clamped to 0…1."""
        self.opacity = float(min(max(opacity, 0.0), 1.0))
        self.view.set_overlay_opacity(OVERLAY_NAME, self.opacity)
        self.changed.emit()

    def set_threshold(self, threshold: float) -> None:
        """Scaled saliency below which pixels stay transparent, clamped to 0…0.95."""
        self.threshold = float(min(max(threshold, 0.0), 0.95))
        self.legend.set_threshold(self.threshold)
        self.view.set_overlay_lut(OVERLAY_NAME, saliency_lut(self.threshold))
        self.changed.emit()

    def refresh(self) -> None:
        """A map became available: draw it if it is the current slice's."""
        self.view.refresh_overlays()
        self._update_legend()
        self.changed.emit()

    def map_of(self, k: int) -> np.ndarray | None:
        """Slice ``k``'s map as drawn, if shown and computed (nothing is computed on demand here)."""
        if not self.enabled or self._source is None:
            return None
        return self._source(k)

    def lut(self) -> np.ndarray:
        """The colours drawn for map values 0–255 at the current threshold."""
        return saliency_lut(self.threshold)

    def _provide(self, k: int) -> np.ndarray | None:
        if not self.enabled or self._source is None:
            return None
        data = self._source(k)
        if data is None and self._on_missing is not None:
            self._on_missing(k)
        return data

    def set_status(self, text: str) -> None:
        """A status line in the legend (e.g. while maps are computed)."""
        self.legend.set_status(text)
        self._place_legend()

    def _update_legend(self) -> None:
        visible = self.enabled and self._source is not None
        self.legend.setVisible(visible)
        if visible:
            self._place_legend()
            self.legend.raise_()

    def _place_legend(self) -> None:
        """Bottom left, just above the series lines of the corner text (beside the head, not over it)."""
        canvas = self.view.canvas
        self.legend.fit()
        lines = len(canvas.annotations.corners.get("bl", [])) or 4
        text_height = lines * QFontMetrics(canvas.font_main).lineSpacing()
        y = max(0, canvas.height() - 8 - text_height - 8 - self.legend.height())
        self.legend.move(QPoint(8, y))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if watched is self.view.canvas and event.type() == QEvent.Type.Resize and self.legend.isVisible():
            self._place_legend()
        return False
