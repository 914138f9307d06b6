"""File ▸ Export Report… (Ctrl+E): the report of the analysis on screen as PDF, and optionally the same as DICOM
Encapsulated PDF, the current view as PNG and the result as JSON.

Enabled only while the series on screen shows its own analysis result. The dialog
(:class:`~viewer.ui.export_dialog.ExportDialog`) chooses; :func:`viewer.report.export.run_export` writes, on a
worker from the window's pool (building the report renders key images and may compute pixel saliency), with
progress and Cancel in the status bar. The analysis result is untouched by an export, and the dialog opens again
with the choices of a failed export.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Signal
from PySide6.QtWidgets import QWidget

from viewer.analysis.session import AnalysisSession
from viewer.report.export import (
    ExportChoices,
    ExportOutcome,
    ViewState,
    check_targets,
    export_error,
    outside_all,
    run_export,
)
from viewer.report.output import source_folders
from viewer.ui.error_dialog import report_exception
from viewer.ui.export_dialog import ExportDialog
from viewer.ui.image_view import ImageView
from viewer.ui.result_command import ResultCommand, ResultSource
from viewer.ui.results_panel import format_probability
from viewer.ui.saliency_overlay import SaliencyOverlay
from viewer.ui.settings import ViewerSettings
from viewer.ui.workers import Handlers, JobHost

log = logging.getLogger(__name__)


JOB_KEY = "export"


@dataclass(frozen=True)
class ExportTag:
    """Which export a worker signal belongs to: its generation, the series and what was asked."""

    generation: int
    stack_uid: str
    choices: ExportChoices


class ExportController(ResultCommand):
    """The Export Report command of one window.

    The window composes it: it hands over the image view, the saliency overlay, how to get the analysis on
    screen, the series on screen, where jobs run and the settings; it places :attr:`action` in its File menu and
    connects the signals after which Export may become (un)available to :meth:`update_enabled`.

    Signals
    -------
    exported(ExportOutcome)
        An export finished; every file in ``outcome.written`` exists.
    failed(str)
        An export failed; the message (what and why) is also shown in a dialog.
    """

    exported = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        view: ImageView,
        overlay: SaliencyOverlay,
        shown_session: Callable[[], AnalysisSession | None],
        series: ResultSource,
        jobs: JobHost,
        settings: ViewerSettings,
        parent: QWidget,
    ) -> None:
        super().__init__(JOB_KEY, "Export", shown_session, series, jobs, parent)
        self.view = view
        self.overlay = overlay
        self.settings = settings
        self.dialog: ExportDialog | None = None
        self._retry: dict[str, ExportChoices] = {}

        self.action = self._command(
            "Export &Report…",
            "Ctrl+E",
            "Save the analysis of the series on screen as a PDF report (and DICOM, PNG, JSON) (Ctrl+E)",
            self.open_dialog,
        )
        self.update_enabled()

    # -- state ------------------------------------------------------------------------------------------------

    def view_state(self) -> ViewState:
        """The slice, window and overlay on screen now (what the PNG shows)."""
        view, overlay = self.view, self.overlay
        views, measurements, layout = self.on_screen()
        return ViewState(
            index=view.index,
            window=(float(view.center), float(view.width)),
            overlay=bool(overlay.enabled and overlay.active),
            opacity=float(overlay.opacity),
            invert=bool(view.invert),
            threshold=float(overlay.threshold),
            scaling=overlay.scaling,
            views=views,
            measurements=measurements,
            layout=layout,
        )

    def default_folder(self, protected: tuple[Path, ...]) -> Path:
        """The last export folder, else Documents, else home; never inside ``protected`` when one is outside."""
        documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
        for candidate in (self.settings.last_export_folder, documents, str(Path.home())):
            if candidate and Path(candidate).is_dir() and outside_all(Path(candidate), protected):
                return Path(candidate)
        return Path.home()

    # -- the dialog -------------------------------------------------------------------------------------------

    def open_dialog(self) -> ExportDialog | None:
        """Show the export dialog (window-modal, not blocking); None when there is nothing to export."""
        target = self.target()
        if target is None:
            self.jobs.status_bar.showMessage(
                "Nothing to export: analyse the series on screen first (Ctrl+R).", 5000
            )
            self.update_enabled()
            return None
        if self.running:
            self.jobs.status_bar.showMessage("An export is running; wait for it to finish.", 5000)
            return None
        volume, session = target
        result = session.result
        sources = source_folders(volume)
        opened = self.series.opened_folders
        display = self.view.display
        settings = self.settings
        view = self.view_state()
        title = display.series_title if display is not None else "Series"
        summary = (
            f"{title} · {volume.array.shape[0]} slices — {result.finding} "
            f"(probability {format_probability(result.probability)})"
        )
        if self.dialog is not None:
            self.dialog.close()
        dialog = ExportDialog(
            folder=self.default_folder(sources + opened),
            series_number=display.series_number if display is not None else None,
            description=display.series_description if display is not None else "",
            view=view,
            summary=summary,
            anonymize=settings.export_deidentify,
            check=lambda choices: check_targets(choices, sources, opened),
            parent=self._parent,
        )
        retry = self._retry.get(result.identity.stack_uid)
        if retry is not None:
            dialog.apply_choices(retry)
        dialog.export_requested.connect(self.export)
        dialog.finished.connect(lambda _r, d=dialog: self._dialog_closed(d))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _dialog_closed(self, dialog: ExportDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    # -- the export -------------------------------------------------------------------------------------------

    def export(self, choices: ExportChoices) -> bool:
        """Export the result on screen as ``choices`` say, on a worker; True when the export started."""
        target = self.target()
        if self.running or not self.jobs.pool.accepting:
            self.jobs.status_bar.showMessage("An export is running; wait for it to finish.", 5000)
            return False
        if target is None:
            self.jobs.status_bar.showMessage("Nothing to export: analyse the series on screen first.", 5000)
            return False
        volume, session = target
        settings = self.settings
        settings.export_deidentify = choices.anonymize
        tag = ExportTag(self.next_generation(), session.result.identity.stack_uid, choices)
        thread = self.jobs.pool.run(
            run_export,
            volume,
            session,
            choices,
            self.view_state(),
            self.series.opened_folders,
            tag=tag,
            name="export",
            handlers=Handlers(
                progress=self._on_progress,
                finished=self._on_finished,
                errored=self._on_errored,
                cancelled=self._on_cancelled,
                stopped=self._on_stopped,
            ),
        )
        self._start_run(thread, "Exporting the report")
        self.jobs.status_bar.showMessage(f"Exporting the report to {choices.pdf}…")
        return True

    def _on_finished(self, tag: ExportTag, outcome: ExportOutcome) -> None:
        if not self._is_current(tag):
            return
        self._retry.pop(tag.stack_uid, None)
        self.settings.last_export_folder = str(outcome.pdf.parent)
        self.settings.sync()
        extras = len(outcome.written) - 1
        more = f" and {extras} more file{'s' if extras != 1 else ''}" if extras else ""
        self.jobs.status_bar.showMessage(
            f"Report saved: {outcome.pdf.name}{more} in {outcome.pdf.parent}", 15000
        )
        self.exported.emit(outcome)

    def _on_errored(self, tag: ExportTag, exc: BaseException) -> None:
        if not self._is_current(tag):
            return
        self._retry[tag.stack_uid] = tag.choices
        error = export_error(exc)
        self.jobs.status_bar.showMessage(
            "The export failed; Ctrl+E opens it again with the same choices", 8000
        )
        report_exception(error)
        self.failed.emit(str(error))

    def _on_cancelled(self, tag: ExportTag) -> None:
        if self._is_current(tag):
            self.jobs.status_bar.showMessage("Export cancelled; nothing was written", 5000)
