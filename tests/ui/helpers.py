"""Helpers the GUI tests share: waiting for a folder, finding a series by its description, showing it, and the
mouse gestures (a double-click, the wheel) sent as a real mouse delivers them."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

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


def double_click(widget, pos: QPoint) -> None:
    """Press, release, double-click, release: the sequence a real double-click delivers to a widget.

    (QTest.mouseDClick does not make item views emit ``doubleClicked`` under Qt 6 offscreen.)
    """
    at = QPointF(pos)
    button = Qt.MouseButton.LeftButton
    for kind in (
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonRelease,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.MouseButtonRelease,
    ):
        held = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else button
        event = QMouseEvent(
            kind, at, QPointF(widget.mapToGlobal(pos)), button, held, Qt.KeyboardModifier.NoModifier
        )
        QApplication.sendEvent(widget, event)


def wheel(widget, steps: int) -> None:
    """Turn the mouse wheel over the centre of ``widget``: negative = towards the user (next slice)."""
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        centre,
        QPointF(widget.mapToGlobal(centre.toPoint())),
        QPoint(),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)
