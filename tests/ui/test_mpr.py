"""The 1 × 3 reformat layout: panes linked by one patient point, gestures, the evidence, and the window's switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from viewer.dicom.reformat import PlaneKind
from viewer.synth.marker_volume import SPHERE_HU, Sphere, marker_volume
from viewer.ui.layouts import QUAD, SINGLE, THREE
from viewer.ui.main_window import MainWindow
from viewer.ui.mpr_pane import STRIP_INSET, STRIP_WIDTH
from viewer.ui.mpr_view import GRID, ROW, Evidence, MprView

from .helpers import TIMEOUT_MS, double_click, open_folder, show_series, uid_of, wheel

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]

SPHERE = Sphere((6.0, -5.0, 24.0), 5.0)


@pytest.fixture(params=["axial", "tilted"])
def mpr(request, qtbot) -> MprView:
    tilt = 20.0 if request.param == "tilted" else 0.0
    volume = marker_volume(24, 48, pixel_spacing=(0.9, 0.8), spacing_z=2.0, tilt_deg=tilt, spheres=[SPHERE])
    view = MprView()
    qtbot.addWidget(view)
    view.resize(1200, 450)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(volume, 12, "test")
    view.set_window(500, 1200)
    return view


def _viewport_point(view: MprView, kind: PlaneKind, point: np.ndarray) -> QPoint:
    assert view.reformat is not None
    x, y, _ = view.reformat.layout.axes[kind].to_view(point)
    return view.panes[kind].view_to_viewport(x, y).toPoint()


def test_click_in_one_plane_moves_the_others_through_the_sphere(qtbot, mpr: MprView) -> None:
    centre = np.asarray(SPHERE.centre)
    assert mpr.reformat is not None
    # Click the sphere's (x, z) in the coronal plane, then its (x, y) in the axial plane that took that height.
    for kind in (PlaneKind.CORONAL, PlaneKind.AXIAL):
        pane = mpr.panes[kind]
        qtbot.mouseClick(
            pane.canvas.viewport(), Qt.MouseButton.LeftButton, pos=_viewport_point(mpr, kind, centre)
        )
        qtbot.wait(QApplication.doubleClickInterval() + 50)
    assert np.linalg.norm(mpr.point - centre) < 1.0
    for kind in PlaneKind:
        image = mpr.images[kind]
        row, col = image.grid.pixel_of(mpr.point)
        assert image.data[round(row), round(col)] > SPHERE_HU / 2, kind
        x, y, _ = mpr.reformat.layout.axes[kind].to_view(mpr.point)
        p = mpr.panes[kind]
        assert (p.v_line.value(), p.h_line.value()) == pytest.approx((x, y))
    # The readout under the mouse is the sphere's, at its patient coordinates.
    infos = []
    mpr.cursor_moved.connect(infos.append)
    qtbot.mouseMove(
        mpr.panes[PlaneKind.CORONAL].canvas.viewport(), _viewport_point(mpr, PlaneKind.CORONAL, mpr.point)
    )
    info = [i for i in infos if i is not None][-1]
    assert info.value == pytest.approx(SPHERE_HU, rel=0.05)
    assert np.linalg.norm(np.asarray(info.patient) - mpr.point) < 1.5


def test_scrolling_a_plane_moves_its_line_in_the_others(qtbot, mpr: MprView) -> None:
    before = mpr.point.copy()
    slices = []
    mpr.slice_changed.connect(slices.append)
    wheel(mpr.panes[PlaneKind.AXIAL].canvas.viewport(), -3)  # three slices on
    assert mpr.point[2] > before[2]
    assert mpr.point[:2] == pytest.approx(before[:2], abs=2.0)
    coronal = mpr.panes[PlaneKind.CORONAL]
    assert coronal.h_line.value() == pytest.approx(-mpr.point[2])
    assert slices and slices[-1] == mpr.nearest_slice
    wheel(mpr.panes[PlaneKind.SAGITTAL].canvas.viewport(), -2)
    assert mpr.panes[PlaneKind.AXIAL].v_line.value() == pytest.approx(mpr.point[0])
    assert mpr.point[0] < before[0]  # the sagittal plane's normal points right (-x)


def test_crosshair_drag_and_window_drag(qtbot, mpr: MprView) -> None:
    pane = mpr.panes[PlaneKind.CORONAL]
    viewport = pane.canvas.viewport()
    start = _viewport_point(mpr, PlaneKind.CORONAL, mpr.point)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 6):
        qtbot.mouseMove(viewport, start + QPoint(6 * step, -6 * step))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=start + QPoint(30, -30))
    moved = mpr.point.copy()
    assert moved[0] > 0 and moved[2] > 24.0 - 30  # dragged right (L) and up (S)
    qtbot.wait(QApplication.doubleClickInterval() + 50)  # two presses in a row would make a double-click
    windows = []
    mpr.window_changed.connect(lambda c, w: windows.append((c, w)))
    corner = QPoint(15, viewport.height() - 15)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=corner)
    for step in range(1, 6):
        qtbot.mouseMove(viewport, corner + QPoint(10 * step, -2 * step))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=corner + QPoint(50, -10))
    assert np.array_equal(mpr.point, moved)  # far from the crosshair: window/level, not the crosshair
    assert windows and windows[-1][1] > 1200
    lo, hi = mpr.panes[PlaneKind.SAGITTAL].image_item.getLevels()
    assert hi - lo == pytest.approx(mpr.width)


def test_double_click_shows_one_pane_and_back(qtbot, mpr: MprView) -> None:
    pane = mpr.panes[PlaneKind.SAGITTAL]
    viewport = pane.canvas.viewport()
    double_click(viewport, QPoint(viewport.width() // 2, viewport.height() // 2))
    assert mpr.single is PlaneKind.SAGITTAL
    assert pane.isVisible() and not mpr.panes[PlaneKind.AXIAL].isVisible()
    double_click(viewport, QPoint(viewport.width() // 2, viewport.height() // 2))
    assert mpr.single is None and all(p.isVisible() for p in mpr.panes.values())


def test_zoom_is_linked_and_planes_keep_true_aspect(qtbot, mpr: MprView) -> None:
    axial = mpr.panes[PlaneKind.AXIAL]
    axial.vb.scaleBy((0.5, 0.5))
    axial.vb.sigUserZoom.emit()
    scale = axial.mm_per_pixel()
    for pane in mpr.panes.values():
        assert pane.mm_per_pixel() == pytest.approx(scale, rel=1e-3)
        # Painting in screen pixels (the slice strip) maps mm without rounding to whole pixels.
        step = pane.view_to_viewport(1.0, 1.0) - pane.view_to_viewport(0.0, 0.0)
        assert step.y() == pytest.approx(1.0 / scale, rel=1e-2) and step.x() == pytest.approx(
            1.0 / scale, rel=1e-2
        )
        (x0, x1), (y0, y1) = pane.vb.viewRange()
        rect = pane.vb.boundingRect()
        assert (x1 - x0) / rect.width() == pytest.approx((y1 - y0) / rect.height(), rel=1e-3)
    coronal = mpr.images[PlaneKind.CORONAL]
    left, top, width, height = coronal.grid.rect()
    assert width == pytest.approx(48 * 0.8, abs=coronal.grid.dx)
    if mpr.reformat is not None and mpr.reformat.frame.normal[2] > 0.999:  # (a tilted stack reaches higher)
        assert height == pytest.approx(24 * 2.0, abs=2 * coronal.grid.dy + 0.1)  # 2 mm slices are 2 mm tall


def test_overlay_and_strip_follow_the_reformats(qtbot, mpr: MprView) -> None:
    assert mpr.reformat is not None
    k = mpr.nearest_slice
    assert k is not None
    maps = {k: np.full((48, 48), 255, np.uint8)}
    mpr.set_overlay(maps.get)
    assert "defined per acquired slice" in mpr.legend.text()
    coronal = mpr.panes[PlaneKind.CORONAL]
    assert coronal.overlay_item.isVisible()
    overlay = coronal.overlay_item.image
    assert overlay.shape == mpr.images[PlaneKind.CORONAL].data.shape
    rows = np.nonzero(overlay.max(axis=1) > 0)[0]
    ys = mpr.images[PlaneKind.CORONAL].grid.y0 + rows * mpr.images[PlaneKind.CORONAL].grid.dy
    bands = mpr.reformat.slice_bands(PlaneKind.CORONAL)
    assert bands is not None
    assert ys.min() >= bands.lo[k] - 1.0 and ys.max() <= bands.hi[k] + 1.0  # that slice's own thickness
    values = np.linspace(0, 1, mpr.reformat.frame.n_slices)
    mpr.set_evidence(Evidence(values, [3, 7], "strip"))
    assert coronal.canvas.strip is not None and coronal.canvas.strip.keys == [3, 7]
    assert mpr.panes[PlaneKind.AXIAL].canvas.strip is None  # the axial plane shows one slice at a time
    # The strip is painted from a pixmap kept while nothing but the crosshair moves: each cell in its colour.
    canvas = coronal.canvas
    shot = canvas.viewport().grab().toImage()
    cached = canvas._strip_cache
    assert cached is not None and cached[0] is canvas.strip
    x = round(canvas.viewport().width() - STRIP_INSET - STRIP_WIDTH / 2)
    strip = canvas.strip
    for cell in (2, len(strip.lo) // 2):
        y = round(coronal.view_to_viewport(0.0, float(strip.lo[cell] + strip.hi[cell]) / 2).y())
        assert shot.pixelColor(x, y).rgb() == strip.colours[cell].rgb()
    mpr.click(PlaneKind.AXIAL, *mpr.reformat.layout.axes[PlaneKind.AXIAL].to_view(mpr.point)[:2])
    canvas.viewport().repaint()
    assert canvas._strip_cache is cached  # reused across a crosshair move
    coronal.vb.scaleBy((0.5, 0.5))
    canvas.viewport().repaint()
    assert canvas._strip_cache is not cached  # drawn again for the new zoom
    mpr.set_overlay(None)
    assert not coronal.overlay_item.isVisible() and mpr.legend.text() == ""


def test_slab_mode_from_the_controls(qtbot, mpr: MprView) -> None:
    thin = mpr.images[PlaneKind.AXIAL].data.copy()
    mpr.slab_mode.setCurrentIndex(mpr.slab_mode.findText("MIP"))
    assert mpr.slab is not None and mpr.slab.thickness == 10.0
    thick = mpr.images[PlaneKind.AXIAL].data
    assert np.nanmax(thick) >= np.nanmax(thin)
    assert "MIP 10 mm" in mpr.panes[PlaneKind.AXIAL].canvas.annotations.corners["bl"]


def test_two_by_two_with_the_overview(qtbot, mpr: MprView) -> None:
    assert not mpr.overview.isVisible()
    mpr.set_arrangement(GRID)
    assert mpr.overview.isVisible() and all(p.isVisible() for p in mpr.panes.values())
    coronal = mpr.images[PlaneKind.CORONAL]
    overview = mpr.overview.image_item.image
    assert overview is not None and overview.shape == coronal.data.shape
    # The projection holds the sphere (brighter than the background where it lies, in x and z).
    row, col = coronal.grid.pixel_of(np.asarray(SPHERE.centre))
    assert overview[round(row), round(col)] > overview[round(row), 2] + 50
    assert mpr.overview.v_line.value() == pytest.approx(mpr.panes[PlaneKind.CORONAL].v_line.value())
    # A click in the overview moves the crosshair as one in the coronal pane does (x and z, not y).
    y_before = mpr.point[1]
    assert mpr.reformat is not None
    x, y, _ = mpr.reformat.layout.axes[PlaneKind.CORONAL].to_view(np.asarray(SPHERE.centre))
    qtbot.mouseClick(
        mpr.overview.canvas.viewport(),
        Qt.MouseButton.LeftButton,
        pos=mpr.overview.view_to_viewport(x, y).toPoint(),
    )
    assert mpr.point[0] == pytest.approx(SPHERE.centre[0], abs=1.0)
    assert mpr.point[2] == pytest.approx(SPHERE.centre[2], abs=2.0)
    assert mpr.point[1] == pytest.approx(y_before, abs=1.0)
    mpr.set_evidence(Evidence(np.linspace(0, 1, mpr.reformat.frame.n_slices), [2], "strip"))
    assert mpr.overview.canvas.strip is not None
    mpr.set_arrangement(ROW)
    assert not mpr.overview.isVisible() and all(p.isVisible() for p in mpr.panes.values())


def test_unlinked_panes_keep_their_own_window_and_zoom(qtbot, mpr: MprView) -> None:
    mpr.set_linked(False)
    windows = []
    mpr.window_changed.connect(lambda c, w: windows.append((c, w)))
    axial_levels = mpr.panes[PlaneKind.AXIAL].image_item.getLevels()
    mpr._on_window_drag(60.0, 0.0, PlaneKind.CORONAL)
    lo, hi = mpr.panes[PlaneKind.CORONAL].image_item.getLevels()
    assert hi - lo > mpr.width and windows == []  # only that pane, and the image view's window stays
    assert tuple(mpr.panes[PlaneKind.AXIAL].image_item.getLevels()) == pytest.approx(tuple(axial_levels))
    assert "W 1" in mpr.panes[PlaneKind.CORONAL].canvas.annotations.corners["br"][0]
    sagittal_scale = mpr.panes[PlaneKind.SAGITTAL].mm_per_pixel()
    axial = mpr.panes[PlaneKind.AXIAL]
    axial.vb.scaleBy((0.5, 0.5))
    axial.vb.sigUserZoom.emit()
    assert mpr.panes[PlaneKind.SAGITTAL].mm_per_pixel() == pytest.approx(sagittal_scale)
    # A window set from outside (a preset) applies to every pane again; linking again shares it.
    mpr.set_window(40.0, 80.0)
    assert tuple(mpr.panes[PlaneKind.CORONAL].image_item.getLevels()) == pytest.approx((0.0, 80.0))
    mpr.set_linked(True)
    mpr._on_window_drag(60.0, 0.0, PlaneKind.CORONAL)
    assert windows and tuple(mpr.panes[PlaneKind.AXIAL].image_item.getLevels()) == pytest.approx(
        tuple(mpr.panes[PlaneKind.CORONAL].image_item.getLevels())
    )


# -- in the window ----------------------------------------------------------------------------------------------


def test_layout_switch_follows_the_series_and_the_axial_view(
    qtbot, window: MainWindow, ui_study_dir: Path
) -> None:
    open_folder(qtbot, window, ui_study_dir)
    uid = uid_of(window, "Tilted known HU")
    show_series(qtbot, window, uid)
    window.view.set_slice(4)
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    layouts = window.layouts
    assert layouts.current == THREE and window.layouts.widget.currentWidget() is layouts.mpr
    mpr = layouts.mpr
    assert set(mpr.images) == set(PlaneKind)
    assert mpr.nearest_slice == 4
    # Letters on every edge; the coronal plane of a tilted series is a true coronal one.
    assert mpr.panes[PlaneKind.CORONAL].canvas.annotations.edges == {
        "left": "R",
        "right": "L",
        "top": "S",
        "bottom": "I",
    }
    # Scrolling the axial pane moves the image view's slice (what the analysis follows) once it rests.
    with qtbot.waitSignal(window.view.slice_changed, timeout=TIMEOUT_MS):
        wheel(mpr.panes[PlaneKind.AXIAL].canvas.viewport(), -2)
    assert window.view.index == mpr.nearest_slice
    # A preset and invert from the menus reach the reformats.
    window.apply_preset(0)
    assert (mpr.center, mpr.width) == (window.view.center, window.view.width)
    window.layouts.toggle_invert()
    assert mpr.invert == window.view.invert
    # The image view's slice moves the crosshair (e.g. a click in the analysis' slice list).
    window.view.set_slice(1)
    assert mpr.nearest_slice == 1
    # Another series while in 1 × 3: its reformats replace the first one's.
    other = uid_of(window, "Axial known HU")
    show_series(qtbot, window, other)
    assert mpr.volume is window.current_volume()
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert layouts.current == QUAD and layouts.quad_action.isChecked() and mpr.overview.isVisible()
    assert mpr.overview.image_item.image is not None
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert layouts.current == THREE and not mpr.overview.isVisible()
    # The preference: panes keep their own window and zoom.
    window.settings.mpr_linked = False
    window._apply_preferences()
    assert not mpr.linked
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert layouts.current == SINGLE and window.layouts.widget.currentWidget() is window.view
