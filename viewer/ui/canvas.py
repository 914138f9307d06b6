"""The drawing surface of the image view: mouse conventions and the annotations painted over the image.

:class:`SliceViewBox` replaces pyqtgraph's default mouse handling with the reading-room one (wheel = slice,
left-drag = window/level, right-drag = zoom, middle-drag = pan, double-click = fit). :class:`SliceCanvas` paints
corner text, orientation letters, a scale bar and messages in ``drawForeground`` in screen coordinates, so they
stay sharp and fixed while the image is zoomed and panned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pyqtgraph as pg
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent, MouseDragEvent
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QKeyEvent, QPainter, QPen, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QGraphicsSceneWheelEvent, QGraphicsView

from viewer.ui import theme

WHEEL_STEP = 120  # angle delta of one notch
ZOOM_PER_PIXEL = 0.01


@dataclass(slots=True)
class Annotations:
    """Text painted over the image, in screen coordinates."""

    corners: dict[str, list[str]] = field(default_factory=dict)  # "tl", "tr", "bl", "br"
    edges: dict[str, str] = field(default_factory=dict)  # "left", "right", "top", "bottom"
    warning: str = ""
    message: str = ""
    message_is_error: bool = False


def nice_length(target: float) -> float:
    """The largest 1-2-5 × 10ⁿ length not above ``target`` (for scale bars)."""
    if target <= 0 or not math.isfinite(target):
        return 0.0
    exp = math.floor(math.log10(target))
    base = 10.0**exp
    for m in (5.0, 2.0, 1.0):
        if m * base <= target:
            return m * base
    return base


class MouseTool(Protocol):
    """Something that may take a left-button gesture before the view's own (e.g. a measurement tool): each
    returns True when it took the event."""

    def handle_click(self, ev: MouseClickEvent) -> bool: ...

    def handle_drag(self, ev: MouseDragEvent) -> bool: ...


class SliceViewBox(pg.ViewBox):
    """A ViewBox with the reading-room mouse conventions instead of pyqtgraph's defaults; ``tool`` (a
    :class:`MouseTool`) sees left-button clicks and drags first."""

    sigWindowDrag = Signal(float, float)  # screen dx, dy in pixels
    sigWheelSteps = Signal(int)
    sigFit = Signal()
    sigUserZoom = Signal()

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self._wheel_accumulated = 0
        self.tool: MouseTool | None = None
        self._tool_drag = False

    def tool_took_click(self, ev: MouseClickEvent) -> bool:
        """Whether :attr:`tool` took this click."""
        if self.tool is None or ev.button() != Qt.MouseButton.LeftButton:
            return False
        if self.tool.handle_click(ev):
            ev.accept()
            return True
        return False

    def tool_took_drag(self, ev: MouseDragEvent) -> bool:
        """Whether :attr:`tool` took this drag (it decides at the drag's start, and keeps it to the end)."""
        if self.tool is None or ev.button() != Qt.MouseButton.LeftButton:
            return False
        if ev.isStart():
            self._tool_drag = self.tool.handle_drag(ev)
        elif self._tool_drag:
            self.tool.handle_drag(ev)
        taken = self._tool_drag
        if ev.isFinish():
            self._tool_drag = False
        if taken:
            ev.accept()
        return taken

    def wheelEvent(self, ev: QGraphicsSceneWheelEvent | QWheelEvent, axis: int | None = None) -> None:  # noqa: N802 (Qt override)
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        self._wheel_accumulated += int(delta)
        steps = int(self._wheel_accumulated / WHEEL_STEP)
        if steps:
            self._wheel_accumulated -= steps * WHEEL_STEP
            self.sigWheelSteps.emit(-steps)  # wheel forward (away from the user) = previous slice
        ev.accept()

    def mouseDragEvent(self, ev: MouseDragEvent, axis: int | None = None) -> None:  # noqa: N802 (Qt override)
        if self.tool_took_drag(ev):
            return
        ev.accept()
        button = ev.button()
        delta = ev.screenPos() - ev.lastScreenPos()
        if button == Qt.MouseButton.LeftButton:
            self.sigWindowDrag.emit(float(delta.x()), float(delta.y()))
        elif button == Qt.MouseButton.RightButton:
            scale = math.exp(float(delta.y()) * ZOOM_PER_PIXEL)  # drag up = zoom in
            self.scaleBy((scale, scale), center=self.mapToView(ev.buttonDownPos()))
            self.sigUserZoom.emit()
        elif button == Qt.MouseButton.MiddleButton:
            shift = self.mapToView(ev.pos()) - self.mapToView(ev.lastPos())
            self.translateBy(t=-shift)
            self.sigUserZoom.emit()

    def mouseClickEvent(self, ev: MouseClickEvent) -> None:  # noqa: N802 (Qt override)
        if self.tool_took_click(ev):
            return
        ev.accept()
        if ev.double() and ev.button() == Qt.MouseButton.LeftButton:
            self.sigFit.emit()


class SliceCanvas(pg.GraphicsView):
    """The graphics view: holds the ViewBox and paints the annotations over it.

    It knows nothing of its owner: key presses and resizes go out as signals. A slot of ``sigKeyPressed``
    accepts the event to mark it handled; an event left ignored goes on to the graphics view. ``foreground_painters`` draw
    over the image in screen pixels after the annotations (e.g. measurements, whose labels keep their size at any
    zoom); ``wants_escape()`` True takes Esc from the window's shortcuts (a measurement being drawn).
    """

    sigKeyPressed = Signal(object)  # QKeyEvent
    sigResized = Signal()

    def __init__(self) -> None:
        super().__init__(background=theme.IMAGE_BACKGROUND)
        self.vb = SliceViewBox()
        self.setCentralItem(self.vb)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(200, 200)
        self.annotations = Annotations()
        self.scale_bar_mm_per_px: float | None = None
        self.font_main = QFont(self.font())
        self.font_main.setPixelSize(13)
        self.font_letters = QFont(self.font())
        self.font_letters.setPixelSize(16)
        self.font_letters.setBold(True)
        self.font_message = QFont(self.font())
        self.font_message.setPixelSize(15)
        self.foreground_painters: list[Callable[[QPainter], None]] = []
        self.wants_escape: Callable[[], bool] = lambda: False

    def event(self, ev: QEvent) -> bool:
        if (
            ev.type() == QEvent.Type.ShortcutOverride
            and isinstance(ev, QKeyEvent)
            and ev.key() == Qt.Key.Key_Escape
            and self.wants_escape()
        ):
            ev.accept()
            return True
        return super().event(ev)

    def keyPressEvent(self, ev: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        ev.ignore()
        self.sigKeyPressed.emit(ev)
        if ev.isAccepted():
            return
        super().keyPressEvent(ev)

    def resizeEvent(self, ev: QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(ev)
        self.sigResized.emit()

    # -- painting ---------------------------------------------------------------------------------------------

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt override)
        painter.save()
        painter.setWorldMatrixEnabled(False)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        try:
            self._paint_annotations(painter)
            for paint in self.foreground_painters:
                paint(painter)
        finally:
            painter.restore()

    def _text(self, painter: QPainter, box: QRectF, flags: int, text: str, colour: QColor) -> None:
        painter.setPen(QColor(0, 0, 0, 220))
        painter.drawText(box.translated(1, 1), flags, text)
        painter.setPen(colour)
        painter.drawText(box, flags, text)

    def _paint_annotations(self, painter: QPainter) -> None:
        a = self.annotations
        w, h = self.viewport().width(), self.viewport().height()
        margin = 8
        colour = QColor(theme.OVERLAY_TEXT)
        painter.setFont(self.font_main)
        box = QRectF(margin, margin, w - 2 * margin, h - 2 * margin)
        align = Qt.AlignmentFlag
        corner_flags = {
            "tl": align.AlignLeft | align.AlignTop,
            "tr": align.AlignRight | align.AlignTop,
            "bl": align.AlignLeft | align.AlignBottom,
            "br": align.AlignRight | align.AlignBottom,
        }
        for corner, lines in a.corners.items():
            if lines:
                self._text(painter, box, int(corner_flags[corner]), "\n".join(lines), colour)

        if a.edges:
            painter.setFont(self.font_letters)
            fm = QFontMetrics(self.font_letters)
            lh = fm.height()
            edge_colour = QColor("#f0d060")
            positions = {
                "top": QRectF(0, margin, w, lh),
                "bottom": QRectF(0, h - margin - lh, w, lh),
                "left": QRectF(margin, h / 2 - lh / 2, 60, lh),
                "right": QRectF(w - margin - 60, h / 2 - lh / 2, 60, lh),
            }
            flags = {
                "top": align.AlignHCenter | align.AlignTop,
                "bottom": align.AlignHCenter | align.AlignBottom,
                "left": align.AlignLeft | align.AlignVCenter,
                "right": align.AlignRight | align.AlignVCenter,
            }
            for edge, letters in a.edges.items():
                if letters:
                    self._text(painter, positions[edge], int(flags[edge]), letters, edge_colour)

        if a.warning:
            painter.setFont(self.font_main)
            fm = QFontMetrics(self.font_main)
            text = fm.elidedText(a.warning, Qt.TextElideMode.ElideRight, int(w * 0.45))
            top = margin + QFontMetrics(self.font_letters).height() + 2
            self._text(
                painter,
                QRectF(0, top, w, fm.height()),
                int(align.AlignHCenter),
                text,
                QColor(theme.WARNING_TEXT),
            )

        self._paint_scale_bar(painter, w, h, margin)

        if a.message:
            painter.setFont(self.font_message)
            msg_colour = QColor("#ff8c7a") if a.message_is_error else QColor(theme.OVERLAY_TEXT)
            inner = QRectF(w * 0.15, h * 0.3, w * 0.7, h * 0.4)
            self._text(
                painter, inner, int(align.AlignCenter | Qt.TextFlag.TextWordWrap), a.message, msg_colour
            )

    def _paint_scale_bar(self, painter: QPainter, w: int, h: int, margin: int) -> None:
        """A 1-2-5 mm bar at the bottom right, above the W/L lines (clear of the orientation letter)."""
        mm_per_px = self.scale_bar_mm_per_px
        if not mm_per_px or mm_per_px <= 0 or self.annotations.message:
            return
        length_mm = nice_length(mm_per_px * w * 0.2)
        if length_mm <= 0:
            return
        length_px = length_mm / mm_per_px
        fm = QFontMetrics(self.font_main)
        n_lines = len(self.annotations.corners.get("br", []))
        y = h - margin - n_lines * fm.lineSpacing() - 8
        x1 = w - margin
        x0 = x1 - length_px
        painter.setFont(self.font_main)
        for pen_colour, offset in ((QColor(0, 0, 0, 200), 1), (QColor(theme.OVERLAY_TEXT), 0)):
            painter.setPen(QPen(pen_colour, 1.5))
            painter.drawLine(QPointF(x0 + offset, y + offset), QPointF(x1 + offset, y + offset))
            for x, tick in ((x0, 6), (x0 + length_px / 2, 3), (x1, 6)):
                painter.drawLine(QPointF(x + offset, y - tick + offset), QPointF(x + offset, y + offset))
        label = f"{length_mm:g} mm"
        self._text(
            painter,
            QRectF(
                x0 - fm.horizontalAdvance(label) - 8,
                y - fm.height() + 3,
                fm.horizontalAdvance(label) + 4,
                fm.height(),
            ),
            int(Qt.AlignmentFlag.AlignRight),
            label,
            QColor(theme.OVERLAY_TEXT),
        )
