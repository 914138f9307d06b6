"""The main window, driven as a radiologist would: open a study, pick series, scroll, window, point, cancel.

Headless (offscreen) and strict: a Qt warning fails the test, and so does a QThread left running (conftest).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication

from viewer.dicom.memory import MAX_SERIES_RAM_SHARE_ENV
from viewer.dicom.readers import load_stack
from viewer.ui.app import create_application
from viewer.ui.image_view import CANCELLED
from viewer.ui.main_window import MainWindow
from viewer.ui.settings import DEFAULT_PRESETS, ViewerSettings

from .helpers import TIMEOUT_MS, double_click, open_folder, show_series, uid_of, wheel

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    # The offscreen platform's notices about what it cannot do are not warnings the viewer causes.
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


@pytest.fixture
def study(qtbot, window: MainWindow, ui_study_dir: Path) -> MainWindow:
    """The window with the test folder indexed and its first series on screen."""
    with qtbot.waitSignal(window.volume_loaded, timeout=TIMEOUT_MS):
        open_folder(qtbot, window, ui_study_dir)
    return window


# -- opening and browsing ---------------------------------------------------------------------------------------


def test_open_demo_study_lists_every_stack_and_shows_the_first(qtbot, study: MainWindow) -> None:
    index = study.index
    assert index is not None
    listed = set(study.browser.stack_uids())
    assert listed == {s.uid for s in index.stacks()}
    assert len(listed) >= 6  # phantom, axial, tilted, slow, damaged, colour
    assert study.view.current_slice() is not None
    assert study.current_volume() is not None
    corners = study.view.canvas.annotations.corners
    assert any("Im 1/" in line for line in corners["bl"])
    assert any(line.startswith("W ") for line in corners["br"])
    assert study.windowTitle() == Path(study._opened_paths[0]).name  # Qt adds " — GRU Viewer" on screen


def test_phantom_series_opens_from_the_browser_with_enter_and_double_click(qtbot, study: MainWindow) -> None:
    uid = uid_of(study, "HEAD 5mm AXIAL")
    study.browser.select_stack(uid)
    tree = study.browser.tree
    tree.setFocus()
    with qtbot.waitSignal(study.volume_loaded, timeout=TIMEOUT_MS, check_params_cb=lambda u: u == uid):
        qtbot.keyClick(tree, Qt.Key.Key_Return)
    assert study.view.stack_uid == uid
    assert study.view.n_slices == 40
    assert "PHANTOM" in study.view.canvas.annotations.corners["tl"][0]

    other = uid_of(study, "Axial known HU")
    study.browser.select_stack(other)
    rect = tree.visualRect(tree.currentIndex())
    with qtbot.waitSignal(study.volume_loaded, timeout=TIMEOUT_MS, check_params_cb=lambda u: u == other):
        double_click(tree.viewport(), rect.center())
    assert study.view.stack_uid == other


def test_stacks_of_one_series_are_separate_entries(qtbot, study: MainWindow) -> None:
    series = next(s for s in study.index.series() if s.description == "Two planes")
    assert len(series.stacks) == 2
    texts = {}
    for stack in series.stacks:
        item = study.browser._stack_items[stack.uid]
        texts[stack.n_slices] = item.text()
        show_series(qtbot, study, stack.uid)
        assert study.view.n_slices == stack.n_slices
    assert "axial" in texts[8] and "coronal" in texts[4]
    assert study.view.canvas.annotations.edges["top"] == "S"  # the coronal stack: superior at the top


def test_filter_box_narrows_the_tree(qtbot, study: MainWindow) -> None:
    browser = study.browser
    qtbot.keyClicks(browser.filter_edit, "tilted")
    visible = browser.visible_stack_uids()
    assert visible == [uid_of(study, "Tilted known HU")]
    browser.filter_edit.clear()
    assert len(browser.visible_stack_uids()) == len(browser.stack_uids())


def test_thumbnails_are_made_for_readable_series(qtbot, study: MainWindow) -> None:
    readable = [uid_of(study, d) for d in ("HEAD 5mm AXIAL", "Axial known HU", "Colour capture")]
    qtbot.waitUntil(lambda: all(study.browser.has_thumbnail(u) for u in readable), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: study._thumb_thread is None, timeout=TIMEOUT_MS)
    assert not study.browser.has_thumbnail(uid_of(study, "Damaged series"))


# -- reading: slices, window, cursor ----------------------------------------------------------------------------


def test_wheel_and_keys_change_the_slice(qtbot, study: MainWindow) -> None:
    show_series(qtbot, study, uid_of(study, "HEAD 5mm AXIAL"))
    view = study.view
    viewport = view.canvas.viewport()
    seen: list[int] = []
    view.slice_changed.connect(seen.append)
    assert view.index == 0
    wheel(viewport, -1)
    assert view.index == 1
    wheel(viewport, -3)
    assert view.index == 4
    wheel(viewport, 1)
    assert view.index == 3
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, Qt.Key.Key_Down)
    assert view.index == 4
    qtbot.keyClick(view.canvas, Qt.Key.Key_Up)
    assert view.index == 3
    qtbot.keyClick(view.canvas, Qt.Key.Key_PageDown)
    assert view.index == 3 + view.page_size()
    qtbot.keyClick(view.canvas, Qt.Key.Key_End)
    assert view.index == 39
    qtbot.keyClick(view.canvas, Qt.Key.Key_Down)
    assert view.index == 39  # stays on the last slice
    qtbot.keyClick(view.canvas, Qt.Key.Key_Home)
    assert view.index == 0
    assert seen and seen[-1] == 0
    assert view.slider.value() == 0
    assert view.slice_label.text() == "1 / 40"
    assert np.array_equal(view.image_item.image, view.current_slice())


def test_left_drag_changes_window_and_level(qtbot, study: MainWindow) -> None:
    view = study.view
    centre, width = view.center, view.width
    viewport = view.canvas.viewport()
    start = QPoint(viewport.width() // 2, viewport.height() // 2)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 11):
        qtbot.mouseMove(viewport, start + QPoint(8 * step, 4 * step))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=start + QPoint(80, 40))
    assert view.width > width  # dragged right: wider window
    assert view.center > centre  # dragged down: higher level
    lo, hi = view.image_item.getLevels()
    assert hi - lo == pytest.approx(view.width)
    assert (lo + hi) / 2 == pytest.approx(view.center)


def test_presets_default_window_invert_and_reset(qtbot, study: MainWindow) -> None:
    view = study.view
    default = view.display.default_window
    study.activateWindow()
    view.canvas.setFocus()
    for key, preset in zip((Qt.Key.Key_1, Qt.Key.Key_4, Qt.Key.Key_6), (0, 3, 5), strict=True):
        qtbot.keyClick(view.canvas, key)
        assert (view.center, view.width) == (DEFAULT_PRESETS[preset].center, DEFAULT_PRESETS[preset].width)
    qtbot.keyClick(view.canvas, Qt.Key.Key_0)
    assert (view.center, view.width) == default
    qtbot.keyClick(view.canvas, Qt.Key.Key_I)
    assert view.invert and view.image_item.lut is not None
    view.vb.scaleBy((0.5, 0.5))
    qtbot.keyClick(view.canvas, Qt.Key.Key_2)
    qtbot.keyClick(view.canvas, Qt.Key.Key_R)
    assert not view.invert
    assert (view.center, view.width) == default
    viewport, display = view.canvas.viewport(), view.display
    fitted = min(viewport.width() / display.columns, viewport.height() / display.rows)  # square pixels here
    assert view.zoom_factor() == pytest.approx(fitted, rel=0.02)


def test_presets_are_editable_and_persist(qtbot, study: MainWindow) -> None:
    presets = study.settings.presets()
    presets[0] = type(presets[0])("Brain narrow", 35.0, 60.0)
    study.settings.set_presets(presets)
    study.apply_preset(0)
    assert (study.view.center, study.view.width) == (35.0, 60.0)
    assert ViewerSettings(study.settings.file_name).presets()[0].name == "Brain narrow"


def test_value_under_cursor_is_the_hu_at_that_pixel(qtbot, study: MainWindow) -> None:
    show_series(qtbot, study, uid_of(study, "Axial known HU"))
    view = study.view
    view.set_slice(3)
    row, column = 10, 20
    qtbot.mouseMove(view.canvas.viewport(), view.pixel_to_viewport(row, column).toPoint())
    expected_hu = -1000 + 10 * 3 + row + 2 * column  # what the fixture wrote
    assert study.value_label.text() == f"{expected_hu} HU"
    sign = {"R": -1, "L": 1, "A": -1, "P": 1, "I": -1, "S": 1}
    numbers = [
        sign[a] * float(v) for a, v in re.findall(r"([RLAPIS]) (\d+\.\d)", study.position_label.text())
    ]
    # axial_geometry centres the 64² image (0.5 mm pixels) on the z axis; slices every 5 mm from z = 0.
    expected = (-15.75 + column * 0.5, -15.75 + row * 0.5, 3 * 5.0)
    assert numbers == pytest.approx(expected, abs=0.051)
    qtbot.keyClick(view.canvas, Qt.Key.Key_Down)  # scrolling under a still mouse updates the value
    assert study.value_label.text() == f"{expected_hu + 10} HU"


def test_orientation_letters_axial_and_tilted(qtbot, study: MainWindow) -> None:
    show_series(qtbot, study, uid_of(study, "Axial known HU"))
    assert study.view.canvas.annotations.edges == {"right": "L", "left": "R", "top": "A", "bottom": "P"}
    show_series(qtbot, study, uid_of(study, "Tilted known HU"))
    # 20° tilt: the column direction is (0, cos 20°, -sin 20°), so the image bottom points posterior-inferior.
    assert study.view.canvas.annotations.edges == {"right": "L", "left": "R", "top": "AS", "bottom": "PI"}
    assert "tilt" in study.view.canvas.annotations.warning


def test_colour_series_is_shown_in_colour(qtbot, study: MainWindow) -> None:
    show_series(qtbot, study, uid_of(study, "Colour capture"))
    image = study.view.image_item.image
    assert image.ndim == 3 and image.shape[-1] == 3
    assert tuple(image[0, 0]) == (200, 0, 0)
    assert study.view.canvas.annotations.edges == {}  # no patient geometry, no letters
    qtbot.mouseMove(study.view.canvas.viewport(), study.view.pixel_to_viewport(40, 5).toPoint())
    assert study.value_label.text() == "RGB 200 180 0"


def test_overlays_stack_over_the_image_and_follow_the_slice(qtbot, study: MainWindow) -> None:
    """The place the Analyze step draws pixel saliency: an extra ImageItem per overlay, fed per slice."""
    show_series(qtbot, study, uid_of(study, "Axial known HU"))
    view = study.view
    lut = pg.colormap.get("inferno").getLookupTable(nPts=256)

    def saliency(k: int) -> np.ndarray | None:
        return None if k == 0 else np.full((64, 64), float(k), np.float32)

    followed: list[int] = []
    view.slice_changed.connect(followed.append)
    item = view.set_overlay("saliency", saliency, opacity=0.4, levels=(0.0, 11.0), lut=lut)
    view.set_slice(0)
    assert not item.isVisible()
    view.set_slice(5)
    assert item.isVisible() and item.image[0, 0] == 5.0 and item.opacity() == pytest.approx(0.4)
    assert item.zValue() > view.image_item.zValue()
    assert item.mapRectToParent(item.boundingRect()) == view.image_item.mapRectToParent(
        view.image_item.boundingRect()
    )
    assert followed[-1] == 5
    view.set_overlay_opacity("saliency", 0.7)
    assert item.opacity() == pytest.approx(0.7)
    view.remove_overlay("saliency")
    assert item not in view.vb.addedItems


# -- errors ----------------------------------------------------------------------------------------------------


def test_damaged_series_shows_its_reason_and_the_rest_stays_usable(qtbot, study: MainWindow) -> None:
    show_series(qtbot, study, uid_of(study, "Tilted known HU"))  # cached: comes back after the error below
    uid = uid_of(study, "Damaged series")
    with qtbot.waitSignal(study.load_failed, timeout=TIMEOUT_MS) as blocker:
        study.open_stack(uid)
    message = blocker.args[1]
    assert "Could not load" in message
    annotations = study.view.canvas.annotations
    assert annotations.message == message and annotations.message_is_error
    assert not study.view.image_item.isVisible()
    assert any(e.stage == "load" for e in study.import_log.entries)
    show_series(qtbot, study, uid_of(study, "Axial known HU"))
    assert study.view.canvas.annotations.message == ""
    assert study.view.image_item.isVisible()
    study.open_stack(uid)
    qtbot.waitUntil(lambda: study.view.canvas.annotations.message_is_error, timeout=TIMEOUT_MS)
    show_series(qtbot, study, uid_of(study, "Tilted known HU"))
    assert not study.view.canvas.annotations.message_is_error
    assert study.view.image_item.isVisible()


def test_a_series_too_large_for_memory_is_refused_before_it_loads(
    qtbot, study: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_SERIES_RAM_SHARE_ENV, "1e-9")  # any series is "too large" now
    uid = uid_of(study, "Axial known HU")
    with qtbot.waitSignal(study.load_failed, timeout=TIMEOUT_MS) as blocker:
        study.open_stack(uid)
    message = blocker.args[1]
    assert re.search(r"this series needs \d+ kB, more than [0-9.e+-]+ % of this machine's memory", message)
    assert MAX_SERIES_RAM_SHARE_ENV in message
    assert study.view.canvas.annotations.message == message
    assert not study.view.image_item.isVisible()
    monkeypatch.delenv(MAX_SERIES_RAM_SHARE_ENV)
    show_series(qtbot, study, uid)
    assert study.view.image_item.isVisible()


def test_integer_and_float32_volumes_look_the_same(qtbot, study: MainWindow) -> None:
    show_series(qtbot, study, uid_of(study, "Axial known HU"))
    view = study.view
    volume = study.current_volume()
    assert volume is not None and volume.array.dtype == np.int16
    view.set_window(35.0, 170.0)

    def pixels() -> bytes:
        view.image_item.render()
        image = view.image_item.qimage
        assert image is not None
        return bytes(image.constBits())

    shown = pixels()
    view.set_volume(replace(volume, array=volume.array.astype(np.float32)))
    assert view.current_slice().dtype == np.float32
    assert pixels() == shown
    view.set_volume(replace(volume, array=volume.array.astype(np.int32)))
    assert pixels() == shown


def test_import_log_lists_skipped_files_with_reasons(qtbot, study: MainWindow) -> None:
    reasons = {Path(e.path).name: e.reason for e in study.import_log.entries if e.stage == "import"}
    assert "notes.txt" in reasons and "not DICOM" in reasons["notes.txt"]
    dialog = study.show_import_log()
    qtbot.waitExposed(dialog)
    table = dialog.table
    files = {table.item(r, 1).text().rsplit("/", 1)[-1] for r in range(table.rowCount())}
    assert "notes.txt" in files
    assert "skipped" in dialog.summary.text()
    dialog.close()


# -- loading: cancel, switch, cache ----------------------------------------------------------------------------


def test_a_load_can_be_cancelled_with_the_cancel_button(qtbot, study: MainWindow) -> None:
    uid = uid_of(study, "Slow JPEG 2000")
    study.cache.clear()
    study.open_stack(uid)
    assert study.loading and study.progress.isVisible()
    thread = study._load_thread
    qtbot.mouseClick(study.progress.cancel_button, Qt.MouseButton.LeftButton)
    assert not study.loading
    qtbot.waitUntil(lambda: thread.isFinished(), timeout=TIMEOUT_MS)
    assert thread.was_cancelled
    assert uid not in study.cache
    assert study.current_volume() is None
    assert not study.progress.isVisible()
    view = study.view
    missing = next(k for k in range(view.n_slices) if view._slice(k) is None)
    view.set_slice(missing)
    assert view.canvas.annotations.message == CANCELLED


def test_switching_series_mid_load_shows_only_the_new_one(qtbot, study: MainWindow) -> None:
    slow, new = uid_of(study, "Slow JPEG 2000"), uid_of(study, "Axial known HU")
    study.cache.clear()
    study.open_stack(slow)
    old_thread = study._load_thread
    qtbot.wait(30)  # let the slow load deliver its first slices
    with qtbot.waitSignal(study.volume_loaded, timeout=TIMEOUT_MS, check_params_cb=lambda u: u == new):
        study.open_stack(new)
    qtbot.waitUntil(lambda: old_thread.isFinished(), timeout=TIMEOUT_MS)
    qtbot.wait(50)  # anything the old load still had queued is delivered now, and must be dropped
    expected = load_stack(study.stack(new)).array
    view = study.view
    assert view.stack_uid == new and view.n_slices == 12
    for k in range(view.n_slices):
        assert np.array_equal(view._slice(k), expected[k])
    assert view.image_item.image.shape == (64, 64)
    assert slow not in study.cache or study.cache.get(slow).array.shape == (40, 256, 256)


def test_going_back_to_a_series_is_instant_from_the_cache(qtbot, study: MainWindow) -> None:
    a, b = uid_of(study, "Axial known HU"), uid_of(study, "Tilted known HU")
    show_series(qtbot, study, a)
    show_series(qtbot, study, b)
    with qtbot.waitSignal(study.volume_loaded, timeout=1000) as blocker:
        study.open_stack(a)
    assert blocker.signal_triggered and not study.loading  # emitted inside open_stack: no worker at all
    assert study.view.stack_uid == a


def test_drop_a_folder_onto_the_window_opens_it(qtbot, window: MainWindow, ui_study_dir: Path) -> None:
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(ui_study_dir / "axial"))])
    event = QDropEvent(
        QPointF(100, 100),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.volume_loaded, timeout=TIMEOUT_MS):
        window.dropEvent(event)
    assert window.view.display.series_description == "Axial known HU"
    assert window.settings.recent()[0] == str(ui_study_dir / "axial")


def test_cine_plays_and_stops(qtbot, study: MainWindow) -> None:
    view = study.view
    view.set_cine_fps(50)
    study.activateWindow()
    view.canvas.setFocus()
    start = view.index
    qtbot.keyClick(view.canvas, Qt.Key.Key_Space)
    assert view.cine_running
    qtbot.waitUntil(lambda: view.index != start, timeout=2000)
    qtbot.keyClick(view.canvas, Qt.Key.Key_Space)
    assert not view.cine_running
    assert study.settings.cine_fps == 50


def test_forget_indexed_studies_asks_then_deletes_the_header_index(
    qtbot, study: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox

    from viewer.dicom.cache import default_db_path

    db = default_db_path()
    assert db.exists()  # the scan of the opened folder wrote it
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *args: answers.pop(0))
    study.forget_index_action.trigger()
    assert db.exists() and answers == [QMessageBox.StandardButton.Yes]  # cancelled: nothing deleted
    study.forget_index_action.trigger()
    assert not db.exists() and "Header index deleted" in study.statusBar().currentMessage()
    assert study.current_volume() is not None  # the series on screen stays


def test_the_first_run_opens_maximised_then_as_it_was_left(qtbot, tmp_path: Path) -> None:
    create_application()
    settings = ViewerSettings(tmp_path / "first.ini")
    first = MainWindow(settings)
    qtbot.addWidget(first)
    screen = QGuiApplication.primaryScreen().availableGeometry()
    assert first.opens_maximised and first.geometry() == screen
    first.resize(900, 700)
    first.save_layout()
    again = MainWindow(ViewerSettings(tmp_path / "first.ini"))
    qtbot.addWidget(again)
    assert not again.opens_maximised and again.geometry() != screen
