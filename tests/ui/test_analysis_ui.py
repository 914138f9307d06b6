"""Analyze in the window: result by signal, the results dock, the saliency overlay, cancel, switching, closing.

Headless and strict like tests/test_ui_window.py. A small random model stands in for the shipped weights (the
analysis is the same code either way); the one test that needs the trained weights skips without them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from viewer.analysis import run as analysis_run
from viewer.errors import ViewerError
from viewer.model import intended_use
from viewer.model.card import card_path_for, default_model_paths, read_card
from viewer.model.intended_use import UseWarning
from viewer.model.misses import GroupRate
from viewer.ui.error_dialog import relay
from viewer.ui.help_page import AnalysisHelpDialog
from viewer.ui.main_window import MainWindow
from viewer.ui.model_card_dialog import ModelCardDialog, model_card_text
from viewer.ui.preferences import PreferencesDialog
from viewer.ui.results_panel import format_probability
from viewer.ui.saliency_overlay import OVERLAY_NAME
from viewer.ui.settings import ViewerSettings
from viewer.ui.workers import running_threads

from .helpers import OTHER, PHANTOM, TIMEOUT_MS, show_series, uid_of

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


@pytest.fixture
def phantom(qtbot, window: MainWindow, ui_study_dir: Path) -> MainWindow:
    """The window with the test folder indexed and the demo phantom on screen."""
    with qtbot.waitSignal(window.index_ready, timeout=TIMEOUT_MS):
        window.open_paths([str(ui_study_dir)])
    qtbot.waitUntil(lambda: not window.loading, timeout=TIMEOUT_MS)
    uid = uid_of(window, PHANTOM)
    if window.current_uid != uid or window.current_volume() is None:
        show_series(qtbot, window, uid)
    return window


def analyze(qtbot, window: MainWindow) -> object:
    """Ctrl+R on the window; returns the result once it is on screen."""
    with qtbot.waitSignal(window.analysis.result_shown, timeout=TIMEOUT_MS):
        QTest.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    return window.analysis.shown_result


@pytest.fixture
def slow_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each key slice's pixel saliency takes 0.4 s more: long enough to act mid-analysis."""
    original = analysis_run.EXPLAINERS["gradient_x_input"]

    def slow(*args, **kwargs):
        time.sleep(0.4)
        return original(*args, **kwargs)

    monkeypatch.setitem(analysis_run.EXPLAINERS, "gradient_x_input", slow)


def wait_for_steps(qtbot, window: MainWindow, done: int) -> None:
    """Until the analysis reported ``done`` steps (1: preprocessed; 3: gates; then one per key slice)."""
    bar = window.progress.bar
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() >= done, timeout=TIMEOUT_MS)


# -- the result on screen ---------------------------------------------------------------------------------------


def test_analyze_shows_finding_plots_and_overlay(qtbot, phantom: MainWindow, small_config) -> None:
    controller = phantom.analysis
    assert not controller.dock.isVisible()
    result = analyze(qtbot, phantom)
    panel, view = controller.panel, phantom.view
    n = view.n_slices
    assert result is controller.results[phantom.current_uid] and result.matches(phantom.current_volume())
    assert controller.dock.isVisible() and panel.state == "result"
    assert panel.finding_label.text() == result.finding
    assert f"Probability {format_probability(result.probability)}" in panel.probability_label.text()
    assert f"threshold {format_probability(result.threshold)}" in panel.probability_label.text()
    assert "CPU" in panel.info_label.text() and not panel.notice_label.isVisible()
    assert len(panel.probability_curve.getData()[0]) == n
    assert list(panel.probability_curve.getData()[0][:2]) == [
        1.0,
        2.0,
    ]  # slice numbers as the viewer shows them
    assert {name for _, name in ((s, lbl.text) for s, lbl in panel.gate_legend.items)} == {
        "z forward",
        "z reverse",
        "r forward",
        "r reverse",
    }
    assert all(len(c.getData()[0]) == n for c in panel.gate_curves.values())
    assert panel.heatmap_image.image.shape == (small_config.hidden_size, n)
    panel.matrix_combo.setCurrentIndex(2)
    assert np.allclose(panel.heatmap_image.image, result.gate_matrices["r_forward"])
    assert panel.plots[0].plot_item.getAxis("bottom").labelText == "slice"
    assert view.slider.marks == list(result.key_slices)

    key = result.key_slices[0]
    view.set_slice(key)
    item = controller.overlay.item
    assert item is not None and item.isVisible() and item.zValue() > view.image_item.zValue()
    assert np.array_equal(item.image, controller.display_map(phantom.current_uid, key))
    strongest = round(255 * float(result.slice_probabilities[key]))  # scaled to the series: its probability
    assert item.image.shape == view.current_slice().shape and abs(int(item.image.max()) - strongest) <= 1
    assert controller.overlay.legend.isVisible()
    assert result.pixel_label in controller.overlay.legend.text.text()

    view.set_slice(3)  # the cursor follows the slice on screen
    assert all(plot.cursor.value() == 4 for plot in panel.plots)
    assert panel.slice_label.text().startswith(f"<b>Slice 4 / {n}</b>")


