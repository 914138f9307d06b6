"""The GUI's building blocks on their own: workers, cache, settings, error path, about box, small helpers."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from viewer.dicom.identifiers import display_date, display_name
from viewer.errors import CancelledError, ViewerError
from viewer.ui import error_dialog
from viewer.ui.about import NO_MODEL, about_html, intended_use, model_card_summary
from viewer.ui.app import create_application
from viewer.ui.cache import VolumeCache
from viewer.ui.canvas import nice_length
from viewer.ui.jobs import thumbnail_from_slice
from viewer.ui.main_window import MainWindow
from viewer.ui.settings import DEFAULT_PRESETS, MAX_RECENT, ViewerSettings, WindowPreset
from viewer.ui.workers import WorkerPool, WorkerThread, running_threads

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


class Recorder(QObject):
    """Receives worker signals on the GUI thread, as the window does."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    @Slot(object, object)
    def yielded(self, tag: object, value: object) -> None:
        self.events.append(("yielded", tag, value))

    @Slot(object, int, int, str)
    def progress(self, tag: object, done: int, total: int, text: str) -> None:
        self.events.append(("progress", tag, done, total, text))

    @Slot(object, object)
    def finished(self, tag: object, result: object) -> None:
        self.events.append(("finished", tag, result))

    @Slot(object, object)
    def errored(self, tag: object, exc: object) -> None:
        self.events.append(("errored", tag, exc))

    @Slot(object)
    def cancelled(self, tag: object) -> None:
        self.events.append(("cancelled", tag))

    def attach(self, thread: WorkerThread) -> None:
        thread.yielded.connect(self.yielded)
        thread.progress.connect(self.progress)
        thread.finished_ok.connect(self.finished)
        thread.errored.connect(self.errored)
        thread.cancelled.connect(self.cancelled)

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


def counting(n: int, *, progress, cancel) -> Iterator[int]:
    for i in range(n):
        progress(i + 1, n, f"item {i + 1}")
        yield i * i


def with_callback(n: int, *, progress, cancel, on_item) -> str:
    for i in range(n):
        on_item(i, f"slice {i}")
    return "done"


def failing(*, progress, cancel) -> None:
    raise ValueError("broken on purpose")


def waits_for_cancel(*, progress, cancel) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if cancel():
            raise CancelledError()
        time.sleep(0.002)
    raise AssertionError("never cancelled")


def run(qtbot, pool: WorkerPool, thread: WorkerThread) -> Recorder:
    recorder = Recorder()
    recorder.attach(thread)
    with qtbot.waitSignal(thread.stopped, timeout=10_000):
        pool.start(thread)
    qtbot.waitUntil(thread.isFinished, timeout=5000)
    return recorder


# -- workers ----------------------------------------------------------------------------------------------------


def test_generator_worker_emits_each_value_with_its_tag(qtbot) -> None:
    pool = WorkerPool()
    recorder = run(qtbot, pool, WorkerThread(counting, 4, tag="gen-1"))
    assert [e[2] for e in recorder.events if e[0] == "yielded"] == [0, 1, 4, 9]
    assert all(e[1] == "gen-1" for e in recorder.events)
    assert ("progress", "gen-1", 4, 4, "item 4") in recorder.events
    assert recorder.kinds()[-1] == "finished"


def test_callback_worker_and_result(qtbot) -> None:
    pool = WorkerPool()
    recorder = run(qtbot, pool, WorkerThread(with_callback, 3, tag=7, yield_to="on_item"))
    assert [e[2] for e in recorder.events if e[0] == "yielded"] == [
        (0, "slice 0"),
        (1, "slice 1"),
        (2, "slice 2"),
    ]
    assert recorder.events[-1] == ("finished", 7, "done")


def test_worker_error_reaches_the_gui_thread(qtbot) -> None:
    pool = WorkerPool()
    thread = WorkerThread(failing, tag="x")
    recorder = run(qtbot, pool, thread)
    kind, tag, exc = recorder.events[-1]
    assert (kind, tag) == ("errored", "x") and isinstance(exc, ValueError)
    assert thread.error is exc


def test_worker_cancel_and_pool_shutdown(qtbot) -> None:
    pool = WorkerPool()
    thread = WorkerThread(waits_for_cancel, tag="c")
    recorder = Recorder()
    recorder.attach(thread)
    pool.start(thread)
    assert thread in pool.active or thread.isRunning()
    with qtbot.waitSignal(thread.cancelled, timeout=5000):
        thread.cancel()
    assert thread.was_cancelled
    running = WorkerThread(waits_for_cancel, tag="d")
    pool.start(running)
    assert pool.shutdown(timeout_ms=5000)
    assert not running.isRunning() and not running_threads()
    late = WorkerThread(counting, 1)
    pool.start(late)
    assert not late.isRunning() and not late.isFinished()  # nothing starts after shutdown


