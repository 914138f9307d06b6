"""File ▸ Query PACS…: search, expand, retrieve and cancel against the test PACS, on workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pacs.conftest import dimse_node
from viewer.pacs.nodes import NodeBook

pytestmark = pytest.mark.gui


@pytest.fixture
def dialog(pacs, qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from viewer.ui.pacs_dialog import PacsQueryDialog
    from viewer.ui.workers import WorkerPool

    monkeypatch.setenv("GRU_VIEWER_DATA_DIR", str(tmp_path / "data"))
    book = NodeBook()
    book.put(dimse_node())
    book.put(dimse_node(name="wrong-ae", ae_title="NOPE"))
    pool = WorkerPool()
    dlg = PacsQueryDialog(pool, book)
    qtbot.addWidget(dlg)
    yield dlg
    dlg.reject()
    assert pool.shutdown()


def _search(qtbot, dlg, name: str = "") -> None:
    dlg.patient_name.setText(name)
    dlg.search_button.click()
    qtbot.waitUntil(lambda: not dlg.busy and dlg.search_button.isEnabled(), timeout=10_000)


def test_search_expand_and_retrieve_a_series(pacs, qtbot, dialog) -> None:
    _search(qtbot, dialog, "Pacs^*")
    assert dialog.tree.topLevelItemCount() == 2 and dialog.count_label.text() == "2 studies"
    alpha = next(
        dialog.tree.topLevelItem(i)
        for i in range(2)
        if dialog.tree.topLevelItem(i).data(0, 0x0100)[1] == pacs.studies["alpha"]
    )
    alpha.setExpanded(True)
    qtbot.waitUntil(lambda: alpha.childCount() == 2, timeout=10_000)
    alpha.child(1).setSelected(True)
    assert dialog.retrieve_button.isEnabled()
    with qtbot.waitSignal(dialog.retrieved, timeout=20_000) as got:
        dialog.retrieve_button.click()
    folder = Path(got.args[0])
    assert (
        len(list(folder.rglob("*.dcm"))) == 4
        and "4 instances retrieved (C-GET)" in dialog.status_label.text()
    )
    qtbot.waitUntil(lambda: dialog.retrieve_button.isEnabled(), timeout=5_000)


def test_a_failure_is_a_sentence_in_the_dialog(qtbot, dialog) -> None:
    dialog.node_combo.setCurrentIndex(1)
    _search(qtbot, dialog)
    assert "rejected the association" in dialog.status_label.text()
    dialog.date_from.setText("2024-13-40")
    dialog.search_button.click()
    assert "YYYY-MM-DD" in dialog.status_label.text()


def test_cancel_a_retrieve(pacs, qtbot, dialog, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from viewer.pacs import dimse

    _search(qtbot, dialog, "Pacs^Al*")
    dialog.tree.topLevelItem(0).setSelected(True)
    original = dimse._Receiver.on_store

    def slow_store(self, event):  # a slow link: long enough to press Cancel halfway
        time.sleep(0.15)
        return original(self, event)

    monkeypatch.setattr(dimse._Receiver, "on_store", slow_store)
    dialog.retrieve_button.click()
    qtbot.waitUntil(lambda: dialog.progress_bar.value() >= 1, timeout=10_000)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.retrieve_button.isEnabled(), timeout=15_000)
    assert "cancelled" in dialog.status_label.text().lower()


def test_file_menu_query_pacs_shows_the_series_while_it_arrives(
    pacs, qtbot, tmp_path: Path, monkeypatch
) -> None:
    import time

    import pydicom

    from viewer.ui.app import create_application
    from viewer.ui.main_window import MainWindow
    from viewer.ui.settings import ViewerSettings

    monkeypatch.setenv("GRU_VIEWER_DATA_DIR", str(tmp_path / "data"))
    original = pydicom.dataset.Dataset.save_as

    def slow_save(self, *args, **kwargs):  # a slow link: 0.25 s per instance
        original(self, *args, **kwargs)
        time.sleep(0.25)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", slow_save)
    NodeBook().put(dimse_node())
    create_application()
    window = MainWindow(ViewerSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    action = next(a for a in window.file_menu.actions() if a.text() == "Query &PACS…")
    assert action.shortcut().toString() == "Ctrl+Shift+P"
    action.trigger()
    dlg = window.pacs_dialog
    _search(qtbot, dlg, "Pacs^B*")
    dlg.tree.topLevelItem(0).setSelected(True)
    dlg.retrieve_button.click()
    qtbot.waitUntil(lambda: window.current_uid is not None, timeout=20_000)
    assert (
        not dlg.retrieve_button.isEnabled()
    )  # the retrieve still runs: the first slices show before the rest
    assert 1 <= window.index.n_files < 6
    qtbot.waitUntil(lambda: dlg.retrieve_button.isEnabled(), timeout=20_000)
    qtbot.waitUntil(
        lambda: (v := window.current_volume()) is not None and v.array.shape[0] == 6, timeout=10_000
    )
    assert (
        window.index.n_files == 6 and window.index.n_cached == 6
    )  # opened from the index the retrieve filled
    dlg.reject()
    window.close()
