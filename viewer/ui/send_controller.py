"""Analysis ▸ Send Results to PACS…: the report, finding (SR), key images and saliency segmentation of the
analysis on screen, stored into the source study on a PACS node, on a worker with progress and Cancel.

Enabled only while the series on screen shows its own result (as Export is). The node is chosen from the saved
node list (``gru-viewer pacs nodes add``); what the archive took, or refused and why, is said in the status bar
and, on any refusal, in a dialog. The identified report is sent: a de-identified copy never goes to an archive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QInputDialog, QMessageBox, QWidget

from viewer.analysis.session import AnalysisSession
from viewer.errors import ViewerError
from viewer.pacs.nodes import Node, NodeBook
from viewer.pacs.results import SentResults, send_analysis
from viewer.ui.error_dialog import report_exception
from viewer.ui.pacs_secret import ask_secret
from viewer.ui.result_command import ResultCommand, ResultSource
from viewer.ui.saliency_overlay import SaliencyOverlay
from viewer.ui.settings import ViewerSettings
from viewer.ui.workers import Handlers, JobHost

JOB_KEY = "send"


def choose_node(parent: QWidget, nodes: list[Node], last: str) -> Node | None:
    """Ask which node to send to (the last one used first); None when the reader cancels."""
    names = [n.name for n in nodes]
    current = names.index(last) if last in names else 0
    name, ok = QInputDialog.getItem(
        parent, "Send Results to PACS", "Store the results in the source study on:", names, current, False
    )
    return next((n for n in nodes if n.name == name), None) if ok else None


@dataclass(frozen=True)
class SendTag:
    """Which send a worker signal belongs to."""

    generation: int
    stack_uid: str
    node: str


class SendController(ResultCommand):
    """The Send Results to PACS command of one window.

    Signals
    -------
    sent(SentResults)
        A send finished (``result.sent.failed`` lists what the archive refused).
    failed(str)
        A send failed before anything was stored; the message is also shown in a dialog.
    """

    sent = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        overlay: SaliencyOverlay,
        shown_session: Callable[[], AnalysisSession | None],
        series: ResultSource,
        jobs: JobHost,
        settings: ViewerSettings,
        parent: QWidget,
    ) -> None:
        super().__init__(JOB_KEY, "Send", shown_session, series, jobs, parent)
        self.overlay = overlay
        self.settings = settings
        self._secrets: dict[str, str | None] = {}
        self._last_node = ""
        self.action = self._command(
            "Send Results to &PACS…",
            "Ctrl+Shift+S",
            "Store the report, finding (SR), key images and saliency of this analysis in its study on a PACS",
            self.start,
        )
        self.update_enabled()

    def start(self) -> bool:
        """Choose a node and send; True when a send started."""
        target = self.target()
        bar = self.jobs.status_bar
        if target is None:
            bar.showMessage("Nothing to send: analyse the series on screen first (Ctrl+R).", 5000)
            return False
        if self.running or not self.jobs.pool.accepting:
            bar.showMessage("A send is running; wait for it to finish.", 5000)
            return False
        try:
            nodes = NodeBook().load()
        except ViewerError as exc:
            report_exception(exc)
            return False
        if not nodes:
            QMessageBox.information(
                self._parent,
                "No PACS node",
                "No PACS node is set up yet. Add one with 'gru-viewer pacs nodes add', then send again.",
            )
            return False
        node = choose_node(self._parent, nodes, self._last_node)
        if node is None:
            return False
        try:
            go_on, secret = ask_secret(self._parent, node, self._secrets)
        except ViewerError as exc:
            report_exception(exc)
            return False
        if not go_on:
            return False
        self._last_node = node.name
        volume, session = target
        views, measurements, layout = self.on_screen()
        tag = SendTag(self.next_generation(), session.result.identity.stack_uid, node.name)
        thread = self.jobs.pool.run(
            send_analysis,
            volume,
            session,
            node,
            secret,
            scaling=self.overlay.scaling,
            threshold=float(self.overlay.threshold),
            views=views,
            measurements=measurements,
            layout=layout,
            tag=tag,
            name="send",
            handlers=Handlers(
                progress=self._on_progress,
                finished=self._on_finished,
                errored=self._on_errored,
                cancelled=self._on_cancelled,
                stopped=self._on_stopped,
            ),
        )
        self._start_run(thread, f"Sending to {node.name}")
        bar.showMessage(f"Sending the results to PACS {node.name}…")
        return True

    def _on_finished(self, tag: SendTag, outcome: SentResults) -> None:
        if not self._is_current(tag):
            return
        summary = f"PACS {tag.node}: {outcome.sent.summary()}"
        self.jobs.status_bar.showMessage(summary, 15000)
        if outcome.sent.failed or outcome.objects.left_out:
            left = "".join(f"\nLeft out: {what}" for what in outcome.objects.left_out)
            report_exception(
                ViewerError(f"PACS {tag.node} did not take every result", outcome.sent.summary() + left)
            )
        self.sent.emit(outcome)

    def _on_errored(self, tag: SendTag, exc: BaseException) -> None:
        if not self._is_current(tag):
            return
        self.jobs.status_bar.showMessage(f"Sending to PACS {tag.node} failed", 8000)
        report_exception(exc)  # a ViewerError says what and why; anything else is shown without its text
        self.failed.emit(str(exc) if isinstance(exc, ViewerError) else type(exc).__name__)

    def _on_cancelled(self, tag: SendTag) -> None:
        if self._is_current(tag):
            self.jobs.status_bar.showMessage(
                f"Send to PACS {tag.node} cancelled; what was already stored stays there", 8000
            )