def test_a_result_lands_on_the_first_key_slice(qtbot, phantom: MainWindow) -> None:
    assert phantom.view.index == 0
    result = analyze(qtbot, phantom)
    assert result.key_slices and phantom.view.index == result.key_slices[0]


def test_a_reader_who_scrolled_meanwhile_stays_where_they_are(
    qtbot, phantom: MainWindow, slow_pixels
) -> None:
    QTest.keyClick(phantom, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    wait_for_steps(qtbot, phantom, 1)
    phantom.view.set_slice(5)
    with qtbot.waitSignal(phantom.analysis.result_shown, timeout=TIMEOUT_MS):
        pass
    assert phantom.view.index == 5


def test_the_jump_to_the_key_slice_can_be_turned_off(qtbot, phantom: MainWindow) -> None:
    phantom.settings.jump_to_key_slice = False
    analyze(qtbot, phantom)
    assert phantom.view.index == 0


def test_analyze_while_loading_starts_once_loaded(qtbot, phantom: MainWindow) -> None:
    uid = phantom.current_uid
    phantom.cache.clear()
    show_series(qtbot, phantom, uid_of(phantom, OTHER))
    phantom.cache.clear()
    phantom.open_stack(uid)
    assert phantom.loading and phantom.analysis.analyze()
    assert phantom.analysis.panel.state == "waiting"
    with qtbot.waitSignal(phantom.analysis.result_shown, timeout=TIMEOUT_MS):
        pass
    assert phantom.analysis.shown_result.matches(phantom.current_volume())


def test_a_stack_too_long_for_the_model_is_refused_from_its_headers(qtbot, phantom: MainWindow, monkeypatch):
    monkeypatch.setattr(intended_use, "MAX_SLICES", 10)  # the phantom has 28-40 slices
    uid = phantom.current_uid
    show_series(qtbot, phantom, uid_of(phantom, OTHER))
    phantom.cache.clear()
    phantom.open_stack(uid)
    assert phantom.loading
    assert not phantom.analysis.analyze()  # refused at once, without waiting for the pixels
    panel = phantom.analysis.panel
    assert panel.state == "refused" and "the model reads at most 10" in panel.state_label.text()


def test_intended_use_warnings_are_shown_in_plain_words(qtbot, phantom: MainWindow) -> None:
    show_series(qtbot, phantom, uid_of(phantom, OTHER))  # 64² of 0.5 mm, values far from head CT
    result = analyze(qtbot, phantom)
    label = phantom.analysis.panel.warnings_label
    assert result.warnings and label.isVisible()
    assert "intended use" in label.text()
    assert all(w.message.split(";")[0] in label.text() for w in result.warnings)


def test_a_series_outside_intended_use_is_not_assessed(qtbot, phantom: MainWindow) -> None:
    show_series(qtbot, phantom, uid_of(phantom, OTHER))  # 64² of 0.5 mm: a field of view far from a head
    result = analyze(qtbot, phantom)
    panel = phantom.analysis.panel
    assert not result.assessed
    assert panel.finding_label.text() == "Not assessed"
    assert "Probability" not in panel.probability_label.text()
    assert "Not assessed: outside the model's intended use" in panel.warnings_label.text()
    assert all(reason.split(";")[0] in panel.warnings_label.text() for reason in result.reasons)
    assert (
        panel.study_only_label.isVisible()
        and "For study only: outside intended use" in panel.study_only_label.text()
    )
    assert panel.probability_plot.isVisible() and panel.saliency_plot.isVisible()


def test_reasons_for_not_assessing_come_before_the_advisories(qtbot, phantom: MainWindow) -> None:
    show_series(qtbot, phantom, uid_of(phantom, OTHER))
    result = analyze(qtbot, phantom)
    advisory = UseWarning("advisory-test", "Slices are thicker than the model was trained on", False)
    mixed = dataclasses.replace(result, warnings=[advisory, *result.warnings])
    panel = phantom.analysis.panel
    panel._show_finding(mixed)
    text = panel.warnings_label.text()
    also = text.index("Also, for caution")
    assert all(text.index(r.split(";")[0]) < also for r in mixed.reasons)
    assert text.index(advisory.message) > also


def test_an_in_scope_series_shows_its_finding_without_the_study_label(qtbot, phantom: MainWindow) -> None:
    result = analyze(qtbot, phantom)
    panel = phantom.analysis.panel
    assert result.assessed and panel.finding_label.text() == result.finding
    assert "Probability" in panel.probability_label.text() and not panel.study_only_label.isVisible()


def test_a_negative_finding_names_what_the_model_misses_most(qtbot, phantom: MainWindow) -> None:
    result = analyze(qtbot, phantom)
    panel = phantom.analysis.panel
    weak = [GroupRate("contrast < +20 HU", "sensitivity", 35, 19, 19 / 35, 0.38, 0.70)]
    negative = dataclasses.replace(result, probability=0.0, threshold=0.5, known_misses=weak)
    panel._show_finding(negative)
    assert panel.misses_label.isVisible()
    assert "does not exclude a bleed" in panel.misses_label.text()
    assert "bleeds of contrast < +20 HU over brain (19 of 35 found)" in panel.misses_label.text()
    panel._show_finding(dataclasses.replace(negative, probability=0.9))  # a positive finding: not said
    assert not panel.misses_label.isVisible()
    panel._show_finding(dataclasses.replace(negative, known_misses=[]))  # a card without evaluations
    assert not panel.misses_label.isVisible()
    assert result.to_dict()["known_misses"] == [
        {"group": g.group, "series": g.series, "found": g.correct} for g in result.known_misses
    ]


def test_clicking_a_plot_or_a_key_slice_goes_to_that_slice(qtbot, phantom: MainWindow) -> None:
    result = analyze(qtbot, phantom)
    panel, view = phantom.analysis.panel, phantom.view
    plot = panel.saliency_plot
    scene = plot.plot_item.getViewBox().mapViewToScene(QPointF(7.0, 0.5))
    QTest.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=plot.mapFromScene(scene))
    assert view.index == 6
    panel.key_label.linkActivated.emit(f"slice:{result.key_slices[1]}")
    assert view.index == result.key_slices[1]


