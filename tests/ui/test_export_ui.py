"""File ▸ Export Report… in the window: the dialog, the worker, what it writes and what it refuses.

Headless and strict like tests/test_ui_analysis.py (a small random model stands in for the shipped weights). The
dialog is driven through :meth:`ExportDialog.apply_choices` and :meth:`ExportDialog.accept`, never a modal exec.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pypdf import PdfReader

from viewer.dicom.identifiers import display_name
from viewer.errors import ViewerError
from viewer.report import export_png
from viewer.report.dicom_export import ENCAPSULATED_PDF_STORAGE
from viewer.report.export import ExportChoices, default_stem, safe_file_name
from viewer.ui.error_dialog import relay
from viewer.ui.export_dialog import ExportDialog
from viewer.ui.main_window import MainWindow
from viewer.ui.settings import ViewerSettings

from .helpers import TIMEOUT_MS

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo phantom (128², a bleed case) on its own: one series, opened at once."""
    from viewer.synth.dataset import write_phantom_dataset

    root = tmp_path_factory.mktemp("export-study")
    write_phantom_dataset(root, studies=1, seed=0, matrix=128)
    return root


@pytest.fixture
def window(qtbot, window: MainWindow, tmp_path: Path, study: Path) -> Iterator[MainWindow]:
    """The shared window with the phantom on screen (not analysed yet); exports default to ``tmp_path/out``."""
    (tmp_path / "out").mkdir()
    window.settings.last_export_folder = str(tmp_path / "out")
    with qtbot.waitSignal(window.volume_loaded, timeout=TIMEOUT_MS):
        window.open_paths([str(study)])
    yield window
    if window.export.dialog is not None:
        window.export.dialog.done(0)


@pytest.fixture
def analysed(qtbot, window: MainWindow) -> MainWindow:
    with qtbot.waitSignal(window.analysis.result_shown, timeout=TIMEOUT_MS):
        window.analysis.analyze()
    return window


def series_folder(window: MainWindow) -> Path:
    volume = window.current_volume()
    return Path(volume.sources[0][0]).parent


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(path.read_bytes())).pages)


def open_dialog(window: MainWindow) -> ExportDialog:
    dialog = window.export.open_dialog()
    assert dialog is not None and dialog.isVisible()
    return dialog


def export_via_dialog(qtbot, window: MainWindow, choices: ExportChoices) -> object:
    """Fill the dialog with ``choices``, press Export, wait until the worker has stopped; the outcome."""
    dialog = open_dialog(window)
    dialog.apply_choices(choices)
    with qtbot.waitSignal(window.export.exported, timeout=TIMEOUT_MS) as blocker:
        dialog.accept()
    qtbot.waitUntil(lambda: not window.export.running, timeout=TIMEOUT_MS)
    return blocker.args[0]


# -- enabling ---------------------------------------------------------------------------------------------------


def test_export_is_disabled_until_the_series_on_screen_has_a_result(qtbot, window: MainWindow) -> None:
    action = window.export.action
    assert action.text() == "Export &Report…" and action.shortcut().toString() == "Ctrl+E"
    assert action in window.file_menu.actions()
    assert not action.isEnabled()
    assert window.export.open_dialog() is None
    assert "analyse the series" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.analysis.started, timeout=TIMEOUT_MS):
        window.analysis.analyze()
    assert not action.isEnabled()  # running: no result on screen yet
    with qtbot.waitSignal(window.analysis.result_shown, timeout=TIMEOUT_MS):
        pass
    assert action.isEnabled()


# -- what it writes ---------------------------------------------------------------------------------------------


def test_export_writes_pdf_dicom_png_and_json(qtbot, analysed: MainWindow, tmp_path: Path) -> None:
    window = analysed
    result = window.analysis.shown_result
    volume = window.current_volume()
    key = result.key_slices[0]
    window.view.set_slice(key)
    window.view.set_window(75.0, 215.0)  # the subdural preset: the PNG must use the W/L on screen
    window.analysis.panel.opacity_slider.setValue(80)  # and the overlay's opacity, threshold and inversion
    window.analysis.panel.threshold_slider.setValue(50)
    window.view.toggle_invert()
    assert window.export.view_state().describe().endswith(", inverted, saliency overlay from 0.50")
    out = tmp_path / "exports"
    choices = ExportChoices(
        pdf=out / "report.pdf",
        dicom_folder=out / "dicom",
        png=out / "view.png",
        json=out / "result.json",
    )
    outcome = export_via_dialog(qtbot, window, choices)
    assert outcome.pdf == (out / "report.pdf").resolve()
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    text = pdf_text(out / "report.pdf")
    assert result.finding in text and display_name(volume.identifiers.patient_name) in text

    (dcm,) = sorted((out / "dicom").glob("*.dcm"))
    ds = pydicom.dcmread(dcm)
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE and ds.StudyInstanceUID == volume.study_uid
    assert (
        bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
        == (out / "report.pdf").read_bytes()
    )

    reference = export_png(
        tmp_path / "reference.png",
        volume,
        result,
        key,
        overlay=True,
        window=(75.0, 215.0),
        opacity=0.8,
        invert=True,
        threshold=0.5,
    )
    written = np.asarray(Image.open(out / "view.png"))
    assert written.ndim == 3 and np.array_equal(written, np.asarray(Image.open(reference)))
    as_before = export_png(tmp_path / "b.png", volume, result, key, window=(75.0, 215.0), opacity=0.8)
    assert not np.array_equal(written, np.asarray(Image.open(as_before)))  # inversion and threshold show

    data = json.loads((out / "result.json").read_text())
    assert data["finding"] == result.finding and data["series"]["series_uid"] == volume.series_uid

    expected = (out / "report.pdf", dcm, out / "view.png", out / "result.json")
    assert [p.resolve() for p in outcome.written] == [p.resolve() for p in expected]
    assert window.settings.last_export_folder == str(out.resolve())
    assert "Report saved: report.pdf and 3 more files" in window.statusBar().currentMessage()
    assert not window.progress.isVisible() and window.export.action.isEnabled()
    assert window.export.dialog is None  # closed by Export


