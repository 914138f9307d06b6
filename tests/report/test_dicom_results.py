"""The archive's copy of an analysis: Encapsulated PDF, Comprehensive SR (TID 1500), Secondary Capture key
images and a saliency Segmentation, each valid (dciodvfy, where installed), in the source study, and the SR
reading back to the same finding."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from viewer.analysis.model_cache import load_model
from viewer.analysis.session import AnalysisSession
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError
from viewer.report import ReportOptions, build_report
from viewer.report.dicom_results import build_result_objects, save_result_objects
from viewer.report.dicom_seg import DEFAULT_THRESHOLD
from viewer.report.dicom_sr import read_finding
from viewer.synth.dataset import write_phantom_dataset

#: dciodvfy messages allowed, each with why. (None so far: every object validates clean.)
ALLOWED: dict[str, str] = {}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, model_file: Path):
    root = tmp_path_factory.mktemp("results") / "data"
    write_phantom_dataset(root, studies=1, seed=0, matrix=64)
    volume = load_stack(next(scan([str(root)]).stacks()))
    model, card = load_model(model_file)
    session = AnalysisSession(volume, model, card)
    return volume, session, card


@pytest.fixture(scope="module")
def objects(analysed):
    volume, session, card = analysed
    report = build_report(volume, session.result, card)
    return build_result_objects(volume, session.result, report, pixel_map=session.pixel_map), report


def test_every_kind_joins_the_source_study(analysed, objects) -> None:
    volume, session, _ = analysed
    made, _ = objects
    key = session.result.key_slices
    assert made.kinds() == ["DOC", "SR"] + ["OT"] * len(key) + ["SEG"]
    assert made.left_out == []
    for ds in made.datasets:
        assert ds.StudyInstanceUID == volume.study_uid
        assert ds.SeriesInstanceUID != volume.series_uid
        assert ds.PatientID == volume.identifiers.patient_id
    series = {ds.SeriesInstanceUID for ds in made.datasets}
    assert len(series) == 4  # report, SR, key images, segmentation: one series each
    assert len({ds.SOPInstanceUID for ds in made.datasets}) == len(made.datasets)


def test_sr_reads_back_to_the_same_finding(analysed, objects, tmp_path: Path) -> None:
    volume, session, _ = analysed
    made, report = objects
    files = save_result_objects(made, tmp_path / "out", report.source_folders)
    sr = next(f for f in files if f.name.startswith("SR_"))
    finding = read_finding(pydicom.dcmread(sr))
    result = session.result
    assert finding.present is bool(result.positive)
    assert finding.probability == pytest.approx(result.probability, abs=1e-9)
    assert finding.threshold == pytest.approx(result.threshold, abs=1e-9)
    assert (finding.model_name, finding.model_version, finding.weights_sha256) == (
        result.model.name,
        result.model.version,
        result.model.sha256,
    )
    assert finding.source_sop_uids == tuple(volume.sop_uids[k] for k in result.key_slices)
    # Without the reader's measurements it stays a plain Comprehensive SR and holds none.
    assert pydicom.dcmread(sr).SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    assert finding.measurements == ()


def test_not_assessed_is_indeterminate_without_a_probability(analysed, objects) -> None:
    volume, session, card = analysed
    from viewer.model.intended_use import UseWarning

    result = session.result
    withheld = dataclasses.replace(result, warnings=[UseWarning("coverage", "too few slices")])
    assert not withheld.assessed
    made = build_result_objects(
        volume, withheld, build_report(volume, withheld, card), pixel_map=session.pixel_map
    )
    finding = read_finding(made.datasets[1])
    assert finding.present is None and finding.probability is None
    assert finding.threshold == pytest.approx(result.threshold)


def test_segmentation_matches_the_overlay(analysed, objects) -> None:
    volume, session, _ = analysed
    made, _ = objects
    seg = hd.seg.Segmentation.from_dataset(made.datasets[-1])
    assert (
        seg.FrameOfReferenceUID
        == pydicom.dcmread(volume.sources[0][0], stop_before_pixels=True).FrameOfReferenceUID
    )
    from viewer.analysis.display import slice_weight, to_display_map

    result = session.result
    for k in sorted(result.key_slices):
        uid = volume.sop_uids[k]
        mask = seg.get_pixels_by_source_instance([uid], segment_numbers=[1])[0, ..., 0]
        expected = to_display_map(session.pixel_map(k), slice_weight(result.slice_probabilities, k, "series"))
        np.testing.assert_array_equal(mask.astype(bool), expected >= DEFAULT_THRESHOLD)


def test_key_images_are_the_reports_overlay(analysed, objects) -> None:
    volume, session, _ = analysed
    made, _ = objects
    from viewer.report.images import render_key_image

    captures = [ds for ds in made.datasets if ds.Modality == "OT"]
    for k, ds in zip(session.result.key_slices, captures, strict=True):
        shown = render_key_image(volume, session.result, k, pixel_map=session.pixel_map)
        assert ds.PhotometricInterpretation == "RGB"
        np.testing.assert_array_equal(ds.pixel_array, shown.overlay)


def test_a_deidentified_report_never_goes_to_the_archive(analysed) -> None:
    volume, session, card = analysed
    anonymous = build_report(volume, session.result, card, ReportOptions(anonymize=True, key=b"k" * 32))
    with pytest.raises(ViewerError, match="de-identified"):
        build_result_objects(volume, session.result, anonymous)


def test_writing_refuses_the_series_folder(analysed, objects) -> None:
    volume, _, _ = analysed
    made, report = objects
    inside = Path(volume.sources[0][0]).parent / "results"
    with pytest.raises(ViewerError):
        save_result_objects(made, inside, report.source_folders)
    assert not inside.exists()


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) is not installed"
)
def test_every_object_passes_dciodvfy(objects, tmp_path: Path) -> None:
    made, report = objects
    for path in save_result_objects(made, tmp_path / "v", report.source_folders):
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith(("Error", "Warning"))]
        unexplained = [ln for ln in lines if not any(text in ln for text in ALLOWED)]
        assert unexplained == [], f"{path.name}: {unexplained}"


def test_cli_writes_the_result_objects(analysed, tmp_path: Path, model_file: Path) -> None:
    from viewer.cli import EXIT_USAGE, main

    volume, _, _ = analysed
    folder = str(Path(volume.sources[0][0]).parent)
    out = tmp_path / "archive"
    assert main(["analyze", folder, "--model", str(model_file), "--dicom-results", str(out), "-q"]) in (0, 4)
    kinds = sorted(pydicom.dcmread(f, stop_before_pixels=True).Modality for f in out.iterdir())
    assert kinds[:2] == ["DOC", "OT"] and kinds[-2:] == ["SEG", "SR"]
    refused = ["analyze", folder, "--dicom-results", str(tmp_path / "x"), "--anonymize", "-q"]
    assert main(refused) == EXIT_USAGE and not (tmp_path / "x").exists()
