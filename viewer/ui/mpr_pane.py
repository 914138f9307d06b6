"""One pane of the reformat layout: a reformatted plane in mm, its crosshair, overlay and slice strip.

The pane knows nothing of volumes or geometry: :class:`~viewer.ui.mpr_view.MprView` hands it an image with the
rect it covers in view mm (x right, y down, as the plane's screen axes say), the crosshair position, and, for
coronal and sagittal planes, the acquired slices' bands with their colours (the per-slice probability) and which
are key slices. Mouse gestures go out as signals in view mm.

Mouse: wheel = move the plane, left-click = crosshair there, left-drag starting on the crosshair (or with Shift)
= drag it, left-drag elsewhere = window/level, right-drag = zoom, middle-drag = pan, double-click = this pane
alone / back to three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent, MouseDragEvent
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from viewer.ui.canvas import SliceCanvas, SliceViewBox

#: How near (screen pixels) to a crosshair line a left-drag must start to move the crosshair.
GRAB_PX = 10
CROSSHAIR_COLOUR = "#4fc3f7"
STRIP_WIDTH = 10
#: Room kept between the strip and the viewport's edge, for the orientation letter there.
STRIP_INSET = 30
#: How far (px) a key slice's tick reaches in from the strip.
STRIP_TICK = 8
KEY_COLOUR = "#e0b050"
Z_PANE_OVERLAY = 10
Z_CROSSHAIR = 20


class MprViewBox(SliceViewBox):
    """The reading-room mouse of :class:`SliceViewBox`, plus crosshair clicks and drags and double-click."""

    sigCrosshair = Signal(float, float)  # view mm: a click, or each step of a crosshair drag
    sigDoubleClicked = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.crosshair: tuple[float, float] | None = None
        self._dragging = False

    def near_crosshair(self, view_pos: QPointF) -> bool:
        """Whether ``view_pos`` lies within :data:`GRAB_PX` screen pixels of a crosshair line."""
        if self.crosshair is None:
            return False
        (x0, x1), _ = self.viewRange()
        width = self.boundingRect().width()
        mm_per_px = (x1 - x0) / width if width > 0 else 0.0
        reach = GRAB_PX * mm_per_px
        x, y = self.crosshair
        return abs(view_pos.x() - x) <= reach or abs(view_pos.y() - y) <= reach

    def mouseClickEvent(self, ev: MouseClickEvent) -> None:  # noqa: N802 (Qt override)
        if self.tool_took_click(ev):
            return
        ev.accept()
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if ev.double():
            self.sigDoubleClicked.emit()
            return
        p = self.mapToView(ev.pos())
        self.sigCrosshair.emit(float(p.x()), float(p.y()))

    def mouseDragEvent(self, ev: MouseDragEvent, axis: int | None = None) -> None:  # noqa: N802 (Qt override)
        if self.tool_took_drag(ev):
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            if ev.isStart():
                start = self.mapToView(ev.buttonDownPos())
                shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                self._dragging = shift or self.near_crosshair(start)
            if self._dragging:
                ev.accept()
                p = self.mapToView(ev.pos())
                self.sigCrosshair.emit(float(p.x()), float(p.y()))
                if ev.isFinish():
                    self._dragging = False
                return
        super().mouseDragEvent(ev, axis)


@dataclass(slots=True)
class Strip:
    """Per-acquired-slice colours along one view axis: band ``k`` spans ``lo[k]…hi[k]`` mm along ``axis``."""

    axis: str
    lo: np.ndarray
    hi: np.ndarray
    colours: list[QColor]
    keys: list[int] = field(default_factory=list)
    text: str = ""


class MprCanvas(SliceCanvas):
    """The canvas of a pane: the annotations of :class:`SliceCanvas`, plus the slice strip along the edge."""

    def __init__(self) -> None:
        super().__init__()
        self.vb = MprViewBox()
        self.setCentralItem(self.vb)
        # Three of these share the image area: a smaller minimum than the single view's, so the 1 × 3 page does
        # not widen the window's minimum size.
        self.setMinimumSize(100, 100)
        self.strip: Strip | None = None
        #: (strip, (width, height, offset, scale, pixel ratio), corner, pixmap) of the strip last drawn.
        self._strip_cache: tuple[Strip, tuple[float, ...], QPointF, QPixmap] | None = None

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt override)
        super().drawForeground(painter, rect)
        if self.strip is not None and not self.annotations.message:
            painter.save()
            painter.setWorldMatrixEnabled(False)
            try:
                self._paint_strip(painter, self.strip)
            finally:
                painter.restore()

    def view_to_viewport(self, x: float, y: float) -> QPointF:
        """Where view mm (x, y) is on the viewport (not rounded to whole pixels)."""
        return self.viewportTransform().map(self.vb.mapViewToScene(QPointF(x, y)))

    def _paint_strip(self, painter: QPainter, strip: Strip) -> None:
        """Cells at the right edge (a vertical axis) or the bottom edge (a horizontal one), ticks for key slices.

        The view has no rotation, so one offset and scale map every band (no per-band mapping calls). The strip is
        drawn once into a pixmap of its edge and that is reused while the strip, the viewport size and the view's
        mapping along the strip stay (a crosshair drag repaints every frame; a strip of 300 cells is 300 rects)."""
        w, h = self.viewport().width(), self.viewport().height()
        vertical = strip.axis == "y"
        origin = self.view_to_viewport(0.0, 0.0)
        unit = self.view_to_viewport(1.0, 1.0)
        offset, scale = (
            (origin.y(), unit.y() - origin.y()) if vertical else (origin.x(), unit.x() - origin.x())
        )
        ratio = self.viewport().devicePixelRatioF()
        key = (w, h, offset, scale, ratio)
        cached = self._strip_cache
        if cached is None or cached[0] is not strip or cached[1] != key:
            band = STRIP_WIDTH + STRIP_INSET + STRIP_TICK + 2  # the cells, their inset and the ticks' reach
            corner = QPointF(w - band, 0.0) if vertical else QPointF(0.0, h - band)
            size = (band, h) if vertical else (w, band)
            pixmap = QPixmap(max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio)))
            pixmap.setDevicePixelRatio(ratio)
            pixmap.fill(Qt.GlobalColor.transparent)
            into = QPainter(pixmap)
            try:
                into.translate(-corner)
                self._draw_strip(into, strip, w, h, offset, scale)
            finally:
                into.end()
            cached = self._strip_cache = (strip, key, corner, pixmap)
        painter.drawPixmap(cached[2], cached[3])

    @staticmethod
    def _draw_strip(painter: QPainter, strip: Strip, w: int, h: int, offset: float, scale: float) -> None:
        vertical = strip.axis == "y"
        a = offset + scale * strip.lo
        b = offset + scale * strip.hi
        start, end = np.minimum(a, b), np.maximum(a, b)
        painter.setPen(Qt.PenStyle.NoPen)
        for k, colour in enumerate(strip.colours):
            painter.setBrush(colour)
            length = max(1.0, float(end[k] - start[k]))
            if vertical:
                painter.drawRect(QRectF(w - STRIP_WIDTH - STRIP_INSET, float(start[k]), STRIP_WIDTH, length))
            else:
                painter.drawRect(QRectF(float(start[k]), h - STRIP_WIDTH - STRIP_INSET, length, STRIP_WIDTH))
        painter.setPen(QPen(QColor(KEY_COLOUR), 2))
        for k in strip.keys:
            if 0 <= k < len(strip.lo):
                c = float(start[k] + end[k]) / 2.0
                if vertical:
                    painter.drawLine(
                        QPointF(w - STRIP_WIDTH - STRIP_INSET - STRIP_TICK, c),
                        QPointF(w - STRIP_WIDTH - STRIP_INSET - 1, c),
                    )
                else:
                    painter.drawLine(
                        QPointF(c, h - STRIP_WIDTH - STRIP_INSET - STRIP_TICK),
                        QPointF(c, h - STRIP_WIDTH - STRIP_INSET - 1),
                    )


class MprPane(QWidget):
    """One plane on screen. Signals carry view mm; ``name`` is the plane's name ("axial", …)."""

    crosshair_requested = Signal(str, float, float)
    scroll_requested = Signal(str, int)
    window_dragged = Signal(float, float)
    zoomed = Signal(str)
    double_clicked = Signal(str)
    hovered = Signal(str, object)  # (x, y) view mm, or None when the mouse leaves the image

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setObjectName(f"mpr-pane-{name}")
        self.canvas = MprCanvas()
        self.vb: MprViewBox = self.canvas.vb  # type: ignore[assignment]
        self.image_item = pg.ImageItem()
        self.overlay_item = pg.ImageItem()
        self.overlay_item.setZValue(Z_PANE_OVERLAY)
        pen = pg.mkPen(CROSSHAIR_COLOUR, width=1)
        self.v_line = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.h_line = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        for item in (self.image_item, self.overlay_item, self.v_line, self.h_line):
            self.vb.addItem(item, ignoreBounds=item in (self.v_line, self.h_line))
        self.v_line.setZValue(Z_CROSSHAIR)
        self.h_line.setZValue(Z_CROSSHAIR)
        self.image_rect = QRectF(0, 0, 1, 1)
        self.fit_rect = QRectF(0, 0, 1, 1)
        self._zoom_by_user = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.addWidget(self.canvas)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        self.vb.sigCrosshair.connect(lambda x, y: self.crosshair_requested.emit(self.name, x, y))
        self.vb.sigWheelSteps.connect(lambda steps: self.scroll_requested.emit(self.name, int(steps)))
        self.vb.sigWindowDrag.connect(self.window_dragged)
        self.vb.sigDoubleClicked.connect(lambda: self.double_clicked.emit(self.name))
        self.vb.sigUserZoom.connect(self._on_user_zoom)
        self.vb.sigFit.connect(self.fit)
        self.canvas.sigResized.connect(self._on_resized)
        self.canvas.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # -- content ----------------------------------------------------------------------------------------------

    def set_image(
        self, data: np.ndarray, rect: QRectF, levels: tuple[float, float], lut: np.ndarray | None
    ) -> None:
        """Show ``data`` (NaN drawn transparent) over ``rect`` (view mm) with the window ``levels``."""
        self.image_item.setImage(data, autoLevels=False, levels=levels, lut=lut)
        self.image_item.setRect(rect)
        self.image_item.show()
        self.image_rect = QRectF(rect)

    def set_levels(self, levels: tuple[float, float], lut: np.ndarray | None) -> None:
        """A new window on the image already shown."""
        self.image_item.setLevels(levels)
        self.image_item.setLookupTable(lut)

    def set_overlay(
        self,
        data: np.ndarray | None,
        rect: QRectF,
        levels: tuple[float, float] = (0.0, 255.0),
        lut: np.ndarray | None = None,
        opacity: float = 0.5,
    ) -> None:
        """The overlay over the image (same rect), or none."""
        if data is None:
            self.overlay_item.hide()
            return
        self.overlay_item.setImage(data, autoLevels=False, levels=levels, lut=lut, opacity=opacity)
        self.overlay_item.setRect(rect)
        self.overlay_item.show()

    def set_crosshair(self, x: float, y: float) -> None:
        """Crosshair lines through view (x, y) mm."""
        self.v_line.setValue(x)
        self.h_line.setValue(y)
        self.vb.crosshair = (x, y)

    def set_strip(self, strip: Strip | None) -> None:
        """The per-slice strip along the edge (None: none)."""
        self.canvas.strip = strip
        self.canvas.setToolTip(strip.text if strip is not None else "")
        self.canvas.viewport().update()

    def clear(self, message: str = "") -> None:
        """No image; ``message`` in the middle."""
        self.image_item.hide()
        self.overlay_item.hide()
        self.canvas.strip = None
        self.canvas.annotations.message = message
        self.canvas.viewport().update()

    # -- zoom -------------------------------------------------------------------------------------------------

    @property
    def zoomed_by_user(self) -> bool:
        """Whether the user zoomed or panned since the last fit."""
        return self._zoom_by_user

    def mm_per_pixel(self) -> float:
        """View mm per screen pixel."""
        (x0, x1), _ = self.vb.viewRange()
        width = self.vb.boundingRect().width()
        return (x1 - x0) / width if width > 0 else 0.0

    def fit(self) -> None:
        """The whole plane in view."""
        self._zoom_by_user = False
        self.vb.setRange(rect=self.fit_rect, padding=0.0)

    def set_scale(self, mm_per_pixel: float) -> None:
        """Zoom to ``mm_per_pixel`` around the current centre (a zoom linked from another pane)."""
        rect = self.vb.boundingRect()
        if mm_per_pixel <= 0 or rect.width() <= 0:
            return
        (x0, x1), (y0, y1) = self.vb.viewRange()
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        half_w, half_h = rect.width() * mm_per_pixel / 2.0, rect.height() * mm_per_pixel / 2.0
        self._zoom_by_user = True
        self.vb.setRange(xRange=(cx - half_w, cx + half_w), yRange=(cy - half_h, cy + half_h), padding=0.0)

    def _on_user_zoom(self) -> None:
        self._zoom_by_user = True
        self.zoomed.emit(self.name)

    def _on_resized(self) -> None:
        if not self._zoom_by_user:
            self.fit()

    # -- cursor -----------------------------------------------------------------------------------------------

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if not self.vb.sceneBoundingRect().contains(scene_pos) or not self.image_item.isVisible():
            self.hovered.emit(self.name, None)
            return
        p = self.vb.mapSceneToView(scene_pos)
        self.hovered.emit(self.name, (float(p.x()), float(p.y())))

    def view_to_viewport(self, x: float, y: float) -> QPointF:
        """Where view mm (x, y) is on the canvas viewport (for tests and tools)."""
        return self.canvas.view_to_viewport(x, y)
