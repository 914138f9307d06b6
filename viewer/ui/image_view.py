"""The image view: one slice of a stack in true proportions, with the annotations radiologists read by.

A pyqtgraph ``ImageItem`` sits in a ``ViewBox`` whose units are millimetres (the item's rect is the image's
extent in mm), so the locked 1:1 aspect is spacing-correct and the scale bar is exact. Annotations (corners,
orientation letters, scale bar, messages) are painted by :mod:`viewer.ui.canvas` in screen coordinates: they stay
sharp and fixed while the image is zoomed and panned.

Interaction follows Weasis, Horos, 3D Slicer and RadiAnt: wheel = slice, left-drag = window/level (horizontal
width, vertical level), right-drag = zoom, middle-drag = pan, double-click = fit.

Extension points for analysis results: :meth:`ImageView.set_overlay` stacks extra ``ImageItem``s over the image
(``setZValue``), each fed per slice by a function; ``slice_changed`` lets plots follow the current slice and
:meth:`ImageView.set_slice` lets them drive it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from viewer.dicom.pixels import robust_window
from viewer.dicom.stacks import orientation_letters
from viewer.dicom.volume import Volume
from viewer.ui.canvas import Annotations, SliceCanvas
from viewer.ui.series_info import SeriesDisplay, update_from_volume
from viewer.ui.settings import WindowPreset

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

INVERT_LUT = np.arange(255, -1, -1, dtype=np.uint8)
MIN_WIDTH = 1.0
Z_IMAGE = 0
Z_OVERLAY = 10  # overlays from here up
LOADING = "Loading…"
CANCELLED = "Loading was cancelled before this slice. Open the series again to read all of it."


@dataclass(slots=True)
class CursorInfo:
    """What lies under the mouse: pixel indices, the value(s) there, and the patient position (LPS mm)."""

    k: int
    row: int
    column: int
    value: float | tuple[int, int, int] | None
    units: str
    patient: tuple[float, float, float] | None
    note: str = ""

    def text(self) -> str:
        """The value under the cursor with its units ("—" when unknown), then ``note`` (e.g. the slice's
        hidden-state evidence while an analysis is shown) when there is one."""
        value = self._value_text()
        return f"{value}  ·  {self.note}" if self.note else value

    def _value_text(self) -> str:
        if self.value is None:
            value = "—"
        elif isinstance(self.value, tuple):
            value = "RGB {} {} {}".format(*self.value)
        else:
            value = (
                f"{self.value:.0f} {self.units}".strip()
                if self.units == "HU"
                else f"{self.value:.4g} {self.units}"
            )
        return value

    def position_text(self) -> str:
        """Patient position as direction letters and mm (R/L, A/P, I/S), then the pixel."""
        if self.patient is None:
            return f"pixel ({self.column}, {self.row})"
        # Direction letters instead of signed LPS numbers, as 3D Slicer shows them: R 12.5 = 12.5 mm right.
        axes = (("R", "L"), ("A", "P"), ("I", "S"))
        parts = [
            f"{(neg if v < 0 else pos)} {abs(v):.1f}"
            for v, (neg, pos) in zip(self.patient, axes, strict=True)
        ]
        return "  ".join(parts) + f" mm   pixel ({self.column}, {self.row})"


@dataclass(slots=True)
class Overlay:
    """An extra image layer fed per slice, e.g. a saliency map drawn with a colour map and an opacity."""

    item: pg.ImageItem
    provider: Callable[[int], np.ndarray | None]
    levels: tuple[float, float] | None = None
    lut: np.ndarray | None = None
    opacity: float = 0.5


#: The slider strip's colours: neutral at 0, warm towards a bleed, cool against (diverging, fixed scale).
TRACK_NEUTRAL = (58, 58, 58)
TRACK_WARM = (255, 112, 40)
TRACK_COOL = (66, 165, 245)
TRACK_HEIGHT = 5
#: The band under the groove that shows which slices have loaded while a series is loading.
READY_COLOUR = (96, 128, 160, 255)
READY_HEIGHT = 2


def track_colour(value: float, limit: float) -> QColor:
    """The strip colour of a slice value on a fixed ``±limit`` scale (saturating beyond it)."""
    if not np.isfinite(value) or limit <= 0:
        return QColor(*TRACK_NEUTRAL)
    t = min(abs(float(value)) / limit, 1.0)
    end = TRACK_WARM if value > 0 else TRACK_COOL
    return QColor(*(round(a + (b - a) * t) for a, b in zip(TRACK_NEUTRAL, end, strict=True)))


class MarkedSlider(QSlider):
    """A slider that also draws marks at chosen values (key slices of an analysis) under its groove, and
    optionally a strip of per-value colours (an analysis' per-slice track) above it."""

    def __init__(self, orientation: Qt.Orientation, parent: QWidget | None = None) -> None:
        super().__init__(orientation, parent)
        self.marks: list[int] = []
        self.mark_colour = QColor("#e0b050")
        self.track: np.ndarray | None = None
        self.track_limit = 1.0
        self.track_text = ""
        self.ready: np.ndarray | None = None

    def set_marks(self, values: list[int], colour: str | None = None) -> None:
        """Mark these 0-based slices on the groove (and list them in the tooltip)."""
        self.marks = [int(v) for v in values]
        if colour is not None:
            self.mark_colour = QColor(colour)
        self._update_tooltip()
        self.update()

    def set_track(self, values: np.ndarray | None, limit: float = 1.0, text: str = "") -> None:
        """Colour a strip above the groove by ``values`` (one per slider value) on a fixed ``±limit`` scale
        (:func:`track_colour`); ``text`` says what it is in the tooltip. None removes it."""
        self.track = None if values is None else np.asarray(values, dtype=np.float64).ravel()
        self.track_limit = float(limit)
        self.track_text = text if values is not None else ""
        self.setMinimumHeight(26 if values is not None else 0)
        self._update_tooltip()
        self.update()

    def set_ready(self, ready: np.ndarray | None) -> None:
        """Show which slider values are ready (one bool per value) as a thin band under the groove while some
        are not; None (or all ready) hides it."""
        self.ready = None if ready is None or bool(np.all(ready)) else np.asarray(ready, dtype=bool).ravel()
        self.update()

    def mark_ready(self, value: int) -> None:
        """One more value is ready (the band hides itself once all are)."""
        if self.ready is None or not 0 <= value < self.ready.size or self.ready[value]:
            return
        self.ready[value] = True
        if self.ready.all():
            self.ready = None
        self.update()

    def ready_runs(self) -> list[tuple[int, int]]:
        """The ready values as ``(first, last)`` runs (what the band draws); [] without a band."""
        if self.ready is None:
            return []
        edges = np.flatnonzero(np.diff(np.concatenate(([0], self.ready.view(np.int8), [0]))))
        return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]

    def track_colour_at(self, value: int) -> QColor | None:
        """The strip's colour at slider value ``value`` (None without a strip)."""
        if self.track is None or not 0 <= value < self.track.size:
            return None
        return track_colour(float(self.track[value]), self.track_limit)

    def _update_tooltip(self) -> None:
        lines = []
        if self.marks:
            lines.append("Key slices: " + ", ".join(str(v + 1) for v in sorted(self.marks)))
        if self.track_text:
            lines.append(self.track_text)
        self.setToolTip("\n".join(lines))

    def _value_x(self, value: float, groove: QRect, handle: QRect) -> float:
        span = groove.width() - handle.width()
        if self.maximum() <= self.minimum():
            return groove.x() + handle.width() / 2
        return (
            groove.x()
            + handle.width() / 2
            + span * (value - self.minimum()) / (self.maximum() - self.minimum())
        )

    def _groove_and_handle(self) -> tuple[QRect, QRect]:
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        style = self.style()
        groove = style.subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderGroove, self
        )
        handle = style.subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderHandle, self
        )
        return groove, handle

    def paintEvent(self, ev: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        if self.track is not None and self.track.size:
            self._paint_track()
        super().paintEvent(ev)
        if self.ready is not None:
            self._paint_ready()
        if not self.marks or self.maximum() <= self.minimum():
            return
        groove, handle = self._groove_and_handle()
        painter = QPainter(self)
        painter.setPen(QPen(self.mark_colour, 2))
        bottom = self.height() - 1
        for value in self.marks:
            x = self._value_x(value, groove, handle)
            painter.drawLine(QPointF(x, bottom - 5), QPointF(x, bottom))
        painter.end()

    def _paint_ready(self) -> None:
        """A thin band along the bottom of the groove under the slices that have loaded, one rect per run."""
        groove, handle = self._groove_and_handle()
        painter = QPainter(self)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(*READY_COLOUR))
        top = float(groove.bottom() + 2)
        for first, last in self.ready_runs():
            left = self._value_x(first - 0.5, groove, handle)
            right = self._value_x(last + 0.5, groove, handle)
            painter.drawRect(QRectF(left, top, max(1.0, right - left), READY_HEIGHT))
        painter.end()

    def _paint_track(self) -> None:
        """One cell per slice along the groove's value span, at the top of the slider, under the handle."""
        assert self.track is not None
        groove, handle = self._groove_and_handle()
        painter = QPainter(self)
        painter.setPen(Qt.PenStyle.NoPen)
        for k, value in enumerate(self.track):
            left = self._value_x(k - 0.5, groove, handle)
            right = self._value_x(k + 0.5, groove, handle)
            painter.setBrush(track_colour(float(value), self.track_limit))
            painter.drawRect(QRectF(left, 0.0, max(1.0, right - left), TRACK_HEIGHT))
        painter.end()


