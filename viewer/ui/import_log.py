"""View → Import Log: every file skipped while indexing or loading, with its reason, and series warnings."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.errors import printable


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One skipped file or geometry note: ``stage`` ("import", "load" or "geometry"), path and reason."""

    stage: str  # "import" | "load" | "geometry"
    path: str
    reason: str


class ImportLog:
    """The entries behind the dialog (plain list; the dialog is a view of it)."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def clear(self) -> None:
        """Forget every entry."""
        self.entries.clear()

    def add(self, stage: str, path: str, reason: str) -> None:
        """Record an entry (an identical one is kept once)."""
        entry = LogEntry(stage, str(path), str(reason))
        if entry not in self.entries:
            self.entries.append(entry)

    def count(self, stage: str | None = None) -> int:
        """Entries of ``stage`` (all entries when None)."""
        return sum(1 for e in self.entries if stage is None or e.stage == stage)


def _short_path(path: str) -> str:
    """The file and its folder (enough to find it), the full path being in the tooltip."""
    parts = path.replace(os.sep, "/").rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else path


class ImportLogDialog(QDialog):
    """A non-modal table of the log; refreshed whenever the log changes."""

    def __init__(self, log: ImportLog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import Log")
        self.resize(1000, 420)
        self._log = log
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Stage", "File", "Reason"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(1, 420)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Show the log's current entries and a summary line."""
        entries = self._log.entries
        self.table.setRowCount(len(entries))
        for r, e in enumerate(entries):
            path = printable(
                e.path
            )  # bytes of a name that are not UTF-8 show as \xNN, never silently dropped
            cells = (e.stage, _short_path(path), printable(e.reason))
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(path if c == 1 else text)
                self.table.setItem(r, c, item)
        n_files = len({e.path for e in entries if e.stage in ("import", "load")})
        n_geo = self._log.count("geometry")
        if not entries:
            self.summary.setText("Nothing was skipped: every file found was indexed.")
        else:
            parts = [f"{n_files} file(s) skipped"]
            if n_geo:
                parts.append(f"{n_geo} series warning(s)")
            self.summary.setText(
                "; ".join(parts) + ". The rest of the study is usable. Hover a file name for its full path."
            )
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
