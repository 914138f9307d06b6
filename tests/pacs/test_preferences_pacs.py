"""Preferences ▸ PACS: the node editor (add, edit, rename, remove, Test on a worker; secrets never shown back),
the receiver's settings, and a window whose receiver shows a pushed series in the browser."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.pacs.conftest import dimse_node
from viewer.pacs import testserver as orthanc
from viewer.pacs.credentials import FILE, SecretStore
from viewer.pacs.nodes import NodeBook

pytestmark = pytest.mark.gui


@pytest.fixture
def editor(qtbot):
    from viewer.ui.pacs_preferences import PacsNodesEditor

    widget = PacsNodesEditor()
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def _fill(dialog, **fields) -> None:
    for key, value in fields.items():
        widget = getattr(dialog, key)
        if key in ("port", "move_port"):
            widget.setValue(value)
        elif key == "auth":
            widget.setCurrentIndex(widget.findData(value))
        else:
            widget.setText(value)


def test_add_edit_rename_remove_and_the_secret_is_never_shown(editor, qtbot, tmp_path) -> None:
    dialog = editor.edit(None)
    _fill(dialog, name="web", web_url="http://127.0.0.1:8043/dicom-web", auth="basic", username="gru")
    dialog.accept()  # no secret yet: refused, with the reason
    assert dialog.isVisible() and "needs a secret" in dialog.error_label.text()
    _fill(dialog, secret_edit="s3cret-value")
    dialog.accept()
    node = NodeBook().get("web")
    assert node.secret_store == FILE and SecretStore().get("web", FILE) == "s3cret-value"
    assert "s3cret-value" not in NodeBook().path.read_text()
    assert (
        "s3cret-value" not in editor.result_label.text()
        and "readable by you only" in editor.result_label.text()
    )
    assert editor.list.count() == 1 and "basic auth as gru" in editor.list.item(0).text()

    again = editor.edit(editor.selected())
    assert again.secret_edit.text() == "" and "stored" in again.secret_edit.placeholderText()
    _fill(again, name="web2", ae_title="A\\B", host="h")
    again.accept()
    assert again.isVisible() and "backslash" in again.error_label.text()
    _fill(again, ae_title="", host="")
    again.accept()  # renamed, secret left empty: the stored one moves with the node
    assert [n.name for n in NodeBook().load()] == ["web2"]
    assert SecretStore().get("web2", FILE) == "s3cret-value" and SecretStore().get("web", FILE) is None

    editor.remove()
    assert NodeBook().load() == [] and editor.list.count() == 0
    assert json.loads(SecretStore().file.read_text()) == {}


def test_test_runs_on_a_worker_and_says_how_it_went(pacs, editor, qtbot) -> None:
    book = NodeBook()
    book.put(dimse_node())
    book.put(dimse_node(name="wrong-ae", ae_title="NOPE"))
    editor.reload(select="orthanc")
    editor.test_button.click()
    assert editor.testing and editor.result_label.text() == "Testing orthanc…"  # the GUI thread goes on
    assert not editor.test_button.isEnabled()
    qtbot.waitUntil(lambda: not editor.testing, timeout=10_000)
    assert "C-ECHO to ORTHANC at 127.0.0.1:4243 succeeded" in editor.result_label.text()
    editor.reload(select="wrong-ae")
    editor.test_button.click()
    qtbot.waitUntil(lambda: not editor.testing, timeout=10_000)
    assert "rejected the association" in editor.result_label.text()
    assert "Called AE title not recognised" in editor.result_label.text()


def test_preferences_refuse_an_invalid_receiver_and_save_a_valid_one(qtbot, tmp_path: Path) -> None:
    from viewer.ui.preferences import PreferencesDialog
    from viewer.ui.settings import ViewerSettings

    settings = ViewerSettings(tmp_path / "settings.ini")
    assert not settings.receiver_enabled  # off by default
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.receiver.enabled.setChecked(True)
    dialog.accept()
    assert dialog.isVisible() and "accepts nobody" in dialog.receiver.error_label.text()
    assert dialog.tabs.currentIndex() == 1
    dialog.receiver.allowed.setText("ORTHANC, OTHER")
    dialog.receiver.port.setValue(orthanc.LISTEN_PORT)
    dialog.accept()
    assert not dialog.isVisible()
    again = ViewerSettings(tmp_path / "settings.ini")
    config = again.receiver_config()
    assert again.receiver_enabled and config.allowed == ("ORTHANC", "OTHER") and config.port == 11114


@pytest.fixture
def push_window(pacs, qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A main window whose receiver is on (GRULISTEN on the test port, accepting ORTHANC)."""
    from viewer.pacs.nodes import ListenerConfig
    from viewer.ui.app import create_application
    from viewer.ui.main_window import MainWindow
    from viewer.ui.settings import ViewerSettings

    monkeypatch.setenv("GRU_VIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("viewer.ui.receiver_controller.REFRESH_INTERVAL_MS", 200)
    monkeypatch.setattr("viewer.pacs.listener.INDEX_INTERVAL_S", 0.2)
    create_application()
    settings = ViewerSettings(tmp_path / "settings.ini")
    settings.receiver_enabled = True
    settings.set_receiver_config(
        ListenerConfig(orthanc.LISTEN_AET, "127.0.0.1", orthanc.LISTEN_PORT, (orthanc.AET,))
    )
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def test_a_push_shows_in_the_browser_without_blocking_the_window(pacs, push_window, qtbot) -> None:
    import threading

    w = push_window
    assert w.receiver.running and "DICOM receiver: GRULISTEN on 127.0.0.1:11114" in w.receiver.describe()
    done = threading.Event()
    pushing = threading.Thread(target=lambda: (pacs.server.push(pacs.series["alpha1"]), done.set()))
    t0 = time.monotonic()
    pushing.start()
    ticks = 0
    while not done.is_set() and time.monotonic() - t0 < 10:  # the event loop turns while files arrive
        qtbot.wait(20)
        ticks += 1
    pushing.join()
    assert ticks >= 2
    qtbot.waitUntil(lambda: w.index is not None and w.index.n_files == 8, timeout=10_000)
    assert w.opened_folders == (w.receiver.folder.resolve(),)
    qtbot.waitUntil(lambda: w.current_uid is not None, timeout=10_000)
    shown = w.current_uid
    pacs.server.push(pacs.series["alpha2"])  # a second series: the browser grows, the view stays
    qtbot.waitUntil(lambda: w.index is not None and w.index.n_files == 12, timeout=10_000)
    assert w.current_uid == shown and len(w._stacks) == 2
    qtbot.waitUntil(lambda: w.auto_open_first, timeout=2_000)  # restored once the refresh is shown