def test_overlay_toggles_with_o_and_follows_opacity_and_threshold(qtbot, phantom: MainWindow) -> None:
    result = analyze(qtbot, phantom)
    controller, view = phantom.analysis, phantom.view
    view.set_slice(result.key_slices[0])
    item = controller.overlay.item
    view.canvas.setFocus()
    QTest.keyClick(view.canvas, Qt.Key.Key_O)
    assert not item.isVisible() and not controller.overlay.legend.isVisible()
    assert not controller.panel.overlay_check.isChecked()
    QTest.keyClick(view.canvas, Qt.Key.Key_O)
    assert item.isVisible() and controller.overlay.legend.isVisible()
    controller.panel.opacity_slider.setValue(30)
    assert item.opacity() == pytest.approx(0.3)
    controller.panel.threshold_slider.setValue(80)
    lut = view.overlays[OVERLAY_NAME].lut
    assert lut[: int(0.79 * len(lut)), 3].max() == 0 and lut[-1, 3] == 255


def test_saliency_of_other_slices_is_computed_on_demand(qtbot, phantom: MainWindow) -> None:
    result = analyze(qtbot, phantom)
    controller, view = phantom.analysis, phantom.view
    uid = phantom.current_uid
    other = next(k for k in range(view.n_slices) if k not in result.key_slices)
    with qtbot.waitSignal(
        controller.saliency_ready, timeout=TIMEOUT_MS, check_params_cb=lambda u, k: k == other
    ):
        view.set_slice(other)
    assert controller.overlay.item.isVisible()
    assert np.array_equal(controller.overlay.item.image, controller.display_map(uid, other))
    assert not controller.overlay.legend.status.isVisible()


