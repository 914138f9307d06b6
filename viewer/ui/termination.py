"""SIGTERM and SIGINT close the window as its close button does, instead of killing the viewer mid-way.

A desktop session sends SIGTERM at logout, a terminal sends SIGINT on Ctrl+C (``make run``), a process manager
sends SIGTERM to stop the app. Python's default handling ended the process at once: settings unsaved, jobs not
cancelled, and the decoding processes' semaphores left behind (``resource_tracker: There appear to be 5 leaked
semaphore objects``). Here each signal asks the window to close, which runs the usual shutdown.

Python runs a signal handler only when the interpreter gets control, and Qt's event loop can sit in C++ for as
long as nothing happens; :func:`signal.set_wakeup_fd` writes a byte to a socket when a signal arrives, and a
:class:`QSocketNotifier` on its other end wakes the loop, so the handler runs at once without a polling timer.
"""

from __future__ import annotations

import signal
import socket
import sys

from PySide6.QtCore import QObject, QSocketNotifier, QTimer
from PySide6.QtWidgets import QWidget

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Wakeup(QObject):
    """The socket pair and notifier that wake the event loop for a signal; lives as long as the window."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._notifier = QSocketNotifier(self._read.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno())
        window.destroyed.connect(self._restore)

    def _drain(self) -> None:
        try:
            while self._read.recv(64):
                pass
        except OSError:  # nothing more to read (non-blocking)
            pass

    def _restore(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)


def close_on_termination(window: QWidget) -> bool:
    """Have SIGTERM and SIGINT close ``window`` (its closeEvent, then the app's own exit); False where signals
    cannot be watched this way (not the main thread, or not POSIX)."""
    if sys.platform.startswith("win"):
        return False
    try:
        _Wakeup(window)
    except ValueError:  # set_wakeup_fd only works in the main thread
        return False
    for number in SIGNALS:
        signal.signal(number, lambda *_: QTimer.singleShot(0, window.close))
    return True
