"""The measurement tools of the window: which tool is picked, the measurements of each series (for the session),
the layers that draw them on every pane, and the Measurements dock that lists them.

One :class:`~viewer.ui.measurement_layer.MeasurementLayer` sits on the 1 × 1 view and one on each reformat pane.
The measurements themselves are plain data (:mod:`viewer.dicom.reformat.annotations`), kept per series in a
:class:`~viewer.dicom.reformat.annotations.MeasurementStore`, so the report and the PNG export use them headless.
Esc drops the measurement being drawn, then goes back to the pointer; Del deletes the selected one; Ctrl+Z undoes
the last change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from viewer.dicom.reformat import PlaneKind
from viewer.dicom.reformat.annotations import (
    ACQUIRED,
    TOOL_NAMES,
    Measurement,
    MeasurementSet,
    MeasurementStore,
    PlaneRef,
    Tool,
    acquired_grid,
    plane_ref,
)
from viewer.dicom.reformat.frame import SliceFrame
from viewer.dicom.volume import Volume
from viewer.ui.layouts import QUAD, SINGLE, THREE, LayoutController
from viewer.ui.measurement_layer import MeasurementLayer, PaneGeometry

COLUMNS = ("#", "Type", "Plane", "Value")
#: The tools' names in the list (its tooltips say the rest).
SHORT_NAMES: dict[Tool, str] = {
    Tool.LINE: "Line",
    Tool.ANGLE: "Angle",
    Tool.RECTANGLE: "Rectangle",
    Tool.ELLIPSE: "Ellipse",
    Tool.POLYGON: "Polygon",
    Tool.PROBE: "Probe",
}
TOOL_TIPS: dict[Tool, str] = {
    Tool.LINE: "Line: drag, or click both ends (length in mm)",
    Tool.ANGLE: "Angle: click the first end, the vertex, then the second end",
    Tool.RECTANGLE: "Rectangle ROI: drag corner to corner (mean, SD, min, max, area)",
    Tool.ELLIPSE: "Ellipse ROI: drag corner to corner of its box (mean, SD, min, max, area)",
    Tool.POLYGON: "Polygon ROI: click the corners; double-click, Enter or a click on the first corner closes it",
    Tool.PROBE: "HU probe: click a point",
}


class Host(Protocol):
    """What :meth:`MeasurementController.attach` needs of the main window."""

    tools_menu: QMenu
    series_opened: Signal
    volume_loaded: Signal

    def addToolBar(self, area: Qt.ToolBarArea, toolbar: QToolBar) -> None: ...  # noqa: N802 (Qt's name)

    def add_dock(
        self,
        widget: QWidget,
        title: str,
        area: Qt.DockWidgetArea,
        *,
        min_width: int = 0,
        width: int | None = None,
    ) -> QDockWidget: ...


class MeasurementsPanel(QWidget):
    """The Measurements dock's content: a table (#, type, plane, value) and Delete / Undo buttons."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("measurements-panel")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        for column, mode in enumerate(
            (
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.Stretch,
            )
        ):
            header.setSectionResizeMode(column, mode)
        self.empty = QLabel("No measurements on this series. Pick a tool on the Measure toolbar.")
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: #909090;")
        self.delete_button = QPushButton("Delete")
        self.undo_button = QPushButton("Undo")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.undo_button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.empty)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)


