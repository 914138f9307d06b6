"""What File ▸ Export Report… and File ▸ Send Results to PACS… share: a command on the analysis on screen that
runs on a worker of the window's pool, one run at a time, with progress and Cancel in the status bar.

It is available while the series on screen is loaded and shows its own result, and nothing of the command runs.
Worker signals carry a tag; only the current run's are acted on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from viewer.analysis.session import AnalysisSession
from viewer.dicom.reformat.annotations import Measurement, PlaneRef
from viewer.dicom.volume import Volume
from viewer.ui.workers import JobHost, WorkerThread

#: What the window shows besides the result: the planes on screen, the series' measurements and the layout in words.
ViewAnnotations = Callable[[], tuple[tuple[PlaneRef, ...], tuple[Measurement, ...], str]]


class ResultSource(Protocol):
    """The series on screen as these commands need it (the main window is one)."""

    @property
    def opened_folders(self) -> tuple[Path, ...]: ...

    def current_volume(self) -> Volume | None: ...


class ResultCommand(QObject):
    """Base of the commands on the analysis on screen; a subclass creates :attr:`action` and starts runs with
    :meth:`_start_run`."""

    action: QAction

    def __init__(
        self,
        job_key: str,
        progress_prefix: str,
        shown_session: Callable[[], AnalysisSession | None],
        series: ResultSource,
        jobs: JobHost,
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self.job_key = job_key
        self.progress_prefix = progress_prefix
        self.shown_session = shown_session
        self.series = series
        self.jobs = jobs
        self._parent = parent
        self._thread: WorkerThread | None = None
        self._generation = 0
        #: Set by the window, so the report carries the planes and measurements on screen.
        self.annotations: ViewAnnotations | None = None

    def _command(self, text: str, shortcut: str, tip: str, slot: Callable[[], object]) -> QAction:
        """The menu action of this command (``self.action``), enabled by :meth:`update_enabled`."""
        action = QAction(text, self._parent)
        action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    @property
    def running(self) -> bool:
        return self._thread is not None

    def target(self) -> tuple[Volume, AnalysisSession] | None:
        """``(volume, session)`` when the series on screen is loaded and shows its own result, else None."""
        session = self.shown_session()
        volume = self.series.current_volume()
        if session is None or volume is None or not session.result.matches(volume):
            return None
        return volume, session

    def update_enabled(self, *_: object) -> None:
        """Enable the command only while it is idle and the series on screen shows its own result."""
        self.action.setEnabled(not self.running and self.target() is not None)

    def on_screen(self) -> tuple[tuple[PlaneRef, ...], tuple[Measurement, ...], str]:
        """The planes on screen, the series' measurements and the layout in words (empty until the window says)."""
        return self.annotations() if self.annotations is not None else ((), (), "")

    def next_generation(self) -> int:
        """A new number for the next run's tag."""
        self._generation += 1
        return self._generation

    def _start_run(self, thread: WorkerThread, label: str) -> None:
        """Book a started worker as the current run: the action disabled, progress and Cancel shown."""
        self._thread = thread
        self.update_enabled()
        self.jobs.progress.begin(self.job_key, label, self.cancel)

    def cancel(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.cancel()

    def _is_current(self, tag: Any) -> bool:
        return self._thread is not None and self._thread.tag == tag

    def _on_progress(self, tag: Any, done: int, total: int, text: str) -> None:
        if self._is_current(tag):
            self.jobs.progress.update_job(
                self.job_key, done, total, f"{self.progress_prefix}: {text}" if text else ""
            )

    def _on_stopped(self, tag: Any) -> None:
        if self._is_current(tag):
            self._thread = None
            self.jobs.progress.end(self.job_key)
            self.update_enabled()
