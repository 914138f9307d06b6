"""File ▸ Query PACS…: search a PACS node's studies, list a study's series, and retrieve a study or series
into the private store, then open it.

Every network call runs on a worker from the window's pool (:mod:`viewer.ui.workers`), so the window stays
responsive; the dialog shows the retrieve's progress (received / failed / remaining) with a Cancel button that
sends C-CANCEL (or stops the WADO-RS stream). Failures are shown in the dialog as the sentence
:class:`~viewer.pacs.failures.PacsError` gives. Nodes are set up with ``gru-viewer pacs nodes add``; a DICOMweb
secret that was not saved is asked for once and kept for this session only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.dicom.identifiers import display_date, display_name
from viewer.errors import ViewerError
from viewer.pacs import service
from viewer.pacs.nodes import Node, NodeBook
from viewer.pacs.query import DEFAULT_LIMIT, QueryResult, SeriesRow, StudyQuery, StudyRow, dicom_date
from viewer.pacs.retrieve import RetrieveProgress, RetrieveResult
from viewer.progress import CancelFn, ProgressFn
from viewer.ui.pacs_secret import ask_secret
from viewer.ui.workers import Handlers, WorkerPool, WorkerThread

log = logging.getLogger(__name__)

_UID_ROLE = Qt.ItemDataRole.UserRole
#: How often a window showing a retrieve under way re-reads the study folder.
ARRIVING_INTERVAL_MS = 1000
_COLUMNS = ("Date", "Patient ID", "Name", "Accession", "Modalities", "Series / images", "Description")


def find_job(
    node: Node, query: StudyQuery, limit: int, secret: str | None, *, progress: ProgressFn, cancel: CancelFn
) -> QueryResult:
    """Worker body: a study search."""
    return service.find_studies(node, query, limit=limit, secret=secret)


def series_job(
    node: Node, study_uid: str, secret: str | None, *, progress: ProgressFn, cancel: CancelFn
) -> QueryResult:
    """Worker body: the series of one study."""
    return service.find_series(node, study_uid, secret=secret)


def retrieve_job(
    node: Node,
    study_uid: str,
    series_uid: str | None,
    move: bool,
    secret: str | None,
    *,
    progress: ProgressFn,
    cancel: CancelFn,
    arrived: Callable[[str], None] | None = None,
) -> RetrieveResult:
    """Worker body: a retrieve, its counts reported as ``progress(done, total, text)`` and the study folder of
    each new file as ``arrived(folder)``."""

    def report(p: RetrieveProgress) -> None:
        done = p.completed + p.failed + p.warning
        total = done + p.remaining if p.remaining is not None else 0
        progress(done, total, f"{p.completed} received, {p.failed} failed")
        if p.last_file is not None and arrived is not None:
            arrived(str(p.last_file.parent.parent))

    return service.retrieve(
        node, study_uid, series_uid, move=move, secret=secret, progress=report, cancel=cancel
    )


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


class PacsQueryDialog(QDialog):
    """Search, browse and retrieve. Emits :attr:`retrieved` with the study folder once files have arrived.

    Signals
    -------
    retrieved(str)
        A retrieve ended with files in the store; the study folder to open.
    arriving(str)
        A retrieve under way has stored files: the study folder, at once for the first file and then at most
        every :data:`ARRIVING_INTERVAL_MS` (a window shows the series as it grows).
    """

    retrieved = Signal(str)
    arriving = Signal(str)

    def __init__(self, pool: WorkerPool, book: NodeBook | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Query PACS")
        self.pool = pool
        self.book = book if book is not None else NodeBook()
        self._secrets: dict[str, str | None] = {}
        self._threads: set[WorkerThread] = set()
        self._retrieve_thread: WorkerThread | None = None
        self.last_result: RetrieveResult | None = None
        self._arriving_folder = ""
        self._arriving_timer = QTimer(self)
        self._arriving_timer.setSingleShot(True)
        self._arriving_timer.timeout.connect(self._arriving_tick)

        self.node_combo = QComboBox()
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("wildcards * and ?, e.g. DOE^J*")
        self.date_from = QLineEdit()
        self.date_to = QLineEdit()
        for edit in (self.date_from, self.date_to):
            edit.setPlaceholderText("YYYY-MM-DD")
        self.accession = QLineEdit()
        self.modality = QLineEdit()
        self.modality.setPlaceholderText("e.g. CT")
        self.search_button = QPushButton("&Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)

        form = QFormLayout()
        form.addRow("Node", self.node_combo)
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form.addRow("Study date", dates)
        form.addRow("Accession", self.accession)
        form.addRow("Modality", self.modality)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(_COLUMNS))
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.itemExpanded.connect(self._expanded)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.count_label = QLabel("")

        self.move_check = QCheckBox("Use C-MOVE (our storage SCP receives)")
        self.retrieve_button = QPushButton("&Retrieve and Open")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button = QPushButton("Cancel Retrieve")
        self.cancel_button.clicked.connect(self.cancel_retrieve)
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        actions = QHBoxLayout()
        actions.addWidget(self.move_check)
        actions.addStretch(1)
        actions.addWidget(self.retrieve_button)
        actions.addWidget(self.cancel_button)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        actions.addWidget(close)

        top = QHBoxLayout()
        top.addLayout(form, 1)
        top.addWidget(self.search_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.count_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addLayout(actions)
        self.resize(900, 600)
        self.reload_nodes()
        self._update_buttons()

    # -- nodes and secrets -------------------------------------------------------------------------------------

    def reload_nodes(self) -> None:
        """Fill the node list from the node book (``gru-viewer pacs nodes add`` writes it)."""
        self.node_combo.clear()
        try:
            nodes = self.book.load()
        except ViewerError as exc:
            self._show_error(exc)
            nodes = []
        for node in nodes:
            self.node_combo.addItem(node.describe(), node)
        if not nodes:
            self.status_label.setText("No PACS node yet: add one with 'gru-viewer pacs nodes add'.")

    def current_node(self) -> Node | None:
        """The node chosen in the list."""
        node = self.node_combo.currentData()
        return node if isinstance(node, Node) else None

    def _secret(self, node: Node) -> tuple[bool, str | None]:
        """(go on, secret) for ``node`` (:func:`~viewer.ui.pacs_secret.ask_secret`); a store that cannot be read
        is said in the dialog and the user asked instead."""
        try:
            return ask_secret(self, node, self._secrets)
        except ViewerError as exc:
            self._show_error(exc)
            self._secrets.pop(node.name, None)
            text, ok = QInputDialog.getText(
                self, "PACS secret", f"Password or token for {node.name}:", QLineEdit.EchoMode.Password
            )
            if ok:
                self._secrets[node.name] = text
            return ok, text if ok else None

    # -- jobs --------------------------------------------------------------------------------------------------

    def _run(
        self, fn: Any, *args: Any, handlers: Handlers, name: str, yield_to: str | None = None
    ) -> WorkerThread:
        thread = self.pool.run(fn, *args, handlers=handlers, name=name, yield_to=yield_to)
        self._threads.add(thread)
        thread.finished.connect(lambda t=thread: self._threads.discard(t))
        return thread

    def _show_error(self, exc: BaseException) -> None:
        self.status_label.setStyleSheet("color: #c0392b;")
        self.status_label.setText(
            str(exc) if isinstance(exc, ViewerError) else f"{type(exc).__name__}: {exc}"
        )

    def _show_info(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    @property
    def busy(self) -> bool:
        """Whether a search or retrieve of this dialog is still running."""
        return any(t.isRunning() for t in self._threads)

    def _query(self) -> StudyQuery:
        return StudyQuery(
            patient_id=self.patient_id.text().strip(),
            patient_name=self.patient_name.text().strip(),
            date_from=dicom_date(self.date_from.text().strip(), "start date"),
            date_to=dicom_date(self.date_to.text().strip(), "end date"),
            accession=self.accession.text().strip(),
            modality=self.modality.text().strip(),
        )

    # -- search ------------------------------------------------------------------------------------------------

    def search(self) -> None:
        """Run the study search on a worker; the rows replace the list."""
        node = self.current_node()
        if node is None:
            return
        try:
            query = self._query()
        except ViewerError as exc:
            self._show_error(exc)
            return
        ok, secret = self._secret(node)
        if not ok:
            return
        self.search_button.setEnabled(False)
        self._show_info(f"Searching {node.name}…")
        self._run(
            find_job,
            node,
            query,
            DEFAULT_LIMIT,
            secret,
            handlers=Handlers(
                finished=lambda _tag, result: self._show_studies(node, result),
                errored=lambda _tag, exc: self._show_error(exc),
                stopped=lambda _tag: self.search_button.setEnabled(True),
            ),
            name="pacs-find",
        )

    def _show_studies(self, node: Node, result: QueryResult) -> None:
        self.tree.clear()
        for row in result.rows:
            self.tree.addTopLevelItem(self._study_item(node, row))
        for i in range(len(_COLUMNS)):
            self.tree.resizeColumnToContents(i)
        n = len(result.rows)
        text = f"{n} stud{'y' if n == 1 else 'ies'}"
        self.count_label.setText(
            f"{text} shown — capped at {result.limit}: more match, narrow the search"
            if result.capped
            else text
        )
        self._show_info("")
        self._update_buttons()

    def _study_item(self, node: Node, row: StudyRow) -> QTreeWidgetItem:
        item = QTreeWidgetItem(
            [
                display_date(row.study_date),
                row.patient_id,
                display_name(row.patient_name),
                row.accession,
                "/".join(row.modalities),
                f"{_count(row.n_series)} / {_count(row.n_instances)}",
                row.description,
            ]
        )
        item.setData(0, _UID_ROLE, ("study", row.study_uid, None))
        item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
        return item

    def _expanded(self, item: QTreeWidgetItem) -> None:
        kind, study_uid, _ = item.data(0, _UID_ROLE)
        node = self.current_node()
        if kind != "study" or item.childCount() or node is None:
            return
        ok, secret = self._secret(node)
        if not ok:
            return
        self._run(
            series_job,
            node,
            study_uid,
            secret,
            handlers=Handlers(
                finished=lambda _tag, result: self._show_series(item, study_uid, result),
                errored=lambda _tag, exc: self._show_error(exc),
            ),
            name="pacs-find-series",
        )

    def _show_series(self, parent: QTreeWidgetItem, study_uid: str, result: QueryResult) -> None:
        rows: list[SeriesRow] = result.rows
        for row in rows:
            child = QTreeWidgetItem(
                [
                    "",
                    "",
                    f"Series {row.number if row.number is not None else '?'}",
                    "",
                    row.modality,
                    f"{_count(row.n_instances)} images",
                    row.description,
                ]
            )
            child.setData(0, _UID_ROLE, ("series", study_uid, row.series_uid))
            parent.addChild(child)
        if not rows:
            parent.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicator)

    # -- retrieve ----------------------------------------------------------------------------------------------

    def _selected(self) -> tuple[str, str | None] | None:
        items = self.tree.selectedItems()
        if not items:
            return None
        _, study_uid, series_uid = items[0].data(0, _UID_ROLE)
        return study_uid, series_uid

    def _update_buttons(self) -> None:
        running = self._retrieve_thread is not None
        self.retrieve_button.setEnabled(not running and self._selected() is not None)
        self.cancel_button.setEnabled(running)
        self.progress_bar.setVisible(running)

    def retrieve(self) -> None:
        """Retrieve the selected study or series on a worker, with progress; open it when files arrived."""
        node, chosen = self.current_node(), self._selected()
        if node is None or chosen is None or self._retrieve_thread is not None:
            return
        ok, secret = self._secret(node)
        if not ok:
            return
        study_uid, series_uid = chosen
        self.progress_bar.setRange(0, 0)
        self._show_info(f"Retrieving from {node.name}…")
        self._retrieve_thread = self._run(
            retrieve_job,
            node,
            study_uid,
            series_uid,
            self.move_check.isChecked(),
            secret,
            handlers=Handlers(
                progress=self._retrieve_progress,
                yielded=lambda _tag, folder: self._arrived(folder),
                finished=lambda _tag, result: self._retrieve_done(result),
                errored=lambda _tag, exc: self._show_error(exc),
                cancelled=lambda _tag: self._show_info(
                    "Retrieve cancelled: the files that arrived are complete and kept in the store."
                ),
                stopped=lambda _tag: self._retrieve_stopped(),
            ),
            name="pacs-retrieve",
            yield_to="arrived",
        )
        self._arriving_folder = ""
        self._update_buttons()

    def _retrieve_progress(self, _tag: object, done: int, total: int, text: str) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        self.progress_bar.setFormat(f"{text} — %v of %m" if total else text)

    def _arrived(self, folder: str) -> None:
        first = not self._arriving_folder
        self._arriving_folder = folder
        if first:
            self.arriving.emit(folder)
            self._arriving_timer.start(ARRIVING_INTERVAL_MS)

    def _arriving_tick(self) -> None:
        if self._retrieve_thread is not None and self._arriving_folder:
            self.arriving.emit(self._arriving_folder)
            self._arriving_timer.start(ARRIVING_INTERVAL_MS)

    def _retrieve_done(self, result: RetrieveResult) -> None:
        self._arriving_timer.stop()
        self.last_result = result
        if result.ok:
            self._show_info(result.summary())
        else:
            self._show_error(ViewerError(result.summary()))
        if result.files:
            self.retrieved.emit(str(result.folder))

    def _retrieve_stopped(self) -> None:
        self._retrieve_thread = None
        self._update_buttons()

    def cancel_retrieve(self) -> None:
        """Ask the running retrieve to stop (C-CANCEL); what arrived stays in the store."""
        if self._retrieve_thread is not None:
            self._retrieve_thread.cancel()
            self._show_info("Cancelling…")

    def done(self, result: int) -> None:
        """Closing stops this dialog's jobs first (a retrieve is cancelled; what arrived is kept)."""
        for thread in list(self._threads):
            thread.cancel()
        for thread in list(self._threads):
            thread.wait(10_000)
        super().done(result)
