"""The one path by which errors reach the user: excepthooks → a dialog on the GUI thread.

``install_excepthooks()`` sets ``sys.excepthook`` and ``threading.excepthook`` once (napari's habit), so an
exception in a slot or a thread is shown instead of aborting the app. The dialog says what happened in plain
words; the traceback is folded away under "Show Details" (MNELAB's error message). The log gets the exception
type and the code location only: messages may quote file names or header values, which can be patient data.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from viewer.errors import CancelledError, ViewerError

log = logging.getLogger(__name__)


def plain_message(exc: BaseException) -> str:
    """What to tell the user: a :class:`ViewerError`'s own message, otherwise a generic sentence."""
    if isinstance(exc, ViewerError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return (
            "Not enough memory for this operation. Close other series or lower the cache size in Preferences."
        )
    return f"Something went wrong ({type(exc).__name__}). The viewer is still usable; details are below."


def details_text(exc: BaseException) -> str:
    """The full traceback of ``exc``, for the dialog's folded details."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _log_without_message(exc: BaseException) -> None:
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(
        f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(frames[-4:])
    )
    log.error("unhandled %s at %s", type(exc).__name__, where or "?")


class ErrorDialog(QMessageBox):
    """A non-blocking message box: plain message on top, the traceback under "Show Details"."""

    def __init__(self, exc: BaseException, parent: QWidget | None = None, title: str = "GRU Viewer") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setIcon(QMessageBox.Icon.Warning if isinstance(exc, ViewerError) else QMessageBox.Icon.Critical)
        self.setText(plain_message(exc))
        if not isinstance(exc, ViewerError):
            self.setDetailedText(details_text(exc))
        self.setStandardButtons(QMessageBox.StandardButton.Ok)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)


class _Relay(QObject):
    """Carries exceptions from any thread to the GUI thread (queued signal)."""

    raised = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.raised.connect(self.show)
        self.open_dialogs: list[ErrorDialog] = []
        self.shown: list[BaseException] = []

    @Slot(object)
    def show(self, exc: BaseException) -> None:
        self.shown.append(exc)
        del self.shown[:-20]
        app = QApplication.instance()
        if app is None or len(self.open_dialogs) >= 3:  # a burst of errors must not bury the window
            return
        parent = app.activeWindow() if isinstance(app, QApplication) else None
        dialog = ErrorDialog(exc, parent)
        self.open_dialogs.append(dialog)
        dialog.finished.connect(lambda _r, d=dialog: self._closed(d))
        dialog.open()

    def _closed(self, dialog: ErrorDialog) -> None:
        if dialog in self.open_dialogs:
            self.open_dialogs.remove(dialog)


_relay: _Relay | None = None


def relay() -> _Relay:
    """The one object that carries errors from any thread to the GUI thread (made on first use)."""
    global _relay
    if _relay is None:
        _relay = _Relay()
        app = QApplication.instance()
        if app is not None:
            _relay.moveToThread(app.thread())
    return _relay


def report_exception(exc: BaseException) -> None:
    """Show ``exc`` to the user from any thread (cancels are not errors and are not shown)."""
    if isinstance(exc, CancelledError):
        return
    if not isinstance(exc, ViewerError):
        _log_without_message(exc)
    relay().raised.emit(exc)


def _sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    if exc.__traceback__ is None:
        exc = exc.with_traceback(tb)
    report_exception(exc)


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    report_exception(args.exc_value)


def install_excepthooks() -> None:
    """Install both hooks; idempotent (a hook already in place is not wrapped again)."""
    relay()
    if sys.excepthook is not _sys_hook:
        sys.excepthook = _sys_hook
    if threading.excepthook is not _thread_hook:
        threading.excepthook = _thread_hook


def hooks_installed() -> bool:
    """Whether our ``sys.excepthook`` and ``threading.excepthook`` are the ones in place."""
    return sys.excepthook is _sys_hook and threading.excepthook is _thread_hook