def test_results_are_kept_per_series(qtbot, phantom: MainWindow) -> None:
    result = analyze(qtbot, phantom)
    controller, view = phantom.analysis, phantom.view
    phantom_uid = phantom.current_uid
    show_series(qtbot, phantom, uid_of(phantom, OTHER))
    assert controller.shown_result is None and controller.panel.state == "empty"
    assert OVERLAY_NAME not in view.overlays and view.slider.marks == []
    with qtbot.waitSignal(controller.result_shown, timeout=1000):
        phantom.open_stack(phantom_uid)  # cached volume: the result is back at once, with no new analysis
    assert controller.shown_result is result and not controller.running


# -- running, cancelling, switching, closing --------------------------------------------------------------------


@pytest.mark.usefixtures("slow_pixels")
def test_cancel_mid_analysis_stops_within_a_second(qtbot, phantom: MainWindow) -> None:
    controller = phantom.analysis
    controller.analyze()
    thread = controller._thread
    wait_for_steps(qtbot, phantom, 4)
    assert controller.panel.state == "running" and phantom.progress.isVisible()
    t0 = time.perf_counter()
    qtbot.mouseClick(phantom.progress.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(thread.isFinished, timeout=5000)
    assert time.perf_counter() - t0 < 1.0
    assert thread.was_cancelled
    qtbot.wait(50)
    assert controller.panel.state == "cancelled" and controller.shown_result is None
    assert not phantom.progress.isVisible() and phantom.current_uid not in controller.results


@pytest.mark.usefixtures("slow_pixels")
def test_switching_series_mid_analysis_never_shows_the_old_result(qtbot, phantom: MainWindow) -> None:
    controller, view = phantom.analysis, phantom.view
    phantom_uid, other = phantom.current_uid, uid_of(phantom, OTHER)
    controller.analyze()
    wait_for_steps(qtbot, phantom, 1)
    with qtbot.waitSignal(controller.result_ready, timeout=TIMEOUT_MS):
        show_series(qtbot, phantom, other)
        view.set_slice(5)  # the window stays usable meanwhile
    qtbot.wait(50)
    assert view.stack_uid == other and controller.shown_result is None
    assert controller.panel.state == "empty" and OVERLAY_NAME not in view.overlays and view.slider.marks == []
    assert phantom_uid in controller.results  # kept for when the phantom comes back
    with qtbot.waitSignal(controller.result_shown, timeout=1000):
        phantom.open_stack(phantom_uid)
    assert controller.shown_result is controller.results[phantom_uid]


@pytest.mark.usefixtures("slow_pixels")
def test_closing_mid_analysis_exits_cleanly(qtbot, phantom: MainWindow) -> None:
    controller = phantom.analysis
    controller.analyze()
    thread = controller._thread
    wait_for_steps(qtbot, phantom, 1)
    t0 = time.perf_counter()
    phantom.close()
    assert time.perf_counter() - t0 < 3.0
    assert thread.isFinished() and thread.was_cancelled
    assert running_threads() == []


# -- devices, errors, preferences, help -------------------------------------------------------------------------


def test_gpu_failure_falls_back_to_cpu_with_a_notice(qtbot, phantom: MainWindow, gpu_out_of_memory) -> None:
    result = analyze(qtbot, phantom)
    panel = phantom.analysis.panel
    assert result.device.startswith("CPU") and result.device_notice
    assert panel.notice_label.isVisible() and "CPU" in panel.notice_label.text()
    assert "out of memory" in panel.notice_label.text()


def test_device_preference_reaches_the_analysis(qtbot, phantom: MainWindow, monkeypatch) -> None:
    asked: list[str] = []
    original = analysis_run.pick_device
    monkeypatch.setattr(analysis_run, "pick_device", lambda pref: asked.append(pref) or original("cpu"))
    dialog = PreferencesDialog(phantom.settings, phantom)
    assert dialog.device.currentData() == "auto"
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.accept()
    assert phantom.settings.analysis_device == "cpu"
    assert ViewerSettings(phantom.settings.file_name).analysis_device == "cpu"
    analyze(qtbot, phantom)
    assert asked == ["cpu"]


@pytest.mark.parametrize(
    "error",
    [ViewerError("Cannot analyse the series", "it holds colour images, not CT slices"), RuntimeError("boom")],
)
def test_a_failed_analysis_says_why_and_the_viewer_goes_on(
    qtbot, phantom: MainWindow, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(analysis_run, "run_analysis", failing)
    controller = phantom.analysis
    with qtbot.waitSignal(controller.failed, timeout=TIMEOUT_MS) as blocker:
        controller.analyze()
    message = blocker.args[1]
    assert "Traceback" not in message
    if isinstance(error, ViewerError):
        assert "colour images" in message
    else:
        assert "The analysis failed" in message and "RuntimeError" in message
    qtbot.waitUntil(lambda: bool(relay().open_dialogs), timeout=5000)
    dialog = relay().open_dialogs[-1]
    assert dialog.text() == message and not dialog.detailedText()
    assert controller.panel.state == "failed" and not phantom.progress.isVisible()
    phantom.view.set_slice(4)  # still usable
    assert phantom.view.index == 4


def test_the_shipped_models_card_shows_what_it_misses_in_tables(qtbot) -> None:
    title, markdown = model_card_text()
    card = read_card(default_model_paths().card)
    assert title == f"Model card: {card.name} {card.version}"
    assert "## Further evaluations" in markdown and "## Robustness" in markdown
    dialog = ModelCardDialog(title, markdown)
    qtbot.addWidget(dialog)
    text = dialog.browser.toPlainText()
    assert "Held out: the wide family" in text and "Limitations" in text and card.sha256 in text
    assert "| --- |" not in text and "\n## " not in text  # rendered tables and headings, not Markdown source
    assert dialog.browser.document().toHtml().count("<table") >= 5


def test_help_page_explains_gates_and_limits(qtbot, window: MainWindow) -> None:
    window.analysis.help_action.trigger()
    dialogs = window.findChildren(AnalysisHelpDialog)
    assert dialogs
    text = dialogs[-1].browser.toPlainText()
    assert "1 = keep the previous state" in text and "not proof" in text
    assert "synthetic phantoms" in text and "Not for diagnosis" in text
    dialogs[-1].close()


def test_help_opens_the_whole_card_of_the_model_analyze_uses(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    window.model_card_action.trigger()
    dialog = window.findChildren(ModelCardDialog)[-1]
    card = read_card(card_path_for(window.analysis.model_path))
    assert dialog.windowTitle() == f"Model card: {card.name} {card.version}"
    text = dialog.browser.toPlainText()
    assert card.sha256 in text and "Intended use" in text and "Integrity" in text and "## " not in text
    dialog.close()

    window.analysis.model_path = tmp_path / "elsewhere.safetensors"  # weights without a card beside them
    window.model_card_action.trigger()
    qtbot.waitUntil(lambda: bool(relay().open_dialogs), timeout=5000)
    message = relay().open_dialogs[-1].text()
    assert message.startswith("Cannot read the model card") and "elsewhere.card.json" in message
    assert "does not exist" in message and "Traceback" not in message


def test_probabilities_keep_their_digits() -> None:
    assert format_probability(0.8734) == "0.87" and format_probability(0.9987) == "0.999"
    assert format_probability(0.0262216) == "0.026" and format_probability(0.00041) == "0.00041"


def test_analyze_without_a_series_says_what_to_do(qtbot, window: MainWindow) -> None:
    assert window.analysis.analyze() is False
    assert "Open a series" in window.statusBar().currentMessage()


# -- the shipped weights ----------------------------------------------------------------------------------------


def test_default_weights_look_inside_the_bleed(qtbot, phantom: MainWindow, ui_study_dir: Path) -> None:
    """On a bleed slice of the demo phantom, the overlay's strongest pixel lies inside the bleed mask."""
    if not default_model_paths().weights.is_file():
        pytest.skip("the shipped weights resources/models/slice_gru_default.safetensors are not installed")
    from viewer.synth.labels import load_labels

    labels = load_labels(ui_study_dir / "phantom").studies[0]
    mask = labels.load_mask()
    phantom.analysis.model_path = None
    result = analyze(qtbot, phantom)
    controller, view = phantom.analysis, phantom.view
    assert mask.shape == phantom.current_volume().array.shape  # slices ascending, like the loaded volume
    bleed_slices = [k for k in range(mask.shape[0]) if mask[k].any()]
    k = max(bleed_slices, key=lambda i: int(mask[i].sum()))
    if controller.display_map(phantom.current_uid, k) is None:
        ready = controller.saliency_ready
        with qtbot.waitSignal(ready, timeout=TIMEOUT_MS, check_params_cb=lambda _u, i: i == k):
            view.set_slice(k)
    else:
        view.set_slice(k)
    strongest = np.unravel_index(int(np.argmax(np.abs(result.pixel_saliency[k]))), mask.shape[1:])
    assert mask[k][strongest], f"strongest saliency at {strongest} on slice {k + 1}, outside the bleed"
    drawn = controller.overlay.item
    # Scaled to the series (the default), a slice's strongest pixels are drawn at its bleed probability: here the
    # model is sure of the slice, so that pixel is drawn at (nearly) full strength.
    probability = float(result.slice_probabilities[k])
    assert probability > 0.9
    assert drawn.isVisible() and drawn.image[strongest] == round(255 * min(1.0, probability))


def test_cli_json_matches_the_result_on_screen(
    qtbot, phantom: MainWindow, ui_study_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    """``gru-viewer analyze --json`` on the same folder gives the same numbers as the window for that series."""
    import json

    from viewer.cli import main

    result = analyze(qtbot, phantom)
    out = tmp_path / "result.json"
    code = main(
        ["analyze", str(ui_study_dir / "phantom"), "--model", str(model_file), "--json", str(out), "-q"]
    )
    assert code == 0
    (doc,) = [
        r for r in json.loads(out.read_text())["results"] if r["series"]["stack_uid"] == phantom.current_uid
    ]
    assert doc["series"]["series_uid"] == result.identity.series_uid
    assert doc["probability"] == pytest.approx(result.probability, abs=1e-5)
    assert doc["threshold"] == pytest.approx(result.threshold)
    assert doc["key_slices"] == result.key_slices
    np.testing.assert_allclose(doc["slice_probabilities"], result.slice_probabilities, atol=1e-5)
    np.testing.assert_allclose(
        doc["hidden_saliency"]["combined"], result.hidden_saliency["combined"], atol=1e-5
    )
    for key, values in result.gates.items():
        np.testing.assert_allclose(doc["gates"][key], values, atol=1e-5)


# -- bench ------------------------------------------------------------------------------------------------------


def test_frame_time_bench_during_analysis(qtbot) -> None:
    from viewer.bench.gui import bench_analysis_frames

    out = bench_analysis_frames(n_slices=12, matrix=64, idle_frames=5)
    assert out["n_slices"] == 12 and out["matrix"] == [64, 64]
    for key in ("idle", "during_analysis_cold", "during_analysis_warm"):
        assert (
            out[key]["frames"] >= 1 and 0 < out[key]["median_ms"] <= out[key]["p95_ms"] <= out[key]["max_ms"]
        )
    assert out["during_analysis_warm"]["analysis_s"] > 0 and out["device"].startswith("CPU")
