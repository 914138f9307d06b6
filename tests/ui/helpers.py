"""Helpers the GUI tests share: waiting for a folder, finding a series by its description, showing it."""

from __future__ import annotations

from pathlib import Path

from viewer.ui.main_window import MainWindow

#: How long a GUI test waits for indexing, loading or an analysis (generous: CI machines are shared).
TIMEOUT_MS = 60_000
#: The demo phantom's series and a small known-HU series in the shared test folder (``ui_study_dir``).
PHANTOM = "HEAD 5mm AXIAL"
OTHER = "Axial known HU"


def open_folder(qtbot, window: MainWindow, path: Path) -> object:
    """Open ``path`` and wait for its index; returns the index."""
    with qtbot.waitSignal(window.index_ready, timeout=TIMEOUT_MS) as blocker:
        window.open_paths([str(path)])
    return blocker.args[0]


def uid_of(window: MainWindow, description: str) -> str:
    """The first stack of the series described ``description`` in the window's index."""
    assert window.index is not None
    for series in window.index.series():
        if series.description == description:
            return series.stacks[0].uid
    raise AssertionError(f"no series {description!r} in the index")


def show_series(qtbot, window: MainWindow, uid: str) -> None:
    """Open stack ``uid`` and wait until its volume has loaded."""
    with qtbot.waitSignal(window.volume_loaded, timeout=TIMEOUT_MS, check_params_cb=lambda u: u == uid):
        window.open_stack(uid)