# -- cache ------------------------------------------------------------------------------------------------------


class _Vol:
    def __init__(self, mb: int) -> None:
        self.array = np.zeros(mb * 2**18, np.float32)  # mb MiB

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


def test_cache_is_lru_and_bounded() -> None:
    cache = VolumeCache(max_bytes=10 * 2**20)
    for i in range(20):
        cache.put(f"s{i}", _Vol(3))
        assert cache.nbytes <= 10 * 2**20
    assert cache.keys() == ["s17", "s18", "s19"]
    assert cache.get("s17") is not None  # now most recent
    cache.put("s20", _Vol(3))
    assert cache.keys() == ["s19", "s17", "s20"]
    big = _Vol(30)
    cache.put("big", big)  # larger than the bound: kept alone, as it is on screen anyway
    assert cache.keys() == ["big"] and cache.get("big") is big
    cache.set_limit(1)
    assert len(cache) == 1


# -- settings ---------------------------------------------------------------------------------------------------


def test_settings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.ini"
    settings = ViewerSettings(path)
    assert settings.presets() == list(DEFAULT_PRESETS)
    presets = [WindowPreset(f"P{i}", float(i), 100.0 + i) for i in range(6)]
    settings.set_presets(presets)
    settings.cine_fps = 24
    settings.cache_mb = 512
    settings.last_folder = "/data/ct"
    for i in range(MAX_RECENT + 3):
        settings.add_recent(f"/data/{i}")
    settings.add_recent("/data/5")
    settings.sync()
    again = ViewerSettings(path)
    assert again.presets() == presets
    assert again.cine_fps == 24 and again.cache_mb == 512 and again.last_folder == "/data/ct"
    recent = again.recent()
    assert len(recent) == MAX_RECENT and recent[0] == "/data/5" and recent.count("/data/5") == 1


def test_default_settings_location_is_the_test_folder() -> None:
    import os

    folder = os.environ["GRU_VIEWER_SETTINGS_DIR"]
    assert ViewerSettings().file_name.startswith(folder)


def test_window_layout_persists(qtbot, tmp_path: Path) -> None:
    create_application()
    settings = ViewerSettings(tmp_path / "layout.ini")
    first = MainWindow(settings)
    qtbot.addWidget(first)
    first.resize(700, 500)  # inside the offscreen screen (800×600), so no clamping
    first.show()
    qtbot.waitExposed(first)
    first.browser_dock.hide()
    first.close()
    second = MainWindow(ViewerSettings(tmp_path / "layout.ini"))
    qtbot.addWidget(second)
    second.show()
    qtbot.waitExposed(second)
    assert (second.width(), second.height()) == (700, 500)
    assert not second.browser_dock.isVisible()
    second.close()


# -- error path -------------------------------------------------------------------------------------------------


def _close_dialogs() -> None:
    for dialog in list(error_dialog.relay().open_dialogs):
        dialog.close()


@pytest.mark.qt_no_exception_capture
def test_exception_in_a_slot_shows_a_dialog_and_the_app_goes_on(qtbot) -> None:
    create_application()
    error_dialog.install_excepthooks()
    assert error_dialog.hooks_installed()
    relay = error_dialog.relay()
    before = len(relay.shown)

    def broken_slot() -> None:
        raise RuntimeError("internal detail")

    QTimer.singleShot(0, broken_slot)
    qtbot.waitUntil(lambda: len(relay.shown) > before, timeout=5000)
    dialog = relay.open_dialogs[-1]
    assert "Something went wrong (RuntimeError)" in dialog.text()
    assert "Traceback" not in dialog.text() and "internal detail" not in dialog.text()
    assert "Traceback" in dialog.detailedText() and "internal detail" in dialog.detailedText()
    ticks: list[int] = []
    QTimer.singleShot(0, lambda: ticks.append(1))
    qtbot.waitUntil(lambda: ticks == [1], timeout=2000)  # the event loop still runs
    _close_dialogs()


