"""The DICOM receiver of a window (Preferences ▸ PACS ▸ "Receive pushes"): starts and stops the C-STORE SCP of
:mod:`viewer.pacs.listener` with the window, and shows arrivals in the study browser.

The listener indexes arrivals on its own thread and calls back from there; the callback only emits a Qt signal,
which Qt queues to the GUI thread. There the arrivals are collected and, at most once per
:data:`REFRESH_INTERVAL_MS`, the window re-reads the store's study folder from the header index (on its index
worker, as any folder is opened), keeping the series on screen and reloading it if it has grown
(:class:`~viewer.ui.live_folder.LiveFolder`). When the window shows another folder it is left
alone and the status bar says what arrived; File ▸ Open Received Studies opens them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QStatusBar

from viewer.errors import ViewerError
from viewer.pacs.listener import StorageListener
from viewer.pacs.nodes import ListenerConfig
from viewer.pacs.store import LocalStore
from viewer.ui.error_dialog import report_exception
from viewer.ui.live_folder import LiveFolder, LiveWindow
from viewer.ui.settings import ViewerSettings

REFRESH_INTERVAL_MS = 1000

log = logging.getLogger(__name__)


class ReceiverWindow(LiveWindow, Protocol):
    """What the controller needs of the main window."""

    file_menu: QMenu

    def statusBar(self) -> QStatusBar: ...  # noqa: N802 (Qt's name)


class ReceiverController(QObject):
    """Runs the receiver while it is enabled in the settings.

    Signals
    -------
    received(int)
        Instances indexed since the last refresh (GUI thread, at most once per :data:`REFRESH_INTERVAL_MS`).
    """

    received = Signal(int)
    _indexed = Signal(list)  # emitted from the listener's indexing thread

    def __init__(
        self,
        window: ReceiverWindow,
        settings: ViewerSettings,
        store: LocalStore | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.window = window
        self.settings = settings
        self.store = store if store is not None else LocalStore()
        self.listener: StorageListener | None = None
        self.error: str = ""
        self._pending: list[Path] = []
        self._total = 0
        self.live = LiveFolder(window, self)
        self._indexed.connect(self._on_indexed, Qt.ConnectionType.QueuedConnection)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._refresh)
        self.open_action = QAction("Open &Received Studies", self)
        self.open_action.setStatusTip("Studies pushed to the DICOM receiver (Preferences ▸ PACS)")
        self.open_action.triggered.connect(self.open_received)
        menu = window.file_menu
        anchor = next((a for a in menu.actions() if a.menu() is not None), None)  # before Recent
        menu.insertAction(anchor, self.open_action)

    @property
    def folder(self) -> Path:
        """The folder holding every received study (what the browser shows of them)."""
        return self.store.root / "studies"

    @property
    def running(self) -> bool:
        return self.listener is not None and self.listener.running

    def apply(self, interactive: bool = False) -> bool:
        """Start, restart or stop the receiver as the settings say; whether that worked. Why it did not is in
        :attr:`error` and the status bar, and (``interactive``: just after Preferences ▸ OK) in a dialog."""
        try:
            text = self._apply()
        except ViewerError as exc:
            self.window.statusBar().showMessage(str(exc), 15000)
            if interactive:
                report_exception(exc)
            return False
        if self.running or interactive:
            self.window.statusBar().showMessage(text, 5000)
        return True

    def _apply(self) -> str:
        config: ListenerConfig | None = None
        if self.settings.receiver_enabled:
            try:
                config = self.settings.receiver_config().validated()
            except ViewerError as exc:
                self.stop()
                self.error = str(exc)
                raise
        if self.listener is not None and self.listener.config == config and self.running:
            return self.describe()
        self.stop()
        if config is None:
            return self.describe()
        listener = StorageListener(config, self.store, on_indexed=self._indexed.emit)
        try:
            listener.start()
        except ViewerError as exc:
            self.error = str(exc)
            raise
        self.listener, self.error = listener, ""
        return self.describe()

    def describe(self) -> str:
        """Whether and where the receiver listens."""
        if self.running and self.listener is not None:
            return f"DICOM receiver: {self.listener.config.describe()}"
        return f"DICOM receiver off ({self.error})" if self.error else "DICOM receiver off"

    def stop(self) -> None:
        """Close the port; files that arrived are indexed before this returns."""
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.stop()

    def open_received(self) -> None:
        """File ▸ Open Received Studies."""
        if not self.folder.is_dir():
            self.window.statusBar().showMessage("Nothing received yet", 5000)
            return
        self.window.open_paths([str(self.folder)])

    def _on_indexed(self, paths: list[Path]) -> None:
        self._pending.extend(paths)
        if not self._timer.isActive():
            self._timer.start(0 if not self._total else REFRESH_INTERVAL_MS)

    def _refresh(self) -> None:
        n, self._pending = len(self._pending), []
        if not n:
            return
        self._total += n
        # The received studies on screen (or nothing on screen): re-read them, keeping the series on screen.
        if self.live.refresh(self.folder, take_over=not self.window.opened_folders):
            self.window.statusBar().showMessage(f"{n} instance(s) received", 5000)
        else:
            self.window.statusBar().showMessage(
                f"{n} instance(s) received ({self._total} in all): File ▸ Open Received Studies", 10000
            )
        self.received.emit(n)
        self._timer.start(REFRESH_INTERVAL_MS)  # the next refresh no sooner than this
