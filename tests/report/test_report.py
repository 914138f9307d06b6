"""The report: PDF text and metadata, de-identification, the DICOM Encapsulated PDF copy (checked by dciodvfy
where installed), PNG/JSON exports, and that nothing is ever written into the study folder."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID
from pypdf import PdfReader

from viewer import __version__
from viewer.analysis.model_cache import load_model
from viewer.analysis.run import analyze_volume
from viewer.cli import main
from viewer.dicom.identifiers import display_date, display_name
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError
from viewer.model.intended_use import UseWarning
from viewer.model.misses import GroupRate
from viewer.model.training_history import training_words
from viewer.report import (
    ReportOptions,
    build_report,
    export_json,
    export_png,
    render_key_image,
    save_dicom,
    save_pdf,
)
from viewer.report.deidentify import deidentify, pseudo_uid, pseudonym
from viewer.report.dicom_export import ENCAPSULATED_PDF_STORAGE
from viewer.report.identifiers import identifiers_from_volume
from viewer.report.images import output_shape
from viewer.report.output import check_output_path, opened_folders
from viewer.synth.dataset import write_phantom_dataset

KEY = b"test-pseudonym-key-0123456789abcdef"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report") / "data"
    write_phantom_dataset(root, studies=1, seed=0, matrix=64)
    return root


@pytest.fixture(scope="module")
def analysed(study: Path, model_file: Path):
    model, card = load_model(model_file)
    volume = load_stack(next(scan([str(study)]).stacks()))
    return volume, analyze_volume(volume, model, card), card


@pytest.fixture(scope="module")
def reports(analysed):
    volume, result, card = analysed
    plain = build_report(volume, result, card)
    anonymous = build_report(volume, result, card, ReportOptions(anonymize=True, key=KEY))
    return plain, anonymous


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _phi(volume) -> list[str]:
    """Every identifying string of the source the anonymised outputs must not hold."""
    meta = volume.identifiers
    values = [
        meta.patient_name,
        display_name(meta.patient_name),
        *[part for part in meta.patient_name.split("^") if len(part) > 3],
        meta.patient_id,
        meta.patient_birth_date,
        display_date(meta.patient_birth_date),
        meta.study_date,
        display_date(meta.study_date),
        meta.accession_number,
        meta.study_description,
        meta.series_description,
        meta.institution,
        volume.study_uid,
        volume.series_uid,
        *volume.sop_uids[:3],
    ]
    return [v for v in values if v]


def _files_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_pdf_shows_identifiers_finding_probability_and_model(analysed, reports) -> None:
    from viewer.report.summary import probability_words

    volume, result, card = analysed
    plain, _ = reports
    assert plain.pdf.startswith(b"%PDF") and 100_000 < len(plain.pdf) < 8_000_000
    text = _text(plain.pdf)
    meta = volume.identifiers
    for expected in (
        display_name(meta.patient_name),
        meta.patient_id,
        display_date(meta.patient_birth_date),
        display_date(meta.study_date),
        meta.accession_number,
        meta.study_description,
        meta.series_description,
        result.finding,
        "probability {} (threshold {})".format(*probability_words(result.probability, result.threshold)),
        f"model test {card.version}",
        f"GRU Viewer {__version__}",
        "Decision support only",
        "Key slice 1 of 4",
        "Update gate z",
        "Reset gate r",
        "Model card summary",
        "synthetic phantoms",
    ):
        assert expected in text, expected
    pages = len(PdfReader(io.BytesIO(plain.pdf)).pages)
    assert pages >= 4 and f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text
    for k in result.key_slices:
        assert f"slice {k + 1} of {volume.n_slices}" in text


def test_page_one_says_not_assessed_outside_intended_use(analysed) -> None:
    volume, result, card = analysed
    outside = replace(result, warnings=[UseWarning("coverage", "The series covers 10 mm in 2 slices.")])
    pdf = build_report(volume, outside, card).pdf
    pages = PdfReader(io.BytesIO(pdf)).pages
    first = " ".join(pages[0].extract_text().split())
    assert "Not assessed" in first and "The series covers 10 mm in 2 slices." in first
    assert result.finding not in first and "threshold" not in first.split("Not assessed")[1][:200]
    rest = " ".join(" ".join(page.extract_text().split()) for page in pages[1:])
    assert "For study only: outside intended use" in rest and "Update gate z" in rest


def test_page_one_says_what_the_model_misses_most(analysed) -> None:
    volume, result, card = analysed
    weak = [GroupRate("volume < 0.5 ml", "sensitivity", 31, 11, 11 / 31, 0.21, 0.53)]
    first = " ".join(_first_page(build_report(volume, replace(result, known_misses=weak), card).pdf).split())
    assert (
        "does not exclude a bleed. In its card's evaluations (synthetic phantoms) it most often misses"
        in first
    )
    assert "bleeds of volume < 0.5 ml (11 of 31 found)" in first
    assert "most often misses" not in " ".join(_first_page(build_report(volume, result, card).pdf).split())


def test_the_model_section_shows_every_held_out_set_not_only_the_best(analysed) -> None:
    volume, result, card = analysed
    assert "Other held-out sets" not in _text(
        build_report(volume, result, card).pdf
    )  # the test card has none
    wide = {
        "title": "Held out: the wide family",
        "metrics": {"studies": 200, "study_auroc": 0.9206, "sensitivity": 0.83},
    }
    text = " ".join(
        _text(build_report(volume, result, replace(card, evaluations=[wide, {"title": "x"}])).pdf).split()
    )
    assert "Other held-out sets" in text and "Held out: the wide family 200 0.9206 0.8300 – –" in text
    assert "x –" not in text  # an evaluation without metrics has no row


def _first_page(pdf: bytes) -> str:
    return PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


def test_pdf_metadata_never_carries_patient_data(analysed, reports) -> None:
    volume, _, _ = analysed
    for report in reports:
        info = PdfReader(io.BytesIO(report.pdf)).metadata
        fields = " ".join(
            str(info.get(k, "")) for k in ("/Title", "/Author", "/Subject", "/Keywords", "/Creator")
        )
        assert "GRU Viewer" in fields
        assert not [s for s in _phi(volume) if s in fields]


def test_anonymised_pdf_holds_none_of_the_source_identifiers(analysed, reports) -> None:
    volume, result, _ = analysed
    _, anonymous = reports
    text = _text(anonymous.pdf)
    squeezed = re.sub(r"\s+", "", text)
    leaked = [
        s
        for s in _phi(volume)
        if s in text or re.sub(r"\s+", "", s) in squeezed or s.encode() in anonymous.pdf
    ]
    assert leaked == []
    ids = anonymous.identifiers
    assert ids.deidentified and ids.patient_id.startswith("ANON-") and ids.patient_id in text
    assert ids.study_uid in squeezed and ids.study_uid != volume.study_uid
    assert result.finding in text and "de-identified" in text
    info = PdfReader(io.BytesIO(anonymous.pdf)).metadata
    assert str(info.get("/CreationDate", "")).startswith("D:2000")  # invariant mode: no real date


def test_pseudonyms_are_keyed_consistent_and_valid() -> None:
    assert pseudonym("id:123", KEY) == pseudonym("id:123", KEY) != pseudonym("id:123", b"another key")
    uid = pseudo_uid("1.2.3.4", KEY)
    assert uid == pseudo_uid("1.2.3.4", KEY) != pseudo_uid("1.2.3.5", KEY)
    assert UID(uid).is_valid and len(uid) <= 64 and uid.startswith("2.25.")
    assert pseudo_uid("", KEY) == ""


def test_deidentify_follows_the_basic_profile(analysed) -> None:
    volume, _, _ = analysed
    ids = deidentify(identifiers_from_volume(volume), KEY)
    assert ids.patient_birth_date == ids.patient_sex == ids.study_date == ids.study_time == ""
    assert ids.accession_number == ids.study_description == ids.series_description == ids.institution == ""
    assert ids.series_uid == pseudo_uid(volume.series_uid, KEY)
    assert len(ids.source_sop_uids) == volume.n_slices and volume.sop_uids[0] not in ids.source_sop_uids
    assert ids.modality == "CT" and ids.n_slices == volume.n_slices  # kept, as the profile keeps them
    assert deidentify(ids, KEY) == ids


def _dciodvfy(path: Path) -> str:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: apt-get install -y dicom3tools")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


@pytest.mark.parametrize("anonymize", [False, True], ids=["identified", "anonymised"])
def test_dicom_encapsulated_pdf_reads_back(analysed, reports, tmp_path: Path, anonymize: bool) -> None:
    volume, _, _ = analysed
    report = reports[1] if anonymize else reports[0]
    path = save_dicom(report, tmp_path / "archive")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE and ds.Modality == "DOC"
    assert ds.SeriesDescription == "GRU Viewer report" and ds.BurnedInAnnotation == "YES"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.SeriesInstanceUID not in (volume.series_uid, report.identifiers.series_uid)
    document = bytes(ds.EncapsulatedDocument)
    assert len(document) % 2 == 0 and ds.EncapsulatedDocumentLength == len(report.pdf)
    assert document[: len(report.pdf)] == report.pdf and document[len(report.pdf) :] in (b"", b"\x00")
    if anonymize:
        assert ds.StudyInstanceUID == report.identifiers.study_uid != volume.study_uid
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientID == report.identifiers.patient_id
        assert ds.StudyDate == "" and ds.ContentDate == ""
        raw = path.read_bytes()
        assert [s for s in _phi(volume) if s.encode() in raw] == []
    else:
        assert ds.StudyInstanceUID == volume.study_uid and ds.PatientID == volume.identifiers.patient_id
        assert ds.SourceInstanceSequence[0].ReferencedSOPInstanceUID == volume.sop_uids[0]
    output = _dciodvfy(path)
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert errors == [], output


def test_exports_leave_the_study_folder_unchanged(analysed, reports, study: Path, tmp_path: Path) -> None:
    volume, result, _ = analysed
    before = _files_digest(study)
    out = tmp_path / "exports"
    for report in reports:
        save_pdf(report, out / "r.pdf")
        save_dicom(report, out / "dcm")
    export_png(out / "k.png", volume, result, result.key_slices[0])
    export_json(out / "r.json", result, volume, anonymize=True, key=KEY)
    assert _files_digest(study) == before
    assert not [p for p in out.rglob(".*")]  # no temporary file left behind
    doc = json.loads((out / "r.json").read_text())
    assert (
        doc["series"]["study_uid"] == pseudo_uid(volume.study_uid, KEY) and doc["finding"] == result.finding
    )


def test_exports_refuse_the_series_folder(analysed, reports) -> None:
    volume, result, _ = analysed
    series_dir = Path(volume.sources[0][0]).parent
    with pytest.raises(ViewerError, match="never writes to"):
        save_pdf(reports[0], series_dir / "report.pdf")
    with pytest.raises(ViewerError, match="never writes to"):
        save_dicom(reports[0], series_dir)
    with pytest.raises(ViewerError, match="never writes to"):
        export_png(series_dir / "sub" / "k.png", volume, result, result.key_slices[0])
    with pytest.raises(ViewerError, match="never writes to"):
        export_json(series_dir / "r.json", result, volume)


def test_report_refuses_a_result_of_another_series(analysed, study: Path, tmp_path: Path) -> None:
    volume, result, card = analysed
    other = load_stack(next(scan([str(study)]).stacks()))
    other.sop_uids = [u + ".9" for u in other.sop_uids]
    with pytest.raises(ViewerError, match="another series"):
        build_report(other, result, card)


def test_key_image_keeps_aspect_and_orientation(analysed) -> None:
    volume, result, _ = analysed
    assert output_shape((100, 200), (1.0, 0.5), 512) == (512, 512)
    assert output_shape((100, 100), (2.0, 1.0), 512) == (512, 256)
    marked = replace(volume, array=np.array(volume.array, copy=True))
    marked.array[:] = -1000.0
    marked.array[0, :8, :8] = 1000.0  # top-left corner: row 0, column 0
    image = render_key_image(marked, None, 0, width_px=256)
    assert image.overlay is None and image.plain.shape == (256, 256)
    assert image.plain[:16, :16].mean() > 200 and image.plain[-16:, -16:].max() == 0
    shown = render_key_image(volume, result, result.key_slices[0], width_px=128)
    assert shown.overlay is not None and shown.overlay.shape == (128, 128, 3)
    inverted = render_key_image(marked, None, 0, width_px=256, invert=True)
    assert inverted.plain[:16, :16].mean() < 55 and inverted.plain[-16:, -16:].min() == 255
    # The overlay threshold: nothing is coloured below it, so at 1.0 only the map's maximum still is.
    faint = render_key_image(volume, result, result.key_slices[0], width_px=128, threshold=1.0)
    grey = np.repeat(faint.plain[..., None], 3, axis=-1)
    coloured = [(img.overlay != grey).any(axis=-1).mean() for img in (faint, shown)]
    assert coloured[0] < 0.01 and coloured[0] < coloured[1] / 5


def test_integer_volume_gives_the_analysis_and_images_of_its_float32_copy(analysed, model_file: Path) -> None:
    volume, result, _ = analysed
    assert volume.array.dtype == np.int16  # what the loader keeps for CT
    as_float = replace(volume, array=volume.array.astype(np.float32))
    model, card = load_model(model_file)
    again = analyze_volume(as_float, model, card)
    assert again.probability == result.probability and again.key_slices == result.key_slices
    np.testing.assert_array_equal(again.slice_probabilities, result.slice_probabilities)
    k = result.key_slices[0]
    for invert in (False, True):
        ours = render_key_image(volume, result, k, width_px=128, invert=invert)
        theirs = render_key_image(as_float, result, k, width_px=128, invert=invert)
        np.testing.assert_array_equal(ours.plain, theirs.plain)
        np.testing.assert_array_equal(ours.overlay, theirs.overlay)


def test_png_export_writes_an_image(analysed, tmp_path: Path) -> None:
    volume, result, _ = analysed
    path = export_png(tmp_path / "key.png", volume, result, result.key_slices[0], width_px=200)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_command_writes_reports(
    study: Path, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("GRU_VIEWER_DATA_DIR", str(tmp_path / "data-dir"))
    before = _files_digest(study)
    pdf, dcm, js = tmp_path / "out" / "report.pdf", tmp_path / "out" / "dicom", tmp_path / "r.json"
    args = ["analyze", str(study), "--model", str(model_file), "-q", "--report", str(pdf)]
    assert main([*args, "--dicom-report", str(dcm), "--anonymize", "--json", str(js)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF")
    assert len(list(dcm.glob("*.dcm"))) == 1
    assert (tmp_path / "data-dir" / "pseudonym.key").stat().st_mode & 0o077 == 0
    doc = json.loads(js.read_text())
    assert doc["deidentified"] and doc["results"][0]["description"] == ""
    assert "report written to" in capsys.readouterr().out
    assert _files_digest(study) == before
    series_dir = next(p.parent for p in study.rglob("*.dcm"))
    # The series' folder, the opened study folder above it, and a JSON there: refused before any analysis.
    for option, target in (
        ("--report", series_dir / "r.pdf"),
        ("--report", study / "r.pdf"),
        ("--json", study),
    ):
        assert main(["analyze", str(study), "--model", str(model_file), "-q", option, str(target)]) == 1
        err = capsys.readouterr().err
        assert "opened as a study folder" in err and "never writes into study folders" in err
    assert _files_digest(study) == before


def test_exports_refuse_every_folder_opened_as_a_study(
    analysed, reports, study: Path, tmp_path: Path
) -> None:
    volume, result, _ = analysed
    opened = opened_folders([study, study / "labels.json"])
    assert opened == (study.resolve(),)  # a file stands for its folder
    with pytest.raises(ViewerError, match="opened as a study folder"):
        check_output_path(study / "elsewhere" / "report.pdf", volume, opened=opened)
    with pytest.raises(ViewerError, match="never writes to"):  # the series' own folder keeps its message
        check_output_path(Path(volume.sources[0][0]).parent / "r.pdf", volume, opened=opened)
    assert (
        check_output_path(tmp_path / "report.pdf", volume, opened=opened)
        == (tmp_path / "report.pdf").resolve()
    )


def test_probability_words_never_hide_which_side_of_the_threshold() -> None:
    from viewer.report.summary import probability_words

    assert probability_words(0.93, 0.41) == ("0.93", "0.41")
    assert probability_words(0.4099, 0.41) == ("0.4099", "0.4100")
    assert probability_words(0.9987, 0.29) == ("0.999", "0.29")
    assert probability_words(0.99996, 0.29) == ("> 0.999", "0.29")
    assert probability_words(0.0002, 0.29) == ("< 0.001", "0.29")


def test_report_names_for_several_series() -> None:
    from types import SimpleNamespace

    from viewer.cli import _report_paths

    def runs(*numbers):
        return [
            SimpleNamespace(stack=SimpleNamespace(first=SimpleNamespace(series_number=n))) for n in numbers
        ]

    pdf = Path("/out/report.pdf")
    assert _report_paths(pdf, runs(2)) == [pdf]
    assert _report_paths(pdf, runs(2, 5)) == [Path("/out/report_2.pdf"), Path("/out/report_5.pdf")]
    assert _report_paths(pdf, runs(3, 3, None)) == [Path(f"/out/report_{i}.pdf") for i in (1, 2, 3)]


def test_page_one_names_the_training_data_without_the_rebuild_commands():
    text = (
        "600 series (300 with a bleed), synthetic head-CT phantoms, seed 101, 256×256 matrix, 5 mm slices "
        "(`gru-viewer demo-data DIR --studies 600 --seed 101 --matrix 256`); 200 series (100 with a bleed), "
        "synthetic head-CT phantoms, seed 102 (`gru-viewer demo-data DIR --studies 200 --seed 102 --matrix 512`)"
    )
    assert training_words(text) == (
        "600 series (300 with a bleed), synthetic head-CT phantoms, seed 101, 256×256 matrix, 5 mm slices; "
        "200 series (100 with a bleed), synthetic head-CT phantoms, seed 102"
    )
    assert training_words("  ") == "not stated on the model card"


def test_several_phantom_sets_are_grouped_by_family():
    classic = (
        "{n} series ({b} with a bleed), synthetic head-CT phantoms, seed {s}, {m}×{m} matrix, 5 mm slices"
    )
    wide = "{n} series ({b} with a bleed), synthetic head-CT phantoms of the wide family, seed {s}, {m}×{m} matrix"
    sets = [
        classic.format(n=600, b=300, s=101, m=256) + " (`gru-viewer demo-data DIR --studies 600 --seed 101`)",
        wide.format(n=1000, b=500, s=604, m=256),
        classic.format(n=200, b=100, s=102, m=512),
    ]
    assert training_words("; ".join(sets)) == (
        "synthetic head-CT phantoms, classic family (5 mm slices): 600 series at 256² (seed 101), "
        "200 series at 512² (seed 102); wide family: 1000 series at 256² (seed 604); half of each set with a bleed"
    )
    sets[1] = wide.format(n=1000, b=400, s=604, m=256)
    assert "1000 series at 256² (seed 604, 400 with a bleed)" in training_words("; ".join(sets))
    assert "half" not in training_words("; ".join(sets))
    sets.append("12 series from my_folder")  # not a phantom set: every set keeps its own words
    assert training_words("; ".join(sets)).startswith(
        "600 series (300 with a bleed), synthetic head-CT phantoms"
    )
    assert training_words(sets[0]) == classic.format(n=600, b=300, s=101, m=256)  # one set: as written


def test_a_chain_of_runs_names_each_training_set_once():
    a = "600 series, seed 101 (`gru-viewer demo-data DIR --seed 101`)"
    b = "600 series of the wide family, seed 601 (`gru-viewer demo-data DIR --family wide --seed 601`)"
    c = "200 series, seed 102 (`gru-viewer demo-data DIR --seed 102`)"
    chain = f"{a}; {c}; then further trained on {a}; {b}; then further trained on {b}; {a}"
    assert training_words(chain) == (
        "600 series, seed 101; 200 series, seed 102; 600 series of the wide family, seed 601 "
        "(in 3 runs, each continuing the one before; the model card lists each run's data)"
    )
