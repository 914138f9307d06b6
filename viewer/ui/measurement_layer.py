"""Measurements on one pane: drawn in screen pixels over the image, made and edited with the mouse.

A :class:`MeasurementLayer` sits on a :class:`~viewer.ui.canvas.SliceCanvas` (the 1 × 1 view or one reformat
pane). It asks its pane for a :class:`PaneGeometry` (the plane on screen, its pixels and how view mm map to them),
draws the measurements of the current series that lie on that plane, and takes left-button gestures before the
view does: with a tool picked, clicks and drags make a measurement; with the pointer, a click on a measurement
selects it and a drag moves its handle (or all of it when the drag starts on its outline). Everything else goes
on to the view (crosshair, window/level). Shapes are drawn in mm of the plane and their labels in fixed-size
screen text, so both stay right and legible at any zoom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent, MouseDragEvent
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QKeyEvent, QPainter, QPen, QPolygonF

from viewer.dicom.reformat.annotations import (
    POINT_COUNT,
    Measurement,
    PlaneRef,
    Tool,
    make_measurement,
    moved,
)
from viewer.dicom.reformat.annotations import outline as shape_outline
from viewer.dicom.reformat.planes import PlaneGrid
from viewer.ui.canvas import SliceCanvas

COLOUR = "#ffd54f"
SELECTED_COLOUR = "#ff8a65"
DRAFT_COLOUR = "#fff59d"
#: Screen pixels: handle size, how near a handle or an outline a press must be to grab it.
HANDLE_PX = 7
GRAB_PX = 7
LABEL_PX = 12
LABEL_MARGIN_RIGHT = 48


@dataclass(slots=True)
class PaneGeometry:
    """The plane a pane shows: ``ref`` names it, ``grid`` and ``data`` are its pixels and values, and pixel
    (row, col) is at view ``(vx0 + col·dx, vy0 + row·dy)`` mm in the pane."""

    ref: PlaneRef
    grid: PlaneGrid
    data: np.ndarray
    vx0: float
    vy0: float
    units: str = "HU"

    def to_view(self, point: np.ndarray | tuple[float, ...]) -> tuple[float, float]:
        """View mm of a patient point (projected on the plane)."""
        row, col = self.grid.pixel_of(np.asarray(point, dtype=np.float64))
        return self.vx0 + col * self.grid.dx, self.vy0 + row * self.grid.dy

    def from_view(self, x: float, y: float) -> np.ndarray:
        """The patient point at view (x, y) mm on the plane."""
        return self.grid.patient_of((y - self.vy0) / self.grid.dy, (x - self.vx0) / self.grid.dx)


def _segment_distance(p: QPointF, a: QPointF, b: QPointF) -> float:
    ax, ay, bx, by = a.x(), a.y(), b.x(), b.y()
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p.x() - ax) * dx + (p.y() - ay) * dy) / length2))
    return math.hypot(p.x() - (ax + t * dx), p.y() - (ay + t * dy))


def outline(tool: Tool, points: list[QPointF]) -> tuple[list[QPointF], bool]:
    """The screen polyline of a shape and whether it is closed (:func:`annotations.outline` on screen points)."""
    line, closed = shape_outline(tool, [(p.x(), p.y()) for p in points])
    return [QPointF(x, y) for x, y in line], closed


class MeasurementHost(Protocol):
    """What a layer needs of its controller: the tool, the selection and the current series' measurements."""

    tool: Tool | None
    selected: int | None

    def on_plane(self, ref: PlaneRef) -> list[Measurement]: ...

    def add(self, m: Measurement) -> Measurement: ...

    def update(self, m: Measurement) -> None: ...

    def select(self, ident: int | None) -> None: ...

    def set_tool(self, tool: Tool | None) -> None: ...


