"""A file name that is not valid UTF-8 (Latin-1 or Windows media) neither stops a folder opening nor breaks the log."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from viewer.ui.main_window import MainWindow

from .helpers import TIMEOUT_MS, open_folder

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


@pytest.fixture
def odd_folder(tmp_path: Path, ui_study_dir: Path) -> Path:
    folder = tmp_path / "odd"
    shutil.copytree(ui_study_dir / "axial", folder)
    (folder / os.fsdecode(b"caf\xe9.txt")).write_text("not an image")
    return folder


def test_a_folder_with_non_utf8_names_opens_and_lists_them_readably(
    qtbot, window: MainWindow, odd_folder: Path
) -> None:
    with qtbot.waitSignal(window.volume_loaded, timeout=TIMEOUT_MS):
        index = open_folder(qtbot, window, odd_folder)
    assert index.stacks() and window.current_volume() is not None
    dialog = window.show_import_log()
    qtbot.waitExposed(dialog)
    shown = [dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())]
    assert any(text.endswith("caf\\xe9.txt") for text in shown), shown
    dialog.close()
