"""Results back to the archive: the report, SR, key images and segmentation of an analysis stored into the
source study on the test PACS (C-STORE and STOW-RS), found there as new series, and the SR read back from the
archive to the same finding."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.pacs.conftest import c_store, dimse_node, web_node
from viewer.analysis.model_cache import load_model
from viewer.analysis.session import AnalysisSession
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.dicom.reformat import Reformatter
from viewer.dicom.reformat.annotations import ACQUIRED, Tool, acquired_grid, make_measurement, plane_ref
from viewer.pacs import service
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.nodes import NodeBook
from viewer.pacs.testserver import PASSWORD
from viewer.report import build_report
from viewer.report.dicom_results import build_result_objects
from viewer.report.dicom_sr import read_finding
from viewer.synth.dataset import write_phantom_dataset


@pytest.fixture(scope="module")
def archived_analysis(pacs, tmp_path_factory: pytest.TempPathFactory, model_file: Path):
    """A phantom series stored on the test PACS, analysed locally, with its result objects built."""
    root = tmp_path_factory.mktemp("send") / "data"
    write_phantom_dataset(root, studies=1, seed=7, matrix=64)
    volume = load_stack(next(scan([str(root)]).stacks()))
    c_store([Path(path) for path, _ in volume.sources])
    model, card = load_model(model_file)
    session = AnalysisSession(volume, model, card)
    report = build_report(volume, session.result, card)
    objects = build_result_objects(volume, session.result, report, pixel_map=session.pixel_map)
    return volume, session.result, objects


def _series_in_pacs(study_uid: str) -> set[str]:
    return {row.series_uid for row in service.find_series(dimse_node(), study_uid).rows}


def test_c_store_puts_every_object_in_the_source_study(archived_analysis, store) -> None:
    volume, result, objects = archived_analysis
    before = _series_in_pacs(volume.study_uid)
    assert volume.series_uid in before
    sent = service.send(dimse_node(), objects.datasets)
    assert sent.ok and len(sent.stored) == len(objects.datasets), sent.summary()
    new = _series_in_pacs(volume.study_uid) - before
    assert new == {ds.SeriesInstanceUID for ds in objects.datasets}
    sr = next(ds for ds in objects.datasets if ds.Modality == "SR")
    got = service.retrieve(dimse_node(), volume.study_uid, sr.SeriesInstanceUID, store=store)
    assert got.status == 0x0000 and len(got.files) == 1
    finding = read_finding(pydicom.dcmread(got.files[0]))
    assert finding.present is bool(result.positive)
    assert finding.probability == pytest.approx(result.probability, abs=1e-9)
    assert (finding.model_version, finding.weights_sha256) == (result.model.version, result.model.sha256)


def test_stow_rs_stores_them_too(archived_analysis) -> None:
    volume, _, objects = archived_analysis
    # New UIDs: the same instances again would be duplicates the archive keeps silently.
    fresh = [ds.copy() for ds in objects.datasets[:2]]
    for ds in fresh:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    sent = service.send(web_node(), fresh, secret=PASSWORD)
    assert sent.ok and sent.protocol == "STOW-RS", sent.summary()
    assert {ds.SeriesInstanceUID for ds in fresh} <= _series_in_pacs(volume.study_uid)


def test_a_refused_association_says_why(archived_analysis) -> None:
    _, _, objects = archived_analysis
    with pytest.raises(PacsError) as caught:
        service.send(dimse_node(ae_title="NOT-ORTHANC"), objects.datasets[:1])
    assert caught.value.kind is Failure.REJECTED


def test_wrong_credentials_are_told_apart(archived_analysis) -> None:
    _, _, objects = archived_analysis
    with pytest.raises(PacsError) as caught:
        service.send(web_node(), objects.datasets[:1], secret="wrong")
    assert caught.value.kind is Failure.UNAUTHORIZED


def test_analyze_send_stores_the_results(pacs, tmp_path: Path, model_file: Path, capsys) -> None:
    from viewer.cli import EXIT_USAGE, main
    from viewer.pacs.nodes import NodeBook

    root = tmp_path / "data"
    write_phantom_dataset(root, studies=1, seed=8, matrix=64)
    volume = load_stack(next(scan([str(root)]).stacks()))
    c_store([Path(path) for path, _ in volume.sources])
    before = _series_in_pacs(volume.study_uid)
    assert main(["analyze", str(root), "--model", str(model_file), "--send", "orthanc", "-q"]) == 1
    assert "orthanc" in capsys.readouterr().err  # no such node yet: refused before the analysis
    NodeBook().put(dimse_node())
    assert main(["analyze", str(root), "--model", str(model_file), "--send", "orthanc", "-q"]) in (0, 4)
    out = capsys.readouterr().out
    assert "sent to PACS 'orthanc'" in out and "stored by C-STORE" in out
    assert len(_series_in_pacs(volume.study_uid) - before) == 4
    assert main(["analyze", str(root), "--send", "orthanc", "--anonymize", "-q"]) == EXIT_USAGE


@pytest.mark.gui
def test_send_results_from_the_window(pacs, qtbot, tmp_path: Path, model_file: Path, monkeypatch) -> None:
    from tests.ui.helpers import TIMEOUT_MS, open_folder, show_series, uid_of
    from viewer.ui import send_controller
    from viewer.ui.app import create_application
    from viewer.ui.main_window import MainWindow
    from viewer.ui.settings import ViewerSettings

    root = tmp_path / "data"
    write_phantom_dataset(root, studies=1, seed=9, matrix=64)
    volume = load_stack(next(scan([str(root)]).stacks()))
    c_store([Path(path) for path, _ in volume.sources])
    before = _series_in_pacs(volume.study_uid)
    create_application()
    window = MainWindow(ViewerSettings(tmp_path / "settings.ini"))
    window.analysis.model_path = model_file
    qtbot.addWidget(window)
    action = window.send.action
    assert action.text() == "Send Results to &PACS…" and action in window.file_menu.actions()
    tools = window.tools_menu.actions()
    assert tools[tools.index(window.analysis.analyze_action) + 1] is action
    open_folder(qtbot, window, root)
    show_series(qtbot, window, uid_of(window, "HEAD 5mm AXIAL"))
    assert not action.isEnabled()  # nothing analysed yet
    with qtbot.waitSignal(window.analysis.result_shown, timeout=TIMEOUT_MS):
        window.analysis.analyze()
    assert action.isEnabled()
    shown = window.current_volume()
    grid = acquired_grid(Reformatter.of(shown).frame, 3)
    line = make_measurement(
        Tool.LINE,
        plane_ref(grid, ACQUIRED, 3),
        grid,
        shown.array[3],
        [grid.patient_of(5, 5), grid.patient_of(5, 45)],
    )
    line = window.measurements.current().add(line)
    NodeBook().put(dimse_node())
    monkeypatch.setattr(send_controller, "choose_node", lambda parent, nodes, last: nodes[0])
    with qtbot.waitSignal(window.send.sent, timeout=TIMEOUT_MS) as got:
        action.trigger()
    outcome = got.args[0]
    assert outcome.sent.ok and "stored by C-STORE" in window.statusBar().currentMessage()
    sr = next(ds for ds in outcome.objects.datasets if ds.Modality == "SR")
    (back,) = read_finding(sr).measurements  # the reader's measurement went into the SR
    assert back.values["length"] == pytest.approx(line.values.length_mm)
    assert len(_series_in_pacs(volume.study_uid) - before) == 4
    qtbot.waitUntil(lambda: action.isEnabled(), timeout=5_000)
    window.close()
