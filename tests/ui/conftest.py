"""The one main-window fixture of the GUI tests (offscreen), with private settings and the small test model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from viewer.ui.app import create_application
from viewer.ui.error_dialog import relay
from viewer.ui.main_window import MainWindow
from viewer.ui.settings import ViewerSettings


@pytest.fixture
def window(qtbot, tmp_path: Path, model_file: Path) -> Iterator[MainWindow]:
    """A shown main window (1400 × 900) whose Analyze uses the small test model; dialogs closed after."""
    create_application()
    w = MainWindow(ViewerSettings(tmp_path / "settings.ini"))
    w.analysis.model_path = model_file
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    for dialog in list(relay().open_dialogs):
        dialog.done(0)
