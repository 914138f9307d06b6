"""Entry point of the GUI: ``gru-viewer [PATH]`` → :func:`run_app`.

``GRU_VIEWER_EXIT_AFTER_MS`` makes the window close itself that many milliseconds after it is shown (used by the
smoke test that starts ``main()`` in a subprocess, and handy for screenshots in scripts).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from viewer import __version__
from viewer.dicom import decode_pool
from viewer.resources import resource_path
from viewer.ui.compat import return_large_buffers_to_the_os
from viewer.ui.error_dialog import install_excepthooks
from viewer.ui.main_window import MainWindow
from viewer.ui.settings import APPLICATION, ORGANIZATION
from viewer.ui.termination import close_on_termination
from viewer.ui.theme import apply_dark_theme

EXIT_AFTER_ENV = "GRU_VIEWER_EXIT_AFTER_MS"
WARM_UP_DELAY_MS = 1500


def create_application(argv: Sequence[str] | None = None) -> QApplication:
    """The QApplication (created once), with the dark theme, the excepthooks and the allocator set up."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
    assert isinstance(app, QApplication)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("GRU Viewer")
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationVersion(__version__)
    # The name of packaging/gru-viewer.desktop: Wayland matches the window to its menu entry and icon by it.
    app.setDesktopFileName("gru-viewer")
    icon = resource_path("icons", "gru-viewer.png")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    apply_dark_theme(app)
    install_excepthooks()
    return_large_buffers_to_the_os()  # keeps memory bounded as volumes come and go through the cache
    return app


def exit_after_ms() -> int | None:
    """Milliseconds after which the app quits by itself, from ``$GRU_VIEWER_EXIT_AFTER_MS``; None when unset or not a number."""
    raw = os.environ.get(EXIT_AFTER_ENV, "").strip()
    try:
        return max(0, int(raw)) if raw else None
    except ValueError:
        return None


def run_app(paths: list[str]) -> int:
    """Open the main window on ``paths`` (folder, DICOMDIR or files) and run the event loop."""
    app = create_application()
    window = MainWindow()
    if window.opens_maximised:
        window.showMaximized()
    else:
        window.show()
    if paths:
        QTimer.singleShot(0, lambda: window.open_paths(paths))
    # The decoding processes start once the window is up and the first folder is on its way.
    QTimer.singleShot(WARM_UP_DELAY_MS, decode_pool.warm_up)
    delay = exit_after_ms()
    if delay is not None:
        QTimer.singleShot(delay, window.close)
    window.closing.connect(app.quit)
    close_on_termination(window)
    try:
        return int(app.exec())
    finally:
        decode_pool.close()
