"""Measurement tools in the window: made with the mouse in 1 × 1 and in each 1 × 3 pane, in mm and HU of the
true geometry; selected, moved, deleted, undone, listed, kept per series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from viewer.dicom.reformat import PlaneKind
from viewer.dicom.reformat.annotations import ACQUIRED, Tool
from viewer.dicom.reformat.slab import Slab, SlabMode
from viewer.ui.layouts import THREE
from viewer.ui.main_window import MainWindow

from .helpers import open_folder, show_series, uid_of

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]

SPACING = 0.5  # the known-HU series' pixel spacing (mm)


def _known(k: int, row: float, col: float) -> float:
    """The known-HU series' value at slice k, row, column (tests/conftest.py)."""
    return -1000.0 + 10 * k + row + 2 * col


def _pause(qtbot) -> None:
    qtbot.wait(QApplication.doubleClickInterval() + 50)  # two presses in a row would make a double-click


def _drag(qtbot, viewport, start: QPoint, end: QPoint) -> None:
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    for t in np.linspace(0.2, 1.0, 5):
        qtbot.mouseMove(viewport, start + (end - start) * float(t))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    _pause(qtbot)


def _click(qtbot, viewport, pos: QPoint) -> None:
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=pos)
    _pause(qtbot)


def _table(window: MainWindow) -> list[list[str]]:
    table = window.measurements.panel.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_measure_in_1x1_select_move_delete_undo(qtbot, window: MainWindow, ui_study_dir: Path) -> None:
    open_folder(qtbot, window, ui_study_dir)
    uid = uid_of(window, "Axial known HU")
    show_series(qtbot, window, uid)
    view, controller = window.view, window.measurements
    view.set_slice(5)
    viewport = view.canvas.viewport()
    at = view.pixel_to_viewport  # the centre of pixel (row, column) on screen

    # Line: 30 columns across = 15 mm.
    controller.tool_actions[Tool.LINE].trigger()
    _drag(qtbot, viewport, at(10, 10).toPoint(), at(10, 40).toPoint())
    (line,) = controller.measurements()
    assert line.tool == Tool.LINE and line.plane.name == ACQUIRED and line.plane.slice_index == 5
    assert line.values.length_mm == pytest.approx(30 * SPACING, abs=SPACING / 2)

    # Rectangle over the pixels of rows/columns 20…30 (edge to edge): mean of the known values, area in mm².
    controller.tool_actions[Tool.RECTANGLE].trigger()
    _drag(qtbot, viewport, at(19.5, 19.5).toPoint(), at(30.5, 30.5).toPoint())
    rect = controller.measurements()[-1]
    stats = rect.values.stats
    assert stats is not None and stats.mean == pytest.approx(_known(5, 25, 25), abs=1.0)
    assert stats.minimum == pytest.approx(_known(5, 20, 20), abs=1.0)
    assert stats.pixels == 11 * 11 and stats.area_mm2 == pytest.approx((11 * SPACING) ** 2, rel=0.02)

    # Probe and angle by clicks.
    controller.tool_actions[Tool.PROBE].trigger()
    _click(qtbot, viewport, at(50, 7).toPoint())
    assert controller.measurements()[-1].values.value == pytest.approx(_known(5, 50, 7), abs=1.0)
    controller.tool_actions[Tool.ANGLE].trigger()
    for row, col in ((40, 50), (40, 30), (20, 30)):
        _click(qtbot, viewport, at(row, col).toPoint())
    assert controller.measurements()[-1].values.angle_deg == pytest.approx(90.0, abs=1.0)
    # Polygon: three corners, closed by a click on the first; a draft dropped with Esc makes nothing.
    controller.tool_actions[Tool.POLYGON].trigger()
    for row, col in ((40, 10), (40, 20), (50, 15), (40, 10)):
        _click(qtbot, viewport, at(row, col).toPoint())
    polygon = controller.measurements()[-1]
    assert polygon.tool == Tool.POLYGON and len(polygon.points) == 3
    assert polygon.values.stats is not None
    assert polygon.values.stats.area_mm2 == pytest.approx(0.5 * (10 * SPACING) ** 2, rel=0.05)
    assert polygon.values.stats.mean == pytest.approx(_known(5, 43.3, 15), abs=2.0)
    _click(qtbot, viewport, at(5, 5).toPoint())
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, Qt.Key.Key_Escape)
    assert (
        controller.tool == Tool.POLYGON and not controller.layers[0].draft
    )  # the draft went, the tool stays
    controller.undo()
    assert [r[1] for r in _table(window)] == ["Line", "Rectangle", "Probe", "Angle"]
    assert _table(window)[0][2] == "Slice 6" and _table(window)[0][3] == "15.0 mm"

    # Esc: back to the pointer; a click on the line selects it, a drag of its end moves it.
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, Qt.Key.Key_Escape)
    assert controller.tool is None and controller.pointer_action.isChecked()
    _click(qtbot, viewport, at(10, 25).toPoint())
    assert controller.selected == line.id
    _drag(qtbot, viewport, at(10, 40).toPoint(), at(30, 10).toPoint())
    assert controller.measurements()[0].values.length_mm == pytest.approx(20 * SPACING, abs=SPACING / 2)
    assert len(controller.measurements()) == 4  # moved, not a new one

    # Del deletes the selected one; Ctrl+Z brings it back, then undoes the move.
    window.activateWindow()
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, Qt.Key.Key_Delete)
    assert len(controller.measurements()) == 3 and controller.selected is None
    qtbot.keyClick(view.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(controller.measurements()) == 4
    qtbot.keyClick(view.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert controller.measurements()[0].values.length_mm == pytest.approx(15.0, abs=SPACING / 2)

    # Another slice shows none of them; selecting a row in the list goes back to its slice.
    view.set_slice(2)
    geometry = controller.layers[0].geometry()
    assert geometry is not None and controller.layers[0].shown(geometry) == []
    controller.panel.table.selectRow(1)
    assert view.index == 5 and controller.selected == controller.measurements()[1].id

    # Kept per series: another series starts empty, this one keeps its four.
    other = uid_of(window, "Tilted known HU")
    show_series(qtbot, window, other)
    assert controller.measurements() == [] and _table(window) == []
    show_series(qtbot, window, uid)
    assert len(controller.measurements()) == 4


def test_measure_in_each_reformat_pane(qtbot, window: MainWindow, ui_study_dir: Path) -> None:
    open_folder(qtbot, window, ui_study_dir)
    uid = uid_of(window, "Axial known HU")
    show_series(qtbot, window, uid)
    controller, layouts = window.measurements, window.layouts
    window.view.set_slice(6)
    controller.tool_actions[Tool.PROBE].trigger()
    _click(qtbot, window.view.canvas.viewport(), window.view.pixel_to_viewport(30, 30).toPoint())
    layouts.set_layout(THREE)
    mpr = layouts.mpr
    # The slice's probe shows in the axial pane: the same plane of the patient.
    axial_layer = next(layer for layer in controller.layers if layer.name == "axial")
    geometry = axial_layer.geometry()
    assert geometry is not None and len(axial_layer.shown(geometry)) == 1

    # A line in the coronal pane: 10 mm straight down crosses two 5 mm slices.
    coronal = mpr.panes[PlaneKind.CORONAL]
    reformat = mpr.reformat
    assert reformat is not None
    axes = reformat.layout.axes[PlaneKind.CORONAL]
    x, y, _ = axes.to_view(mpr.point)
    controller.tool_actions[Tool.LINE].trigger()
    _drag(
        qtbot,
        coronal.canvas.viewport(),
        coronal.view_to_viewport(x, y - 5.0).toPoint(),
        coronal.view_to_viewport(x, y + 5.0).toPoint(),
    )
    line = controller.measurements()[-1]
    assert line.plane.name == "coronal"
    assert line.values.length_mm == pytest.approx(10.0, abs=coronal.mm_per_pixel())
    # An ellipse in the sagittal pane reads the reformatted values (linear between slices in z).
    sagittal = mpr.panes[PlaneKind.SAGITTAL]
    sx, sy, _ = reformat.layout.axes[PlaneKind.SAGITTAL].to_view(mpr.point)
    controller.tool_actions[Tool.ELLIPSE].trigger()
    _drag(
        qtbot,
        sagittal.canvas.viewport(),
        sagittal.view_to_viewport(sx - 3.0, sy - 3.0).toPoint(),
        sagittal.view_to_viewport(sx + 3.0, sy + 3.0).toPoint(),
    )
    ellipse = controller.measurements()[-1]
    assert ellipse.plane.name == "sagittal"
    assert ellipse.values.stats is not None and ellipse.values.stats.pixels > 10
    grid = mpr.images[PlaneKind.SAGITTAL].grid
    data = mpr.images[PlaneKind.SAGITTAL].data
    row, col = grid.pixel_of(mpr.point)
    assert ellipse.values.stats.mean == pytest.approx(float(data[round(row), round(col)]), abs=15.0)
    assert [r[2].split()[0] for r in _table(window)] == ["Slice", "Coronal", "Sagittal"]

    # Back in 1 × 1, a row of a coronal measurement brings the reformats back through it.
    layouts.set_layout("1x1")
    controller.panel.table.selectRow(1)
    assert layouts.current == THREE
    assert abs(float(mpr.point @ axes.w) - line.plane.depth) < 1e-6
    # The export takes the layout's planes and the measurements (the report's view page and the PNG).
    state = window.export.view_state()
    assert [v.name for v in state.views] == ["axial", "coronal", "sagittal"]
    assert [m.id for m in state.measurements] == [m.id for m in controller.measurements()]
    assert state.layout.startswith("1×3") and "3 measurements" in state.describe()

    # On a thick slab the measurement records the slab: its values are the slab's and the table says so.
    slab = Slab(SlabMode.MIP, 10.0)
    mpr.set_slab(slab)
    sx, sy, _ = reformat.layout.axes[PlaneKind.SAGITTAL].to_view(mpr.point)
    controller.tool_actions[Tool.PROBE].trigger()
    _click(qtbot, sagittal.canvas.viewport(), sagittal.view_to_viewport(sx, sy).toPoint())
    probe = controller.measurements()[-1]
    assert probe.plane.slab == slab and probe.plane.name == "sagittal"
    image = mpr.images[PlaneKind.SAGITTAL]
    row, col = (round(x) for x in image.grid.pixel_of(np.asarray(probe.points[0])))
    assert probe.values.value == pytest.approx(float(image.data[row, col]))
    assert "MIP 10 mm" in _table(window)[-1][2]
    state = window.export.view_state()
    assert all(v.slab == slab for v in state.views) and "MIP 10 mm" in state.layout