def test_png_without_the_overlay_when_it_is_off(qtbot, analysed: MainWindow, tmp_path: Path) -> None:
    window = analysed
    result, volume = window.analysis.shown_result, window.current_volume()
    key = result.key_slices[0]
    window.view.set_slice(key)
    window.analysis.set_overlay_enabled(False)
    export_via_dialog(qtbot, window, ExportChoices(pdf=tmp_path / "r.pdf", png=tmp_path / "v.png"))
    written = np.asarray(Image.open(tmp_path / "v.png"))
    assert written.ndim == 2  # grey: no saliency colours
    center, width = window.view.center, window.view.width
    reference = export_png(tmp_path / "ref.png", volume, None, key, overlay=False, window=(center, width))
    assert np.array_equal(written, np.asarray(Image.open(reference)))


def test_deidentified_export_holds_no_patient_name(qtbot, analysed: MainWindow, tmp_path: Path) -> None:
    window = analysed
    meta = window.current_volume().identifiers
    name = meta.patient_name
    given = [part for part in name.split("^") if len(part) > 3]
    choices = ExportChoices(
        pdf=tmp_path / "anon.pdf", anonymize=True, dicom_folder=tmp_path / "dcm", json=tmp_path / "anon.json"
    )
    export_via_dialog(qtbot, window, choices)
    text = pdf_text(tmp_path / "anon.pdf")
    for value in (display_name(name), *given, meta.patient_id):
        assert value not in text
    (dcm,) = (tmp_path / "dcm").glob("*.dcm")
    ds = pydicom.dcmread(dcm)
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE and ds.PatientIdentityRemoved == "YES"
    assert str(ds.PatientName) != name and meta.patient_id not in str(ds.PatientID)
    assert json.loads((tmp_path / "anon.json").read_text())["series"]["deidentified"] is True

    # The choice is remembered: the next dialog starts de-identified, its default name without the description.
    assert ViewerSettings(window.settings.file_name).export_deidentify
    dialog = open_dialog(window)
    assert dialog.deidentify_check.isChecked()
    pdf_name = dialog.choices().pdf.name
    assert meta.series_description not in pdf_name and "series" in pdf_name
    dialog.deidentify_check.setChecked(False)
    assert meta.series_description in dialog.choices().pdf.name
    dialog.reject()


# -- the dialog's defaults --------------------------------------------------------------------------------------


def test_dialog_defaults_to_the_last_export_folder_with_a_name_from_the_series(
    qtbot, analysed: MainWindow, tmp_path: Path
) -> None:
    window = analysed
    meta = window.current_volume().identifiers
    dialog = open_dialog(window)
    choices = dialog.choices()
    out = tmp_path / "out"
    assert choices.pdf.parent == out and choices.pdf.suffix == ".pdf"
    assert choices.pdf.stem == default_stem(
        int(meta.series_number), meta.series_description, deidentified=False
    )
    for part in meta.patient_name.split("^"):
        assert part not in choices.pdf.name
    assert choices.dicom_folder is None and choices.png is None and choices.json is None
    dialog.png_row.check.setChecked(True)
    dialog.json_row.check.setChecked(True)
    dialog.dicom_row.check.setChecked(True)
    dialog.pdf_row.edit.setText(str(out / "mine.pdf"))
    dialog.pdf_row.edit.textEdited.emit(str(out / "mine.pdf"))
    choices = dialog.choices()
    view = window.view
    assert choices.json == out / "mine.json" and choices.dicom_folder == out / "mine DICOM"
    assert choices.png == out / f"mine slice {view.index + 1} W{view.width:g} L{view.center:g}.png"
    assert f"slice {view.index + 1}, W {view.width:g} / L {view.center:g}" in dialog.png_note.text()
    assert dialog.replace_label.text() == ""
    (out / "old.pdf").write_bytes(b"%PDF old")
    dialog.pdf_row.edit.setText(str(out / "old.pdf"))
    assert "will be replaced" in dialog.replace_label.text()
    dialog.reject()

    default = default_stem(int(meta.series_number), meta.series_description, deidentified=False)
    (out / f"{default}.pdf").touch()  # a default name never replaces an earlier report
    assert open_dialog(window).choices().pdf.name == f"{default} (2).pdf"