def test_exception_in_a_thread_reaches_the_dialog_on_the_gui_thread(qtbot) -> None:
    create_application()
    error_dialog.install_excepthooks()
    relay = error_dialog.relay()
    before = len(relay.shown)

    def work() -> None:
        raise ViewerError("Could not read DICOM file", "the file ends before its pixel data", "/x/IM1.dcm")

    t = threading.Thread(target=work)
    t.start()
    t.join()
    qtbot.waitUntil(lambda: len(relay.shown) > before, timeout=5000)
    dialog = relay.open_dialogs[-1]
    assert dialog.text() == "Could not read DICOM file: /x/IM1.dcm — the file ends before its pixel data"
    assert dialog.detailedText() == ""
    _close_dialogs()


def test_plain_messages() -> None:
    assert error_dialog.plain_message(ViewerError("Cannot open", "no such folder", "/a")) == (
        "Cannot open: /a — no such folder"
    )
    assert "MemoryError" not in error_dialog.plain_message(MemoryError())
    error_dialog.report_exception(CancelledError())  # a cancel is not an error: nothing shown, nothing raised


# -- about ------------------------------------------------------------------------------------------------------


def test_model_card_summary(tmp_path: Path) -> None:
    assert model_card_summary(tmp_path) == NO_MODEL
    card = {
        "name": "slice-GRU head CT",
        "version": "1.0",
        "training_data": "synthetic phantoms only (`gru-viewer demo-data DIR`)",
        "metrics": {"auc": 0.9734, "n": 200},
        "intended_use": "Research only.",
    }
    (tmp_path / "slice_gru.json").write_text(json.dumps(card))
    summary = model_card_summary(tmp_path)
    assert summary.splitlines()[0] == "slice-GRU head CT 1.0"
    assert "Training data: synthetic phantoms only\n" in summary  # without the command that rebuilds them
    assert "auc: 0.973" in summary
    assert intended_use(tmp_path) == "Research only."
    card |= {
        "metrics": {"study_auroc": 0.98765, "sensitivity": 0.9, "studies": 240, "pointing_game": 0.5},
        "evaluation": {"data": "240 series (`gru-viewer demo-data DIR --seed 303`)", "pixel_method": "x"},
        "evaluations": [{"title": "Held out: the wide family", "metrics": {"study_auroc": 0.92}}],
    }
    (tmp_path / "slice_gru.json").write_text(json.dumps(card))
    lines = model_card_summary(tmp_path).splitlines()
    assert "Metrics: study AUROC 0.988, sensitivity 0.900 on 240 series" in lines
    assert "Held out: the wide family: study AUROC 0.920" in lines
    assert not any("pointing_game" in line or "pixel_method" in line for line in lines)  # the card has those
    html = about_html()
    assert "Intended use" in html and "<h3>GRU Viewer " in html


def test_the_about_box_names_the_shipped_models_training_runs_whole() -> None:
    """The shipped model came from a chain of runs: the run count closes the training line and must not be cut."""
    training = next(line for line in model_card_summary().splitlines() if line.startswith("Training data: "))
    assert training.startswith("Training data: synthetic head-CT phantoms, classic family")
    assert training.endswith("the model card lists each run's data)") and "…" not in training


# -- small helpers ----------------------------------------------------------------------------------------------


def test_helpers() -> None:
    assert display_name("DOE^JOHN^^^") == "DOE, JOHN"
    assert display_name("Anonymous") == "Anonymous"
    assert display_date("20240131") == "2024-01-31"
    assert [nice_length(x) for x in (0.7, 3.0, 19.0, 49.9, 120.0)] == [0.5, 2.0, 10.0, 20.0, 100.0]
    ct = np.full((512, 512), 40.0, np.float32)
    ct[:, :256] = -1000.0
    thumb = thumbnail_from_slice(ct, (40.0, 80.0), invert=False)
    assert thumb.shape == (102, 102)  # 512 / 5, at most 112 pixels
    # DICOM linear window: the centre value maps to 0.5 + 0.5 / (width - 1) of the range.
    assert thumb.dtype == np.uint8 and thumb[:, 0].max() == 0 and thumb[:, -1].min() == 129


def test_many_signal_emits_do_not_abort_the_interpreter() -> None:
    """PySide6 6.12.0 drops a reference to True per emit; viewer.ui guards against it (see viewer.ui.compat)."""
    from viewer.ui.compat import guard_signal_refcount_leak

    class Emitter(QObject):
        fired = Signal(object)

    emitter = Emitter()
    guard_signal_refcount_leak()
    for _ in range(50_000):  # more than True's references in a fresh interpreter
        emitter.fired.emit(None)
    assert sys.getrefcount(True) > 1000
