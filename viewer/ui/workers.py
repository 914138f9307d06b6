"""Run plain functions on QThreads with progress, cancel and results delivered to the GUI thread.

The function knows nothing of threads: it is called as ``fn(*args, progress=..., cancel=..., **kwargs)`` where
``progress(done, total, text)`` reports a step and ``cancel()`` returns True once the caller asked it to stop
(a function may also raise :class:`viewer.errors.CancelledError`). A generator function's yielded values are
emitted one by one, like superqt's ``GeneratorWorker``. ``yield_to`` names a callback keyword argument (e.g.
``on_slice``) whose calls are emitted the same way, for functions that report partial results by callback.

Signals are emitted from the worker thread and, because every receiver lives in the GUI thread, Qt queues them:
slots run on the GUI thread, where widgets may be touched. :class:`WorkerPool` keeps a reference to every
running thread and stops them all when the window closes; :meth:`WorkerPool.run` starts one with its handlers
(:class:`Handlers`) in one call, like superqt's ``create_worker(_connect=...)``, and sends an error no handler
takes to the one error path (:func:`~viewer.ui.error_dialog.report_exception`).
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtWidgets import QStatusBar

from viewer.errors import CancelledError
from viewer.ui.error_dialog import report_exception
from viewer.ui.progress import ProgressPanel

log = logging.getLogger(__name__)

# Every thread ever started, so tests can check none is left running.
_ALL_THREADS: weakref.WeakSet[WorkerThread] = weakref.WeakSet()


def running_threads() -> list[WorkerThread]:
    """Worker threads started by this module that have not finished yet."""
    return [t for t in list(_ALL_THREADS) if t.isRunning()]


class WorkerThread(QThread):
    """A QThread that runs one function once.

    Every signal carries the thread's ``tag`` first (any object, e.g. a stack uid and a load generation), so a
    receiver can drop what a superseded job still delivers. Signals (all queued to the GUI thread):

    - ``progress(tag, done, total, text)``
    - ``yielded(tag, value)``: each value a generator yields, or each call of the ``yield_to`` callback
    - ``finished_ok(tag, result)``: the function returned
    - ``errored(tag, exception)``: the function raised (not a cancel)
    - ``cancelled(tag)``: the function stopped because it was asked to
    - ``stopped(tag)``: emitted last, whatever the outcome
    """

    progress = Signal(object, int, int, str)
    yielded = Signal(object, object)
    finished_ok = Signal(object, object)
    errored = Signal(object, object)
    cancelled = Signal(object)
    stopped = Signal(object)

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        tag: object = None,
        yield_to: str | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._yield_to = yield_to
        self.name = name or getattr(fn, "__name__", "worker")
        self.setObjectName(self.name)
        self.tag: object = tag
        self.error: BaseException | None = None
        self.was_cancelled = False

    def cancel(self) -> None:
        """Ask the function to stop at its next ``cancel()`` check."""
        self.requestInterruption()

    def is_cancelled(self) -> bool:
        return self.isInterruptionRequested()

    def _progress(self, done: int, total: int, text: str = "") -> None:
        self.progress.emit(self.tag, int(done), int(total), str(text))

    def _emit_yield(self, *values: Any) -> None:
        self.yielded.emit(self.tag, values[0] if len(values) == 1 else values)

    def run(self) -> None:
        kwargs = dict(self._kwargs)
        kwargs["progress"] = self._progress
        kwargs["cancel"] = self.is_cancelled
        if self._yield_to:
            kwargs[self._yield_to] = self._emit_yield
        try:
            out = self._fn(*self._args, **kwargs)
            if inspect.isgenerator(out):
                for value in out:
                    if self.is_cancelled():
                        out.close()
                        raise CancelledError()
                    self.yielded.emit(self.tag, value)
                out = None
            if self.is_cancelled():
                raise CancelledError()
            self.finished_ok.emit(self.tag, out)
        except CancelledError:
            self.was_cancelled = True
            self.cancelled.emit(self.tag)
        except Exception as exc:  # delivered to the GUI thread, which shows it
            log.info("worker %s failed: %s", self.name, type(exc).__name__)
            self.error = exc
            self.errored.emit(self.tag, exc)
        finally:
            self.stopped.emit(self.tag)


@dataclass(frozen=True, slots=True)
class Handlers:
    """The slots of one worker's signals (see :class:`WorkerThread`); each receives the tag first.

    ``errored`` left out: the error goes to :func:`~viewer.ui.error_dialog.report_exception`, so no failure is
    ever dropped silently.
    """

    progress: Callable[[Any, int, int, str], None] | None = None
    yielded: Callable[[Any, Any], None] | None = None
    finished: Callable[[Any, Any], None] | None = None
    errored: Callable[[Any, BaseException], None] | None = None
    cancelled: Callable[[Any], None] | None = None
    stopped: Callable[[Any], None] | None = None


def _report_unhandled(_tag: object, exc: BaseException) -> None:
    report_exception(exc)


class WorkerPool(QObject):
    """Owns running worker threads: starts them, keeps references, and stops them all on shutdown."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._threads: set[WorkerThread] = set()
        self.accepting = True

    def start(self, thread: WorkerThread) -> WorkerThread:
        """Start ``thread`` and keep it until it finishes; after :meth:`shutdown` nothing starts any more."""
        if not self.accepting:
            log.info("worker %s not started: shutting down", thread.name)
            return thread
        self._threads.add(thread)
        _ALL_THREADS.add(thread)
        thread.finished.connect(self._reap)
        thread.start()
        return thread

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        handlers: Handlers,
        tag: object = None,
        yield_to: str | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> WorkerThread:
        """Run ``fn(*args, **kwargs)`` on a new :class:`WorkerThread` whose signals go to ``handlers``; the one
        way the window and its controllers start a job."""
        thread = WorkerThread(fn, *args, tag=tag, yield_to=yield_to, name=name, **kwargs)
        for signal, slot in (
            (thread.progress, handlers.progress),
            (thread.yielded, handlers.yielded),
            (thread.finished_ok, handlers.finished),
            (thread.errored, handlers.errored or _report_unhandled),
            (thread.cancelled, handlers.cancelled),
            (thread.stopped, handlers.stopped),
        ):
            if slot is not None:
                signal.connect(slot)
        return self.start(thread)

    def _reap(self) -> None:
        for t in [t for t in self._threads if t.isFinished()]:
            t.wait()  # returns at once; makes sure Qt's own tail of the thread is done before release
            self._threads.discard(t)

    @property
    def active(self) -> list[WorkerThread]:
        return [t for t in self._threads if t.isRunning()]

    def cancel_all(self) -> None:
        for t in list(self._threads):
            t.cancel()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Request interruption of every thread, ``quit()`` and ``wait()`` for them; True if all stopped."""
        self.accepting = False
        ok = True
        for t in list(self._threads):
            t.requestInterruption()
            t.quit()
        for t in list(self._threads):
            if not t.wait(timeout_ms):
                log.warning("worker %s did not stop within %d ms", t.name, timeout_ms)
                ok = False
        self._reap()
        return ok


@dataclass(frozen=True, slots=True)
class JobHost:
    """Where a controller's jobs run and show themselves: the window's pool, its progress panel (with Cancel) and
    its status bar."""

    pool: WorkerPool
    progress: ProgressPanel
    status_bar: QStatusBar
