"""File ▸ Export Report…: the dialog that picks where the report (and its extras) go.

The dialog only chooses; :class:`~viewer.ui.export_controller.ExportController` writes, on a worker. What the
dialog returns is an :class:`~viewer.report.export.ExportChoices` (plain data), so a test or a script can hand
the same choices to :meth:`ExportDialog.apply_choices` and :meth:`ExportDialog.accept` without a modal
``exec()``. Default names and the extras' paths follow the rules of :mod:`viewer.report.export`; the extras'
paths follow the PDF's until the user edits them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from viewer.errors import ViewerError
from viewer.report.export import (
    ExportChoices,
    ViewState,
    default_stem,
    derived_dicom_folder,
    derived_json,
    derived_png,
    unused_pdf_path,
)
from viewer.ui import theme


class _PathRow:
    """A check box (or plain label), a path field and a "Browse…" button on one grid row."""

    def __init__(
        self,
        grid: QGridLayout,
        row: int,
        title: str,
        browse: Callable[[], None],
        checkable: bool,
    ) -> None:
        self.check: QCheckBox | None = QCheckBox(title) if checkable else None
        self.label = self.check if self.check is not None else QLabel(title)
        self.edit = QLineEdit()
        self.edit.setMinimumWidth(380)
        self.edit.setClearButtonEnabled(True)
        self.button = QPushButton("Browse…")
        self.button.clicked.connect(browse)
        grid.addWidget(self.label, row, 0, 1, 2)
        grid.addWidget(self.edit, row + 1, 1)
        grid.addWidget(self.button, row + 1, 2)
        self.follows_pdf = True
        self.edit.textEdited.connect(self._edited)
        if self.check is not None:
            self.check.toggled.connect(self._toggled)
            self._toggled(False)

    def _edited(self, _text: str) -> None:
        self.follows_pdf = False

    def _toggled(self, on: bool) -> None:
        self.edit.setEnabled(on)
        self.button.setEnabled(on)

    @property
    def wanted(self) -> bool:
        return self.check is None or self.check.isChecked()

    def set_path(self, path: Path | None) -> None:
        self.edit.setText(str(path) if path is not None else "")


class ExportDialog(QDialog):
    """Choose the report's PDF path, de-identification and the extras.

    Signals
    -------
    export_requested(ExportChoices)
        Emitted by :meth:`accept` once the choices pass ``check`` (the dialog then closes). A refused choice
        (a path inside the series' folder, an empty name) is explained in the dialog, which stays open with
        everything the user entered.
    """

    export_requested = Signal(object)

    def __init__(
        self,
        *,
        folder: Path,
        series_number: int | None,
        description: str,
        view: ViewState,
        summary: str = "",
        anonymize: bool = False,
        check: Callable[[ExportChoices], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Report")
        self._folder = folder
        self._series_number = series_number
        self._description = description
        self._view = view
        self._check = check
        self._pdf_follows_default = True

        intro = QLabel(summary or "The analysis of the series on screen.")
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.PlainText)

        grid = QGridLayout()
        grid.setColumnMinimumWidth(0, 18)
        grid.setColumnStretch(1, 1)
        grid.setVerticalSpacing(4)
        self.pdf_row = _PathRow(grid, 0, "PDF report:", self._browse_pdf, checkable=False)
        self.replace_label = QLabel("")
        self.replace_label.setObjectName("exportNotice")
        grid.addWidget(self.replace_label, 2, 1, 1, 2)

        self.deidentify_check = QCheckBox("De-identify (DICOM PS3.15 basic profile)")
        self.deidentify_check.setToolTip(
            "Names, IDs, dates and descriptions are removed or replaced by a pseudonym in the PDF, the DICOM copy "
            "and the JSON; UIDs are replaced consistently (the same pseudonym on every export from this "
            "computer). The PNG carries no identifiers either way."
        )
        deid_note = QLabel("Pseudonymous ID; names, dates and descriptions removed; new UIDs.")
        deid_note.setObjectName("exportHint")
        grid.addWidget(self.deidentify_check, 3, 0, 1, 3)
        grid.addWidget(deid_note, 4, 1, 1, 2)

        self.dicom_row = _PathRow(
            grid,
            5,
            "Also save as DICOM Encapsulated PDF, for the archive, into the folder",
            self._browse_dicom,
            checkable=True,
        )
        self.dicom_row.edit.setToolTip(
            "Folder for the DICOM copy of the report (same study, a new series), written as <SOP UID>.dcm"
        )
        self.png_row = _PathRow(
            grid, 7, "Also save the current view as PNG", self._browse_png, checkable=True
        )
        self.png_note = QLabel(f"As on screen: {view.describe()}.")
        self.png_note.setObjectName("exportHint")
        grid.addWidget(self.png_note, 9, 1, 1, 2)
        self.json_row = _PathRow(grid, 10, "Also save the result as JSON", self._browse_json, checkable=True)

        self.error_label = QLabel("")
        self.error_label.setObjectName("exportError")
        self.error_label.setWordWrap(True)
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setStyleSheet(f"color: {theme.WARNING_TEXT};")
        self.error_label.hide()
        note = QLabel("Exports never go into the series' own folder: the study stays as it was.")
        note.setObjectName("exportHint")

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.export_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        self.export_button.setText("Export")
        self.export_button.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        for hint in (deid_note, self.png_note, note, self.replace_label):
            hint.setStyleSheet(f"color: {theme.DIM_TEXT};")

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addSpacing(6)
        layout.addLayout(grid)
        layout.addSpacing(6)
        layout.addWidget(self.error_label)
        bottom = QHBoxLayout()
        bottom.addWidget(note, 1)
        bottom.addWidget(buttons)
        layout.addLayout(bottom)

        self.pdf_row.edit.textEdited.connect(self._pdf_edited)
        self.pdf_row.edit.textChanged.connect(self._pdf_changed)
        self.deidentify_check.toggled.connect(self._deidentify_toggled)
        self.deidentify_check.setChecked(anonymize)
        self._set_default_pdf()

    # -- paths ------------------------------------------------------------------------------------------------

    def _set_default_pdf(self) -> None:
        stem = default_stem(
            self._series_number, self._description, deidentified=self.deidentify_check.isChecked()
        )
        self.pdf_row.set_path(unused_pdf_path(self._folder, stem, self._view))
        self._pdf_follows_default = True
        self._update_derived()

    def _pdf_edited(self, _text: str) -> None:
        self._pdf_follows_default = False

    def _pdf_changed(self, _text: str) -> None:
        self._update_derived()
        pdf = self._pdf_path()
        self.replace_label.setText(
            "A file of this name exists: it will be replaced." if pdf is not None and pdf.is_file() else ""
        )
        self.error_label.hide()

    def _deidentify_toggled(self, _on: bool) -> None:
        if self._pdf_follows_default:
            self._set_default_pdf()

    def _pdf_path(self) -> Path | None:
        text = self.pdf_row.edit.text().strip()
        if not text:
            return None
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self._folder / path
        if path.suffix.lower() != ".pdf":
            path = path.with_name(path.name + ".pdf")
        return path

    def _update_derived(self) -> None:
        pdf = self._pdf_path()
        if pdf is None:
            return
        if self.dicom_row.follows_pdf:
            self.dicom_row.set_path(derived_dicom_folder(pdf))
        if self.png_row.follows_pdf:
            self.png_row.set_path(derived_png(pdf, self._view))
        if self.json_row.follows_pdf:
            self.json_row.set_path(derived_json(pdf))

    def _start_dir(self, row: _PathRow) -> str:
        text = row.edit.text().strip()
        return text or str(self._folder)

    def _browse_pdf(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the report as", self._start_dir(self.pdf_row), "PDF documents (*.pdf)"
        )
        if path:
            self._pdf_follows_default = False
            self.pdf_row.set_path(Path(path))

    def _browse_dicom(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder for the DICOM copy", str(Path(self._start_dir(self.dicom_row)).parent)
        )
        if folder:
            self.dicom_row.follows_pdf = False
            self.dicom_row.set_path(Path(folder))

    def _browse_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the current view as", self._start_dir(self.png_row), "PNG images (*.png)"
        )
        if path:
            self.png_row.follows_pdf = False
            self.png_row.set_path(Path(path))

    def _browse_json(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the result as", self._start_dir(self.json_row), "JSON (*.json)"
        )
        if path:
            self.json_row.follows_pdf = False
            self.json_row.set_path(Path(path))

    # -- choices ----------------------------------------------------------------------------------------------

    def _extra(self, row: _PathRow, suffix: str | None, what: str) -> Path | None:
        if not row.wanted:
            return None
        text = row.edit.text().strip()
        if not text:
            raise ViewerError("Cannot export", f"choose where the {what} goes, or untick it")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self._folder / path
        if suffix is not None and path.suffix.lower() != suffix:
            path = path.with_name(path.name + suffix)
        return path

    def choices(self) -> ExportChoices:
        """The choices as entered; :class:`ViewerError` when a wanted path is empty."""
        pdf = self._pdf_path()
        if pdf is None:
            raise ViewerError("Cannot export", "choose a file name for the PDF report")
        return ExportChoices(
            pdf=pdf,
            anonymize=self.deidentify_check.isChecked(),
            dicom_folder=self._extra(self.dicom_row, None, "DICOM copy"),
            png=self._extra(self.png_row, ".png", "PNG"),
            json=self._extra(self.json_row, ".json", "JSON"),
        )

    def apply_choices(self, choices: ExportChoices) -> None:
        """Fill the dialog with ``choices`` (what a user would type and tick)."""
        self.deidentify_check.setChecked(choices.anonymize)
        self._pdf_follows_default = False
        self.pdf_row.set_path(choices.pdf)
        for row, path in (
            (self.dicom_row, choices.dicom_folder),
            (self.png_row, choices.png),
            (self.json_row, choices.json),
        ):
            assert row.check is not None
            row.check.setChecked(path is not None)
            if path is not None:
                row.follows_pdf = False
                row.set_path(path)

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()

    def accept(self) -> None:
        """Check the choices; emit ``export_requested`` and close, or say what is wrong and stay open."""
        try:
            choices = self.choices()
            if self._check is not None:
                self._check(choices)
        except ViewerError as exc:
            self.show_error(str(exc))
            return
        self.export_requested.emit(choices)
        super().accept()