class MeasurementController(QObject):
    """Tools, measurements per series, their layers and the dock. ``changed()``: the measurements or the
    selection changed."""

    changed = Signal()

    def __init__(
        self, layouts: LayoutController, volume: Callable[[], Volume | None], parent: QWidget
    ) -> None:
        super().__init__(parent)
        self.layouts = layouts
        self._volume = volume
        self.store = MeasurementStore()
        self.tool: Tool | None = None
        self.selected: int | None = None
        self._frame: tuple[tuple[str, bytes], SliceFrame] | None = None

        self.layers = [MeasurementLayer("1x1", layouts.view.canvas, self._view_geometry, self)]
        for kind, pane in layouts.mpr.panes.items():
            self.layers.append(
                MeasurementLayer(kind.value, pane.canvas, lambda k=kind: self._pane_geometry(k), self)
            )

        group = QActionGroup(self)
        self.pointer_action = QAction("Pointer", parent)
        self.pointer_action.setStatusTip("The normal pointer: select and move measurements (Esc)")
        self.tool_actions: dict[Tool | None, QAction] = {None: self.pointer_action}
        for tool in Tool:
            action = QAction(TOOL_NAMES[tool], parent)
            action.setStatusTip(TOOL_TIPS[tool])
            action.setToolTip(TOOL_TIPS[tool])
            self.tool_actions[tool] = action
        for tool, action in self.tool_actions.items():
            action.setCheckable(True)
            action.setActionGroup(group)
            action.triggered.connect(lambda _=False, t=tool: self.set_tool(t))
        self.pointer_action.setChecked(True)
        self.delete_action = QAction("Delete Measurement", parent)
        self.delete_action.setShortcut(QKeySequence(Qt.Key.Key_Delete))
        self.delete_action.triggered.connect(self.delete_selected)
        self.undo_action = QAction("Undo Measurement", parent)
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_action.triggered.connect(self.undo)

        self.panel = MeasurementsPanel()
        self.panel.table.itemSelectionChanged.connect(self._on_row_selected)
        self.panel.delete_button.clicked.connect(self.delete_selected)
        self.panel.undo_button.clicked.connect(self.undo)
        self._filling = False
        self.dock: QDockWidget | None = None
        self.toolbar: QToolBar | None = None
        self.refresh()

    def attach(self, window: Host) -> None:
        """Put the toolbar, the Tools ▸ Measure menu and the Measurements dock in ``window`` and follow its
        series."""
        toolbar = QToolBar("Measure")
        toolbar.setObjectName("toolbar-measure")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in self.tool_actions.values():
            toolbar.addAction(action)
        window.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)
        self.toolbar = toolbar
        menu = window.tools_menu.addMenu("&Measure")
        for action in self.tool_actions.values():
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.delete_action)
        menu.addAction(self.undo_action)
        self.dock = window.add_dock(
            self.panel, "Measurements", Qt.DockWidgetArea.LeftDockWidgetArea, min_width=300
        )
        window.series_opened.connect(self.on_series_changed)
        window.volume_loaded.connect(self.on_series_changed)

    # -- state ------------------------------------------------------------------------------------------------

    def current(self) -> MeasurementSet | None:
        """The measurements of the series on screen (None until its volume has loaded)."""
        volume = self._volume()
        return self.store.of(volume.stack_uid) if volume is not None else None

    def measurements(self) -> list[Measurement]:
        """The current series' measurements (the report's and the export's)."""
        current = self.current()
        return current.items if current is not None else []

    def view_annotations(self) -> tuple[tuple[PlaneRef, ...], tuple[Measurement, ...], str]:
        """The planes on screen (pane order), the current series' measurements and the layout in words: what
        the report's view page and the PNG of the current view show."""
        layouts = self.layouts
        if layouts.mpr_shown:
            kinds = [layouts.mpr.single] if layouts.mpr.single is not None else list(PlaneKind)
            geometries = [self._pane_geometry(k) for k in kinds]
            words = (
                f"{kinds[0].value} reformat alone"
                if len(kinds) == 1
                else "2×2 (axial, coronal and sagittal reformats and an overview)"
                if layouts.current == QUAD
                else "1×3 (axial, coronal and sagittal reformats)"
            )
            if layouts.mpr.slab is not None:
                words += f", shown as {layouts.mpr.slab.label()}"
        else:
            geometries, words = [self._view_geometry()], "1×1 (the acquired slice)"
        views = tuple(g.ref for g in geometries if g is not None)
        return views, tuple(self.measurements()), words

    def on_plane(self, ref: PlaneRef) -> list[Measurement]:
        """The current series' measurements on plane ``ref``."""
        current = self.current()
        return current.on_plane(ref) if current is not None else []

    def set_tool(self, tool: Tool | None) -> None:
        """Pick a tool (None: the pointer)."""
        self.tool = Tool(tool) if tool is not None else None
        self.tool_actions[self.tool].setChecked(True)
        cursor = Qt.CursorShape.CrossCursor if self.tool is not None else Qt.CursorShape.ArrowCursor
        for layer in self.layers:
            layer.cancel()
            layer.canvas.viewport().setCursor(cursor)

    def add(self, m: Measurement) -> Measurement:
        """Keep a new measurement on the current series and select it."""
        current = self.current()
        if current is None:
            return m
        m = current.add(m)
        self.selected = m.id
        self.refresh()
        return m

    def update(self, m: Measurement) -> None:
        """A measurement moved or resized."""
        current = self.current()
        if current is not None and current.get(m.id) is not None:
            current.update(m)
            self.refresh()

    def select(self, ident: int | None) -> None:
        """Select a measurement (None: none)."""
        if ident != self.selected:
            self.selected = ident
            self.refresh()

    def delete_selected(self) -> None:
        """Del: delete the selected measurement."""
        current = self.current()
        if current is not None and self.selected is not None and current.remove(self.selected):
            self.selected = None
            self.refresh()

    def undo(self) -> None:
        """Ctrl+Z: take back the last change of the current series' measurements."""
        current = self.current()
        if current is not None and current.undo():
            if self.selected is not None and current.get(self.selected) is None:
                self.selected = None
            self.refresh()

    def on_series_changed(self, _uid: str = "") -> None:
        """Another series (or its volume loaded): its own measurements are listed."""
        self.selected = None
        for layer in self.layers:
            layer.cancel()
        self.refresh()

    def refresh(self) -> None:
        """Repaint every pane and fill the list again."""
        current = self.current()
        self.delete_action.setEnabled(self.selected is not None)
        self.undo_action.setEnabled(current is not None and current.can_undo)
        self.panel.delete_button.setEnabled(self.delete_action.isEnabled())
        self.panel.undo_button.setEnabled(self.undo_action.isEnabled())
        self._fill_table(current.items if current is not None else [])
        for layer in self.layers:
            layer.canvas.viewport().update()
        self.changed.emit()

    # -- the list ---------------------------------------------------------------------------------------------

    def _fill_table(self, items: list[Measurement]) -> None:
        table = self.panel.table
        self._filling = True
        try:
            table.setRowCount(len(items))
            for row, m in enumerate(items):
                plane = m.plane.title().replace(" ", "\n", 1) if m.plane.name != ACQUIRED else m.plane.title()
                cells = (str(m.id), SHORT_NAMES[m.tool], plane, "\n".join(m.label_lines()))
                for column, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    item.setData(Qt.ItemDataRole.UserRole, m.id)
                    item.setToolTip(f"{TOOL_NAMES[m.tool]} · {m.plane.title()} · {m.value_text()}")
                    table.setItem(row, column, item)
                if m.id == self.selected:
                    table.selectRow(row)
            if self.selected is None:
                table.clearSelection()
            table.resizeRowsToContents()
        finally:
            self._filling = False
        self.panel.empty.setVisible(not items)

    def _on_row_selected(self) -> None:
        if self._filling:
            return
        rows = self.panel.table.selectionModel().selectedRows()
        if not rows:
            return
        item = self.panel.table.item(rows[0].row(), 0)
        ident = int(item.data(Qt.ItemDataRole.UserRole))
        current = self.current()
        m = current.get(ident) if current is not None else None
        if m is None:
            return
        self.show(m)
        self.select(ident)

    def show(self, m: Measurement) -> None:
        """Bring the measurement's plane on screen: its slice in 1 × 1, or the reformats through it."""
        layouts = self.layouts
        centre = np.mean(np.asarray(m.points, dtype=np.float64), axis=0)
        if m.plane.name == ACQUIRED:
            k = int(m.plane.slice_index or 0)
            if layouts.mpr_shown:
                layouts.mpr.set_point(centre)
                axial = self._pane_geometry(PlaneKind.AXIAL)
                if axial is not None and axial.ref.same_plane(m.plane):
                    return
                layouts.set_layout(SINGLE)
            layouts.view.set_slice(k)
            return
        if not layouts.mpr_shown:
            layouts.set_layout(THREE)
        layouts.mpr.set_point(centre)

    # -- the panes' planes ------------------------------------------------------------------------------------

    def _slice_frame(self, volume: Volume) -> SliceFrame:
        # Keyed by what the frame is made of, not id(volume): a series reloaded as it grows (a retrieve under way)
        # can get a new volume at the old one's address, with more slices.
        key = (volume.stack_uid, np.asarray(volume.positions, dtype=float).tobytes())
        if self._frame is None or self._frame[0] != key:
            self._frame = (key, SliceFrame.from_volume(volume))
        return self._frame[1]

    def _view_geometry(self) -> PaneGeometry | None:
        """The acquired slice on the 1 × 1 view (None until the series' volume has loaded)."""
        volume, view = self._volume(), self.layouts.view
        if (
            volume is None
            or volume.is_colour
            or view.display is None
            or view.stack_uid != volume.stack_uid
            or not 0 <= view.index < volume.n_slices
        ):
            return None
        frame = self._slice_frame(volume)
        grid = acquired_grid(frame, view.index)
        return PaneGeometry(
            plane_ref(grid, ACQUIRED, view.index),
            grid,
            volume.array[view.index],
            grid.dx / 2.0,
            grid.dy / 2.0,
            volume.units or "",
        )

    def _pane_geometry(self, kind: PlaneKind) -> PaneGeometry | None:
        """The reformatted plane in pane ``kind`` (None when it shows none)."""
        mpr = self.layouts.mpr
        image, volume = mpr.images.get(kind), mpr.volume
        if image is None or volume is None or mpr.reformat is None:
            return None
        grid = image.grid
        return PaneGeometry(
            plane_ref(grid, kind.value, slab=mpr.slab), grid, image.data, grid.x0, grid.y0, volume.units or ""
        )