def test_safe_file_names() -> None:
    assert safe_file_name("HEAD 5mm / AXIAL: C-") == "HEAD 5mm _ AXIAL_ C-"
    assert safe_file_name("  ..  ") == "report"
    assert default_stem(None, "Brain", deidentified=True) == "GRU report"
    assert default_stem(3, "Ax  Brain", deidentified=False) == "GRU report - series 3 - Ax Brain"


# -- what it refuses --------------------------------------------------------------------------------------------


def test_export_into_the_series_folder_is_refused_and_nothing_is_written_there(
    qtbot, analysed: MainWindow, study: Path, tmp_path: Path
) -> None:
    window = analysed
    folder = series_folder(window)
    before = digest(study)

    dialog = open_dialog(window)
    dialog.apply_choices(ExportChoices(pdf=folder / "report.pdf"))
    dialog.accept()  # refused in the dialog, which stays open with the choices
    assert dialog.isVisible() and dialog.error_label.isVisible()
    assert "inside the folder of the series' images" in dialog.error_label.text()
    assert not window.export.running and dialog.choices().pdf == folder / "report.pdf"
    dialog.reject()

    # The worker checks again (export() called without the dialog): one what/why dialog, and nothing written
    # anywhere, not even the PDF whose own path was fine.
    choices = ExportChoices(pdf=tmp_path / "fine.pdf", json=folder / "sub" / "r.json")
    with qtbot.waitSignal(window.export.failed, timeout=TIMEOUT_MS) as blocker:
        assert window.export.export(choices)
    qtbot.waitUntil(lambda: not window.export.running, timeout=TIMEOUT_MS)
    assert "Cannot write the export" in blocker.args[0] and "Traceback" not in blocker.args[0]
    qtbot.waitUntil(lambda: bool(relay().open_dialogs), timeout=5000)
    assert relay().open_dialogs[-1].text() == blocker.args[0]
    assert not (tmp_path / "fine.pdf").exists()
    assert digest(study) == before
    assert window.analysis.shown_result is not None and window.export.action.isEnabled()


def test_export_into_the_opened_study_folder_is_refused_and_never_offered(
    qtbot, analysed: MainWindow, study: Path, tmp_path: Path
) -> None:
    """The study folder above the series' folder was opened: it is read-only as a whole."""
    window = analysed
    before = digest(study)
    assert series_folder(window).parent != study.resolve() and window.opened_folders == (study.resolve(),)
    dialog = open_dialog(window)
    dialog.apply_choices(ExportChoices(pdf=study / "report.pdf", json=tmp_path / "r.json"))
    dialog.accept()
    assert dialog.isVisible() and "opened as a study folder" in dialog.error_label.text()
    assert not window.export.running
    dialog.reject()

    # A last export folder inside the study is not offered again: the dialog starts outside it.
    window.settings.last_export_folder = str(study)
    dialog = open_dialog(window)
    assert study.resolve() not in (dialog.choices().pdf.resolve().parents)
    dialog.reject()
    assert digest(study) == before and not (tmp_path / "r.json").exists()


def test_a_failed_write_says_why_and_keeps_the_choices(
    qtbot, analysed: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from viewer.report import api

    def disk_full(path, data) -> None:
        raise ViewerError("Cannot write the export", "No space left on device", path)

    monkeypatch.setattr(api, "write_atomic", disk_full)
    window = analysed
    choices = ExportChoices(pdf=tmp_path / "full" / "report.pdf", json=tmp_path / "full" / "r.json")
    dialog = open_dialog(window)
    dialog.apply_choices(choices)
    with qtbot.waitSignal(window.export.failed, timeout=TIMEOUT_MS) as blocker:
        dialog.accept()
    qtbot.waitUntil(lambda: not window.export.running, timeout=TIMEOUT_MS)
    assert "No space left on device" in blocker.args[0]
    qtbot.waitUntil(lambda: bool(relay().open_dialogs), timeout=5000)
    assert not (tmp_path / "full" / "report.pdf").exists()
    assert window.analysis.shown_result is not None and window.export.action.isEnabled()
    again = open_dialog(window)  # the same choices, to try again
    assert again.choices() == choices
    again.reject()


def test_cancel_while_building_writes_nothing(
    qtbot, analysed: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from viewer.report import api

    original = api.render_key_image

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return original(*args, **kwargs)

    monkeypatch.setattr(api, "render_key_image", slow)
    window = analysed
    bar = window.progress.bar
    assert window.export.export(ExportChoices(pdf=tmp_path / "r.pdf"))
    assert not window.export.action.isEnabled()  # one export at a time
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() >= 2, timeout=TIMEOUT_MS)
    window.progress.cancel_current()
    qtbot.waitUntil(lambda: not window.export.running, timeout=TIMEOUT_MS)
    assert not (tmp_path / "r.pdf").exists()
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.export.action.isEnabled()