class ImageView(QWidget):
    """One stack on screen: image, annotations, slice slider and cine controls.

    Signals
    -------
    slice_changed(int)
        The current slice index (0-based, in stack order: along the slice normal).
    window_changed(float, float)
        Window center and width, in modality units.
    cursor_moved(object)
        A :class:`CursorInfo`, or None when the mouse leaves the image.
    cine_fps_changed(float)
        The cine frame rate chosen with the spin box.
    """

    slice_changed = Signal(int)
    window_changed = Signal(float, float)
    cursor_moved = Signal(object)
    cine_fps_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = SliceCanvas()
        self.vb = self.canvas.vb
        self.image_item = pg.ImageItem()
        self.image_item.setZValue(Z_IMAGE)
        self.vb.addItem(self.image_item)
        self.overlays: dict[str, Overlay] = {}

        self.display: SeriesDisplay | None = None
        self._slices: list[np.ndarray | None] = []
        self._array: np.ndarray | None = None
        self.index = 0
        self.center = 40.0
        self.width = 80.0
        self.invert = False
        self._zoom_by_user = False
        self._user_moved = False
        self._load_cancelled = False
        self._last_scene_pos: QPointF | None = None
        self._has_shown = False
        self._emitted_index: int | None = None
        self._slice_notes: Callable[[int], list[str]] | None = None
        self._cursor_note: Callable[[int], str] | None = None

        self.slider = MarkedSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._on_slider)
        self.slice_label = QLabel("–")
        self.slice_label.setMinimumWidth(80)
        self.slice_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.cine_button = QToolButton()
        self.cine_button.setText("▶ Cine")
        self.cine_button.setCheckable(True)
        self.cine_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cine_button.setToolTip("Play the slices as a loop (Space)")
        self.cine_button.toggled.connect(self._on_cine_toggled)
        self.fps_box = QDoubleSpinBox()
        self.fps_box.setRange(1.0, 60.0)
        self.fps_box.setDecimals(0)
        self.fps_box.setSuffix(" fps")
        self.fps_box.setValue(10.0)
        self.fps_box.setToolTip("Cine frame rate")
        self.fps_box.setMinimumWidth(80)
        self.fps_box.valueChanged.connect(self._on_fps_changed)
        self._cine_timer = QTimer(self)
        self._cine_timer.timeout.connect(self._cine_step)

        controls = QHBoxLayout()
        controls.setContentsMargins(8, 2, 8, 4)
        controls.setSpacing(8)
        controls.addWidget(QLabel("Slice"))
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.slice_label)
        controls.addWidget(self.cine_button)
        controls.addWidget(self.fps_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(controls)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        self.vb.sigWheelSteps.connect(self.step)
        self.vb.sigWindowDrag.connect(self._on_window_drag)
        self.vb.sigFit.connect(self.fit)
        self.vb.sigUserZoom.connect(self._on_user_zoom)
        self.vb.sigRangeChanged.connect(self._on_range_changed)
        self.canvas.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.canvas.sigKeyPressed.connect(self._on_canvas_key)
        self.canvas.sigResized.connect(self.on_canvas_resized)
        self.show_message("Open a folder, a DICOMDIR or files (File ▸ Open, Ctrl+O, or drop them here).")

    # -- content ----------------------------------------------------------------------------------------------

    @property
    def n_slices(self) -> int:
        """Slices of the series shown (0 when none)."""
        return self.display.n_slices if self.display is not None else 0

    @property
    def stack_uid(self) -> str | None:
        """The stack shown, or None."""
        return self.display.stack_uid if self.display is not None else None

    def set_series(self, display: SeriesDisplay, volume: Volume | None = None) -> None:
        """Show a new stack: its slices arrive later through :meth:`set_slice_data` or :meth:`set_volume`."""
        self.stop_cine()
        self.display = display
        self._slices = [None] * display.n_slices
        self._array = None
        self._user_moved = False
        self._load_cancelled = False
        self._has_shown = False
        self.index = 0
        if display.default_window is not None:
            self.center, self.width = display.default_window
        self.invert = display.invert
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, display.n_slices - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.slider.set_marks([])
        self.slider.set_ready(np.zeros(display.n_slices, dtype=bool) if volume is None else None)
        self.image_item.clear()
        self.image_item.hide()
        self._update_letters()
        self._emitted_index = None
        self._set_message("", error=False)
        if volume is not None:
            self.set_volume(volume)
        else:
            self._set_message(LOADING, error=False)
        self._zoom_by_user = False
        self.fit()
        self._refresh()

    def set_slice_data(self, k: int, array: np.ndarray) -> None:
        """One decoded slice of the current stack (progressive loading)."""
        if self.display is None or not 0 <= k < len(self._slices):
            return
        self._slices[k] = array
        self.slider.mark_ready(k)
        first = not self._has_shown
        if first and not self._user_moved and self._slice(self.index) is None:
            self.index = k
        if k == self.index:
            if first and self.display.default_window is None and not self.display.is_colour:
                self.center, self.width = robust_window(array)
            self._refresh()

    def set_volume(self, volume: Volume) -> None:
        """All slices at once (a finished load, or a cached volume).

        The volume may hold fewer slices than the series listed (damaged slices are skipped by the loader):
        the view then follows the volume's slices and positions.
        """
        display = self.display
        if display is None:
            return
        listed = display.n_slices
        update_from_volume(display, volume)
        self._array = np.asarray(volume.array)
        self._slices = []
        self.slider.set_ready(None)
        if display.n_slices != listed:
            self.slider.blockSignals(True)
            self.slider.setRange(0, max(0, display.n_slices - 1))
            self.slider.blockSignals(False)
            self.index = min(self.index, display.n_slices - 1)
        if display.default_window is None and not display.is_colour:
            display.default_window = robust_window(self._array)
        if not self._has_shown and display.default_window is not None:
            self.center, self.width = display.default_window
            self.invert = display.invert
        if self.canvas.annotations.message in (LOADING, CANCELLED):
            self.canvas.annotations.message = ""
        self._refresh()

    def mark_load_cancelled(self) -> None:
        """The load stopped early: slices already decoded stay browsable, the others say so."""
        self._load_cancelled = True
        self._refresh()

    def clear(self) -> None:
        """Show nothing: no series, image, slices or annotations; cine stops."""
        self.stop_cine()
        self.display = None
        self._slices = []
        self._array = None
        self._has_shown = False
        self.image_item.clear()
        self.image_item.hide()
        self.slider.setRange(0, 0)
        self.slider.set_ready(None)
        self.slice_label.setText("–")
        self.canvas.annotations = Annotations()
        self.canvas.viewport().update()

    def show_message(self, text: str, error: bool = False) -> None:
        """A message in the middle of the view (e.g. why a series cannot be displayed); hides the image."""
        if error:
            self.stop_cine()
            self.image_item.hide()
        self._set_message(text, error)
        self.canvas.viewport().update()

    def _set_message(self, text: str, error: bool) -> None:
        self.canvas.annotations.message = text
        self.canvas.annotations.message_is_error = error

    def _slice(self, k: int) -> np.ndarray | None:
        if self._array is not None:
            return self._array[k] if 0 <= k < len(self._array) else None
        if 0 <= k < len(self._slices):
            return self._slices[k]
        return None

    def current_slice(self) -> np.ndarray | None:
        """The array on screen (modality values, or RGB), or None while it is loading."""
        return self._slice(self.index)

    # -- navigation -------------------------------------------------------------------------------------------

    def set_slice(self, k: int) -> None:
        """Show slice ``k`` (0-based, clamped to the stack)."""
        if self.display is None:
            return
        k = int(min(max(k, 0), self.n_slices - 1))
        if k == self.index and self._has_shown:
            return
        self.index = k
        self._refresh()

    def step(self, delta: int) -> None:
        """Move ``delta`` slices, as the user did."""
        self._user_moved = True
        self.set_slice(self.index + int(delta))

    def page_size(self) -> int:
        """Slices one Page Up/Down moves: a tenth of the stack, at least one."""
        return max(1, round(self.n_slices / 10))

    def handle_key(self, ev: QKeyEvent) -> bool:
        """Slice keys on the image: Up/Down one slice, PageUp/PageDown a tenth of the stack, Home/End."""
        key = ev.key()
        if self.display is None:
            return False
        keys = Qt.Key
        if key == keys.Key_Up:
            self.step(-1)
        elif key == keys.Key_Down:
            self.step(1)
        elif key == keys.Key_PageUp:
            self.step(-self.page_size())
        elif key == keys.Key_PageDown:
            self.step(self.page_size())
        elif key == keys.Key_Home:
            self._user_moved = True
            self.set_slice(0)
        elif key == keys.Key_End:
            self._user_moved = True
            self.set_slice(self.n_slices - 1)
        else:
            return False
        return True

    def _on_canvas_key(self, ev: QKeyEvent) -> None:
        if self.handle_key(ev):
            ev.accept()

    def _on_slider(self, value: int) -> None:
        self._user_moved = True
        self.set_slice(value)

    # -- window / level ---------------------------------------------------------------------------------------

    def set_window(self, center: float, width: float) -> None:
        """Set the VOI window (center and width in modality units) and emit ``window_changed``."""
        self.center = float(center)
        self.width = max(MIN_WIDTH, float(width))
        self._refresh()
        self.window_changed.emit(self.center, self.width)

    def apply_preset(self, preset: WindowPreset) -> None:
        """Set the window of a preset."""
        self.set_window(preset.center, preset.width)

    def reset_window(self) -> None:
        """The DICOM default window (from the files, or from the data when they give none)."""
        if self.display is not None and self.display.default_window is not None:
            self.set_window(*self.display.default_window)

    def toggle_invert(self) -> None:
        """Swap black and white."""
        self.invert = not self.invert
        self._refresh()

    def _on_window_drag(self, dx: float, dy: float) -> None:
        if self.display is None or self.display.is_colour:
            return
        sensitivity = max(0.25, self.width / 300.0)
        self.set_window(self.center + dy * sensitivity, self.width + dx * sensitivity)

    # -- zoom / pan -------------------------------------------------------------------------------------------

    def image_rect(self) -> QRectF:
        """The image's extent in view units (mm when the pixel spacing is known)."""
        if self.display is None:
            return QRectF(0, 0, 1, 1)
        dy, dx = self.display.pixel_spacing
        return QRectF(0, 0, self.display.columns * dx, self.display.rows * dy)

    def fit(self) -> None:
        """Fit the whole image in the view (until the user zooms or pans again)."""
        self._zoom_by_user = False
        self.vb.setRange(rect=self.image_rect(), padding=0.0)

    def reset_view(self) -> None:
        """R: fit, default window, default inversion."""
        if self.display is not None:
            self.invert = self.display.invert
        self.fit()
        if self.display is not None and self.display.default_window is not None:
            self.set_window(*self.display.default_window)
        else:
            self._refresh()

    def view_units_per_screen_pixel(self) -> float:
        """Millimetres (view units) per screen pixel, from the current range.

        Read from the range rather than ``viewPixelSize()``, whose transform pyqtgraph updates only at the
        next paint.
        """
        (x0, x1), _ = self.vb.viewRange()
        width = self.vb.boundingRect().width()
        return (x1 - x0) / width if width > 0 else 0.0

    def zoom_factor(self) -> float:
        """Screen pixels per image pixel."""
        if self.display is None:
            return 1.0
        mm_per_px = self.view_units_per_screen_pixel()
        return self.display.pixel_spacing[1] / mm_per_px if mm_per_px > 0 else 1.0

    def _on_user_zoom(self) -> None:
        self._zoom_by_user = True

    def _on_range_changed(self, *_: object) -> None:
        self._update_annotations()

    def on_canvas_resized(self) -> None:
        """Keep the image fitted when the canvas resizes, unless the user zoomed."""
        if self.display is not None and not self._zoom_by_user:
            self.fit()

    # -- cine -------------------------------------------------------------------------------------------------

    def toggle_cine(self) -> None:
        """Start or stop cine."""
        self.cine_button.setChecked(not self.cine_button.isChecked())

    def stop_cine(self) -> None:
        """Stop cine."""
        self.cine_button.setChecked(False)

    def set_cine_fps(self, fps: float) -> None:
        """Cine speed in frames per second."""
        self.fps_box.setValue(float(fps))

    @property
    def cine_running(self) -> bool:
        """Whether cine is playing."""
        return self._cine_timer.isActive()

    def _on_cine_toggled(self, on: bool) -> None:
        if on and self.n_slices > 1:
            self._cine_timer.start(max(1, round(1000.0 / self.fps_box.value())))
            self.cine_button.setText("■ Stop")
        else:
            self._cine_timer.stop()
            self.cine_button.setText("▶ Cine")
            if on:
                self.cine_button.setChecked(False)

    def _on_fps_changed(self, fps: float) -> None:
        if self._cine_timer.isActive():
            self._cine_timer.setInterval(max(1, round(1000.0 / fps)))
        self.cine_fps_changed.emit(float(fps))

    def _cine_step(self) -> None:
        if self.n_slices <= 1:
            self.stop_cine()
            return
        self.set_slice((self.index + 1) % self.n_slices)

    # -- overlays (extension point for analysis results) ------------------------------------------------------

    def set_overlay(
        self,
        name: str,
        provider: Callable[[int], np.ndarray | None],
        *,
        opacity: float = 0.5,
        levels: tuple[float, float] | None = None,
        lut: np.ndarray | None = None,
        z: int | None = None,
    ) -> pg.ImageItem:
        """Add or replace an overlay drawn over the image for every slice.

        ``provider(k)`` returns slice ``k``'s overlay at image resolution (scalar map, or RGBA uint8), or None
        for nothing on that slice. Scalar maps are coloured with ``lut`` over ``levels``. Overlays stack by
        ``z`` (default: above the image and the overlays already there).
        """
        old = self.overlays.pop(name, None)
        if old is not None:
            self.vb.removeItem(old.item)
        item = pg.ImageItem()
        item.setZValue(z if z is not None else Z_OVERLAY + len(self.overlays))
        self.vb.addItem(item)
        self.overlays[name] = Overlay(item, provider, levels, lut, opacity)
        self._update_overlays()
        return item

    def set_overlay_opacity(self, name: str, opacity: float) -> None:
        """Opacity (0…1) of the named overlay; unknown names are ignored."""
        overlay = self.overlays.get(name)
        if overlay is not None:
            overlay.opacity = float(opacity)
            overlay.item.setOpacity(overlay.opacity)

    def set_overlay_lut(self, name: str, lut: np.ndarray | None) -> None:
        """Recolour an overlay (e.g. a new threshold made low values transparent)."""
        overlay = self.overlays.get(name)
        if overlay is not None:
            overlay.lut = lut
            self._update_overlays()

    def remove_overlay(self, name: str) -> None:
        """Remove the named overlay, if shown."""
        overlay = self.overlays.pop(name, None)
        if overlay is not None:
            self.vb.removeItem(overlay.item)

    def refresh_overlays(self) -> None:
        """Ask every overlay's provider again for the current slice (its data became available)."""
        self._update_overlays()

    def set_slice_marks(self, indices: list[int]) -> None:
        """Mark slices (0-based) on the slice slider, e.g. an analysis' key slices; [] clears them."""
        self.slider.set_marks(indices)

    def set_slice_track(self, values: np.ndarray | None, limit: float = 1.0, text: str = "") -> None:
        """Colour the slice slider by a per-slice track (e.g. an analysis' hidden-state evidence) on a fixed
        ``±limit`` scale, ``text`` in its tooltip; None removes it."""
        self.slider.set_track(values, limit, text)

    def set_slice_notes(self, notes: Callable[[int], list[str]] | None) -> None:
        """Extra lines under Im/Pos/Thk in the bottom-left corner: ``notes(k)`` for the slice on screen (e.g.
        an analysis' gates and hidden-state evidence); None removes them."""
        self._slice_notes = notes
        self._update_annotations()

    def set_cursor_note(self, note: Callable[[int], str] | None) -> None:
        """Text added to the value under the cursor: ``note(k)`` for the slice on screen; None removes it."""
        self._cursor_note = note
        if self._last_scene_pos is not None:
            self._report_cursor(self._last_scene_pos)

    def _update_overlays(self) -> None:
        rect = self.image_rect()
        for overlay in self.overlays.values():
            data = overlay.provider(self.index) if self.display is not None else None
            if data is None:
                overlay.item.hide()
                continue
            kwargs: dict[str, Any] = {"autoLevels": False, "opacity": overlay.opacity}
            if overlay.levels is not None:
                kwargs["levels"] = overlay.levels
            if overlay.lut is not None:
                kwargs["lut"] = overlay.lut
            overlay.item.setImage(np.asarray(data), **kwargs)
            overlay.item.setRect(rect)
            overlay.item.show()

    # -- drawing ----------------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Put the current slice on screen with the current window, and update everything that follows it."""
        display = self.display
        if display is None:
            return
        if self.slider.value() != self.index:
            self.slider.blockSignals(True)
            self.slider.setValue(self.index)
            self.slider.blockSignals(False)
        data = self._slice(self.index)
        if data is None:
            self.image_item.hide()
            if not self.canvas.annotations.message_is_error:
                self._set_message(CANCELLED if self._load_cancelled else LOADING, error=False)
        elif not self.canvas.annotations.message_is_error:
            if self.canvas.annotations.message in (LOADING, CANCELLED):
                self._set_message("", error=False)
            self._draw(data)
            self._has_shown = True
            self.image_item.show()
        self._update_overlays()
        self._update_annotations()
        self.slice_label.setText(f"{self.index + 1} / {self.n_slices}")
        if self._last_scene_pos is not None:
            self._report_cursor(self._last_scene_pos)
        if self.index != self._emitted_index:
            self._emitted_index = self.index
            self.slice_changed.emit(self.index)

    def _draw(self, data: np.ndarray) -> None:
        display = self.display
        assert display is not None
        if data.ndim == 3:  # RGB, shown as is
            self.image_item.setImage(data, autoLevels=False, levels=(0, 255), lut=None)
        else:
            lo = self.center - self.width / 2.0
            # pyqtgraph windows integer images by other paths (a combined LUT for uint16, makeARGB for int16) that
            # round differently and run slower; as float32 (exact for 16-bit values) every type looks the same.
            self.image_item.setImage(
                data if data.dtype.kind == "f" else data.astype(np.float32),
                autoLevels=False,
                levels=(lo, lo + self.width),
                lut=INVERT_LUT if self.invert else None,
            )
        self.image_item.setRect(self.image_rect())

    def _update_letters(self) -> None:
        display = self.display
        edges: dict[str, str] = {}
        if display is not None and display.orientation is not None:
            edges = orientation_letters(display.orientation)
        self.canvas.annotations.edges = edges

    def _update_annotations(self) -> None:
        display = self.display
        a = self.canvas.annotations
        if display is None:
            self.canvas.viewport().update()
            return
        patient = [display.patient_name or "(no name)"]
        if display.patient_id:
            patient.append(f"ID {display.patient_id}")
        person = " ".join(v for v in (display.patient_sex, display.patient_birth_date) if v)
        if person:
            patient.append(person)
        study = [display.study_description or "(no study description)"]
        when = " ".join(v for v in (display.study_date, display.study_time) if v)
        if when:
            study.append(when)
        if display.accession_number:
            study.append(f"Acc {display.accession_number}")
        study.append(" ".join(v for v in (display.modality, display.label) if v))
        series = [display.series_title]
        series.append(f"Im {self.index + 1}/{display.n_slices}")
        position = display.slice_position(self.index)
        if position is not None:
            series.append(f"Pos {position:.1f} mm")
        if display.slice_thickness:
            series.append(f"Thk {display.slice_thickness:g} mm")
        if self._slice_notes is not None:
            series.extend(self._slice_notes(self.index))
        viewing = []
        if display.is_colour:
            viewing.append("Colour")
        else:
            viewing.append(f"W {self.width:.0f}  L {self.center:.0f}" + ("  inv" if self.invert else ""))
        viewing.append(f"Zoom {self.zoom_factor():.2f}×")
        if not display.spacing_known:
            viewing.append("no pixel spacing: sizes in pixels")
        a.corners = {"tl": patient, "tr": study, "bl": series, "br": viewing}
        a.warning = display.warnings[0] if display.warnings else ""
        self.canvas.scale_bar_mm_per_px = (
            self.view_units_per_screen_pixel() if display.spacing_known else None
        )
        self.canvas.viewport().update()

    # -- cursor -----------------------------------------------------------------------------------------------

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        self._last_scene_pos = QPointF(scene_pos)
        self._report_cursor(scene_pos)

    def cursor_at(self, row: int, column: int) -> CursorInfo | None:
        """What the status bar shows for pixel (row, column) of the current slice."""
        display = self.display
        if display is None or not (0 <= row < display.rows and 0 <= column < display.columns):
            return None
        data = self._slice(self.index)
        value: float | tuple[int, int, int] | None = None
        if data is not None:
            v = data[row, column]
            value = tuple(int(c) for c in v[:3]) if np.ndim(v) else float(v)
        patient = display.voxel_to_patient(self.index, row, column)
        return CursorInfo(
            self.index,
            row,
            column,
            value,
            display.units,
            tuple(float(c) for c in patient) if patient is not None else None,
            self._cursor_note(self.index) if self._cursor_note is not None else "",
        )

    def _report_cursor(self, scene_pos: QPointF) -> None:
        display = self.display
        info = None
        if display is not None and self.vb.sceneBoundingRect().contains(scene_pos):
            p = self.vb.mapSceneToView(scene_pos)
            dy, dx = display.pixel_spacing
            info = self.cursor_at(math.floor(p.y() / dy), math.floor(p.x() / dx))
        self.cursor_moved.emit(info)

    def pixel_to_viewport(self, row: float, column: float) -> QPointF:
        """Where the centre of pixel (row, column) is on the canvas viewport (for tests and tools)."""
        if self.display is None:
            return QPointF()
        dy, dx = self.display.pixel_spacing
        scene = self.vb.mapViewToScene(QPointF((column + 0.5) * dx, (row + 0.5) * dy))
        return QPointF(self.canvas.mapFromScene(scene))
