"""The analysis on the image, not only in the dock: the slider strip, the corner text and the cursor readout follow
the slice and the overlay switch; the dock's signed hidden-state plot; the saliency scaling switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from viewer.analysis.display import HIDDEN_COLOUR_LIMIT, format_contribution
from viewer.ui.image_view import track_colour
from viewer.ui.main_window import MainWindow

from .helpers import OTHER, PHANTOM, TIMEOUT_MS, open_folder, show_series, uid_of

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


@pytest.fixture
def analysed(qtbot, window: MainWindow, ui_study_dir: Path) -> MainWindow:
    """The shared window with the demo phantom on screen, analysed by the small random model."""
    open_folder(qtbot, window, ui_study_dir)
    qtbot.waitUntil(lambda: not window.loading, timeout=TIMEOUT_MS)
    uid = uid_of(window, PHANTOM)
    if window.current_uid != uid or window.current_volume() is None:
        show_series(qtbot, window, uid)
    with qtbot.waitSignal(window.analysis.result_shown, timeout=TIMEOUT_MS):
        QTest.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    return window


def _corner(window: MainWindow) -> list[str]:
    return list(window.view.canvas.annotations.corners.get("bl", []))


def _hover(qtbot, window: MainWindow) -> str:
    """Move the mouse over the middle of the image; the status bar's value readout."""
    view = window.view
    display = view.display
    assert display is not None
    where = view.pixel_to_viewport(display.rows / 2, display.columns / 2).toPoint()
    QTest.mouseMove(view.canvas.viewport(), where)
    qtbot.waitUntil(lambda: window.value_label.text() != "", timeout=5000)
    return window.value_label.text()


def test_strip_corner_and_readout_follow_the_slice_and_the_overlay(qtbot, analysed: MainWindow) -> None:
    window, view = analysed, analysed.view
    result = window.analysis.shown_result
    combined = np.asarray(result.hidden_saliency["combined"])
    slider = view.slider
    assert slider.track is not None and np.allclose(slider.track, combined)
    assert slider.marks == list(result.key_slices) and "hidden-state evidence" in slider.toolTip()
    k = int(np.argmax(combined))
    expected = track_colour(float(combined[k]), HIDDEN_COLOUR_LIMIT)
    assert slider.track_colour_at(k) == expected
    assert slider.grab().width() > 0  # paints with the strip

    for k in (result.key_slices[0], 1):
        view.set_slice(k)
        corner = _corner(window)
        assert f"Im {k + 1}/{view.n_slices}" in corner
        z = result.gates["z_mean_forward"][k]
        assert any(line.startswith("Gates fwd/rev z ") and f"{z:.2f}" in line for line in corner)
        hidden = format_contribution(result.hidden_saliency["combined"][k])
        assert f"Hidden {hidden} logit" in corner
        assert f"hidden {hidden} logit" in _hover(qtbot, window)

    QTest.keyClick(view.canvas, Qt.Key.Key_O)  # the overlay switch hides all of it
    assert not window.analysis.overlay.enabled
    assert slider.track is None and slider.toolTip().startswith("Key slices")
    assert not any(line.startswith(("Gates", "Hidden")) for line in _corner(window))
    assert "logit" not in _hover(qtbot, window)
    QTest.keyClick(view.canvas, Qt.Key.Key_O)
    assert slider.track is not None and any(line.startswith("Hidden") for line in _corner(window))


def test_a_series_without_a_result_shows_none_of_it(qtbot, analysed: MainWindow) -> None:
    window = analysed
    show_series(qtbot, window, uid_of(window, OTHER))
    assert window.view.slider.track is None and window.view.slider.marks == []
    assert not any(line.startswith(("Gates", "Hidden")) for line in _corner(window))
    assert "logit" not in _hover(qtbot, window)


def test_the_hidden_plot_is_signed_on_a_fixed_axis(qtbot, analysed: MainWindow) -> None:
    panel = analysed.analysis.panel
    result = analysed.analysis.shown_result
    low, high = panel.saliency_plot.plot_item.getViewBox().viewRange()[1]
    assert low < -0.9 and high > 1.9  # at least −1 … +2 logit, whatever this series' values
    assert panel.zero_line.value() == 0.0
    assert "Hidden-state evidence" in panel.hidden_heading.text() and "logit" in panel.hidden_heading.text()
    assert "10%" in panel.hidden_heading.text()

    def legend() -> list[str]:
        names = panel.hidden_legend_names
        assert all(name in panel.hidden_legend.text() for name in names)
        return names

    assert legend() == ["forward", "reverse", "combined"]
    shown = panel.saliency_curves["combined"].getData()[1]
    assert np.allclose(shown, result.hidden_saliency["combined"])
    panel.hidden_combo.setCurrentIndex(panel.hidden_combo.findData("parts"))
    assert legend() == ["direct", "carried", "combined"]
    assert np.allclose(
        panel.saliency_curves["combined_carried"].getData()[1], result.hidden_saliency["combined_carried"]
    )
    assert not panel.saliency_curves["forward"].isVisible()

    k = result.key_slices[0]
    analysed.view.set_slice(k)
    value = format_contribution(result.hidden_saliency["combined"][k])
    assert f"hidden-state evidence {value}" in panel.slice_label.text()


def test_scaling_per_slice_or_to_the_series(qtbot, analysed: MainWindow) -> None:
    controller = analysed.analysis
    panel, overlay = controller.panel, controller.overlay
    result = controller.shown_result
    uid = analysed.current_uid
    k = result.key_slices[0]
    analysed.view.set_slice(k)
    assert controller.scaling == "series" and "scaled to the series" in overlay.legend.text.text()
    series_max = int(controller.display_map(uid, k).max())
    assert abs(series_max - round(255 * float(result.slice_probabilities[k]))) <= 1

    panel.scaling_combo.setCurrentIndex(panel.scaling_combo.findData("slice"))
    assert controller.scaling == "slice" and analysed.settings.saliency_scaling == "slice"
    assert "scaled per slice" in overlay.legend.text.text()
    assert int(controller.display_map(uid, k).max()) == 255
    assert np.array_equal(overlay.item.image, controller.display_map(uid, k))
    assert analysed.export.view_state().scaling == "slice"

    controller.set_scaling("series")  # Preferences
    assert panel.scaling_combo.currentData() == "series"
    assert int(controller.display_map(uid, k).max()) == series_max