class MeasurementLayer:
    """The measurements of one pane (see the module docstring). ``geometry()`` is None while the pane shows no
    plane (nothing loaded): then the layer draws nothing and lets every gesture through."""

    def __init__(
        self,
        name: str,
        canvas: SliceCanvas,
        geometry: Callable[[], PaneGeometry | None],
        controller: MeasurementHost,
    ) -> None:
        self.name = name
        self.canvas = canvas
        self.vb = canvas.vb
        self.geometry = geometry
        self.controller = controller
        self.draft: list[np.ndarray] = []
        self.hover: np.ndarray | None = None
        self.live: Measurement | None = None  # the measurement being dragged, as it is now
        self._grab: tuple[Measurement, int, QPointF] | None = None  # (as it was, handle or -1, press)
        self._draft_geometry: PaneGeometry | None = None
        self.font = QFont(canvas.font())
        self.font.setPixelSize(LABEL_PX)
        canvas.foreground_painters.append(self.paint)
        canvas.vb.tool = self
        canvas.wants_escape = lambda: self.controller.tool is not None or bool(self.draft)
        canvas.sigKeyPressed.connect(self._on_key)
        canvas.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # -- mapping ----------------------------------------------------------------------------------------------

    def _screen(self, geometry: PaneGeometry, point: np.ndarray | tuple[float, ...]) -> QPointF:
        x, y = geometry.to_view(point)
        return self.canvas.viewportTransform().map(self.vb.mapViewToScene(QPointF(x, y)))

    def _patient(self, geometry: PaneGeometry, scene_pos: QPointF) -> np.ndarray:
        p = self.vb.mapSceneToView(scene_pos)
        return geometry.from_view(float(p.x()), float(p.y()))

    def _scene_to_screen(self, scene_pos: QPointF) -> QPointF:
        return self.canvas.viewportTransform().map(scene_pos)

    def shown(self, geometry: PaneGeometry) -> list[Measurement]:
        """The measurements drawn on this pane now (a dragged one as it is being moved)."""
        items = self.controller.on_plane(geometry.ref)
        if self.live is not None:
            items = [self.live if m.id == self.live.id else m for m in items]
        return items

    def hit(self, geometry: PaneGeometry, screen: QPointF) -> tuple[Measurement, int] | None:
        """The measurement under a screen point and which handle (-1: its outline or inside), the selected first."""
        items = self.shown(geometry)
        selected = self.controller.selected
        items.sort(key=lambda m: m.id != selected)
        for m in items:
            points = [self._screen(geometry, p) for p in m.points]
            for index, q in enumerate(points):
                if math.hypot(q.x() - screen.x(), q.y() - screen.y()) <= GRAB_PX:
                    return m, index
            line, closed = outline(m.tool, points)
            pairs = list(zip(line, line[1:] + line[:1], strict=True)) if closed else list(zip(line, line[1:]))  # noqa: B905
            if any(_segment_distance(screen, a, b) <= GRAB_PX for a, b in pairs):
                return m, -1
            if closed and QPolygonF(line).containsPoint(screen, Qt.FillRule.OddEvenFill):
                return m, -1
        return None

    # -- mouse ------------------------------------------------------------------------------------------------

    def handle_click(self, ev: MouseClickEvent) -> bool:
        """A left click: a point of the tool's measurement, or (pointer) the selection; True when taken."""
        geometry = self.geometry()
        if geometry is None:
            return False
        tool = self.controller.tool
        point = self._patient(geometry, ev.scenePos())
        if tool is None:
            found = self.hit(geometry, self._scene_to_screen(ev.scenePos()))
            if found is not None:
                self.controller.select(found[0].id)
                return True
            if self.controller.selected is not None:
                self.controller.select(None)
            return False
        if (
            self.draft
            and self._draft_geometry is not None
            and not self._draft_geometry.ref.same_plane(geometry.ref)
        ):
            self.draft = []  # the plane moved under the draft: start again here
        self._draft_geometry = geometry
        if tool == Tool.POLYGON:
            screen = self._scene_to_screen(ev.scenePos())
            if len(self.draft) >= 3:
                first = self._screen(geometry, self.draft[0])
                near_first = math.hypot(first.x() - screen.x(), first.y() - screen.y()) <= GRAB_PX
                if ev.double() or near_first:
                    self._finish(geometry)
                    return True
            if not ev.double():
                self.draft.append(point)
        else:
            self.draft.append(point)
        if len(self.draft) >= POINT_COUNT[tool] and tool != Tool.POLYGON:
            self._finish(geometry)
        self.canvas.viewport().update()
        return True

    def handle_drag(self, ev: MouseDragEvent) -> bool:
        """A left drag: a handle or a whole measurement moved, or a line/rectangle/ellipse drawn; True when
        taken (decided at its start)."""
        geometry = self.geometry()
        if geometry is None:
            return False
        tool = self.controller.tool
        if ev.isStart():
            start_scene = self.vb.mapToScene(ev.buttonDownPos())
            found = self.hit(geometry, self._scene_to_screen(start_scene)) if not self.draft else None
            if found is not None:
                self.controller.select(found[0].id)
                self._grab = (found[0], found[1], start_scene)
                self._draft_geometry = geometry
            elif tool in (Tool.LINE, Tool.RECTANGLE, Tool.ELLIPSE) and not self.draft:
                self._draft_geometry = geometry
                start = self._patient(geometry, start_scene)
                self.draft = [start, start]
            elif tool is None:
                return False
            else:
                return True  # angle, polygon, probe: made by clicks; the drag is not the window's either
        geometry = self._draft_geometry or geometry
        here = self._patient(geometry, ev.scenePos())
        if self._grab is not None:
            original, handle, start_scene = self._grab
            points = [np.asarray(p) for p in original.points]
            if handle >= 0:
                points[handle] = here
            else:
                shift = here - self._patient(geometry, start_scene)
                points = [p + shift for p in points]
            self.live = moved(original, points, geometry.grid, geometry.data, geometry.ref)
            if ev.isFinish():
                self.controller.update(self.live)
                self.live, self._grab = None, None
        elif len(self.draft) == 2 and tool in (Tool.LINE, Tool.RECTANGLE, Tool.ELLIPSE):
            self.draft[1] = here
            if ev.isFinish():
                self._finish(geometry)
        self.canvas.viewport().update()
        return True

    def _finish(self, geometry: PaneGeometry) -> None:
        tool, points = self.controller.tool, self.draft
        self.draft = []
        if tool is None:
            return
        if len(points) >= 2 and tool == Tool.POLYGON:
            last, before = self._screen(geometry, points[-1]), self._screen(geometry, points[-2])
            if math.hypot(last.x() - before.x(), last.y() - before.y()) <= 2:
                points = points[:-1]  # the double-click's first click
        if len(points) < POINT_COUNT[tool]:
            return
        screen = [self._screen(geometry, p) for p in points]
        span = max(math.hypot(a.x() - b.x(), a.y() - b.y()) for a in screen for b in screen)
        if tool != Tool.PROBE and span < 3:
            return  # a click, not a shape
        try:
            m = make_measurement(tool, geometry.ref, geometry.grid, geometry.data, points, geometry.units)
        except ValueError:
            return
        self.controller.add(m)

    def cancel(self) -> bool:
        """Drop the measurement being drawn; False when there was none."""
        had = bool(self.draft) or self.live is not None
        self.draft, self.live, self._grab = [], None, None
        self.canvas.viewport().update()
        return had

    def _on_key(self, ev: QKeyEvent) -> None:
        key = ev.key()
        if key == Qt.Key.Key_Escape:
            if not self.cancel():
                self.controller.set_tool(None)
            ev.accept()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.draft and self._draft_geometry is not None:
            self._finish(self._draft_geometry)
            self.canvas.viewport().update()
            ev.accept()

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        geometry = self.geometry()
        if not self.draft or geometry is None:
            return
        self.hover = self._patient(geometry, scene_pos)
        self.canvas.viewport().update()

    # -- painting ---------------------------------------------------------------------------------------------

    def paint(self, painter: QPainter) -> None:
        """Draw the measurements on this plane and the one being drawn (screen pixels)."""
        geometry = self.geometry()
        if geometry is None or self.canvas.annotations.message:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setFont(self.font)
        selected = self.controller.selected
        for m in self.shown(geometry):
            colour = SELECTED_COLOUR if m.id == selected else COLOUR
            self._paint_shape(
                painter, m.tool, [self._screen(geometry, p) for p in m.points], colour, m.id == selected
            )
            self._paint_label(painter, m, [self._screen(geometry, p) for p in m.points], colour)
        if self.draft and self.controller.tool is not None:
            points = [self._screen(geometry, p) for p in self.draft]
            if self.hover is not None and self.controller.tool in (Tool.ANGLE, Tool.POLYGON):
                points.append(self._screen(geometry, self.hover))
            self._paint_shape(painter, self.controller.tool, points, DRAFT_COLOUR, True, draft=True)

    def _paint_shape(
        self,
        painter: QPainter,
        tool: Tool,
        points: list[QPointF],
        colour: str,
        handles: bool,
        draft: bool = False,
    ) -> None:
        line, closed = outline(tool, points)
        for pen_colour, width, offset in ((QColor(0, 0, 0, 180), 3.0, 1.0), (QColor(colour), 1.5, 0.0)):
            pen = QPen(pen_colour, width)
            if draft:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            shifted = [QPointF(p.x() + offset, p.y() + offset) for p in line]
            if tool == Tool.PROBE and shifted:
                c = shifted[0]
                painter.drawLine(QPointF(c.x() - 6, c.y()), QPointF(c.x() + 6, c.y()))
                painter.drawLine(QPointF(c.x(), c.y() - 6), QPointF(c.x(), c.y() + 6))
            elif closed and len(shifted) > 2:
                painter.drawPolygon(QPolygonF(shifted))
            elif len(shifted) > 1:
                painter.drawPolyline(QPolygonF(shifted))
        if handles and tool != Tool.PROBE:
            painter.setPen(QPen(QColor(0, 0, 0), 1))
            painter.setBrush(QBrush(QColor(colour)))
            half = HANDLE_PX / 2
            for p in points:
                painter.drawRect(QRectF(p.x() - half, p.y() - half, HANDLE_PX, HANDLE_PX))

    def _paint_label(self, painter: QPainter, m: Measurement, points: list[QPointF], colour: str) -> None:
        lines = [f"{m.id}: {m.label_lines()[0]}", *m.label_lines()[1:]]
        fm = QFontMetrics(self.font)
        width = max(fm.horizontalAdvance(t) for t in lines) + 4
        height = fm.lineSpacing() * len(lines)
        w, h = self.canvas.viewport().width(), self.canvas.viewport().height()
        xs, ys = [p.x() for p in points], [p.y() for p in points]
        right = max(points, key=lambda p: (p.x(), -p.y()))
        candidates = [  # right of the shape, under it, left of it, over it: the first that fits on screen
            (right.x() + 10, right.y() - height / 2),
            (min(xs), max(ys) + 8),
            (min(xs) - 10 - width, right.y() - height / 2),
            (min(xs), min(ys) - 8 - height),
        ]
        fits = [
            (x, y) for x, y in candidates if x >= 4 and y >= 4 and x + width <= w - 4 and y + height <= h - 4
        ]
        x, y = fits[0] if fits else candidates[0]
        x, y = min(max(4.0, x), max(4.0, w - width - 4)), min(max(4.0, y), max(4.0, h - height - 4))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 150))
        painter.drawRoundedRect(QRectF(x - 3, y - 1, width + 4, height + 2), 3, 3)
        painter.setPen(QColor(colour))
        for i, text in enumerate(lines):
            painter.drawText(QPointF(x, y + fm.ascent() + i * fm.lineSpacing()), text)
