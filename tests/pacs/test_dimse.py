"""DIMSE against Orthanc: C-ECHO and each way it fails, C-FIND with filters and the cap, C-GET and C-MOVE of a
series and a study into the store and the index, cancel."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.pacs.conftest import dimse_node
from viewer.pacs import dimse, service
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.query import StudyQuery
from viewer.pacs.retrieve import CancelToken, RetrieveProgress


def _fails(kind: Failure, fn, *args, within: float = 5.0, **kwargs) -> PacsError:
    t0 = time.monotonic()
    with pytest.raises(PacsError) as info:
        fn(*args, **kwargs)
    assert info.value.kind is kind, str(info.value)
    assert time.monotonic() - t0 < within
    return info.value


def test_echo_succeeds(pacs) -> None:
    assert "C-ECHO to ORTHANC at 127.0.0.1:4243 succeeded" in service.test(dimse_node())


def test_wrong_called_ae_is_rejected_with_the_reason(pacs) -> None:
    err = _fails(Failure.REJECTED, dimse.echo, dimse_node(ae_title="NOTORTHANC"))
    assert "Called AE title not recognised" in str(err) and "'NOTORTHANC'" in str(err)


def test_a_rejection_is_never_reported_as_an_abort(pacs) -> None:
    """Orthanc closes the connection right after its A-ASSOCIATE-RJ; pynetdicom then loses the race for the
    answer about 1 time in 30 and aborts. 100 tries hit that race with a probability of about 0.97."""
    kinds = []
    for _ in range(100):
        with pytest.raises(PacsError) as info:
            dimse.echo(dimse_node(ae_title="NOTORTHANC"))
        kinds.append(info.value.kind)
    assert kinds == [Failure.REJECTED] * 100


def test_unknown_calling_ae_is_aborted(pacs) -> None:
    err = _fails(Failure.ABORTED, dimse.echo, dimse_node(calling_ae="STRANGER"))
    assert "aborted" in str(err) and "'STRANGER'" in str(err)
    _fails(Failure.ABORTED, dimse.find_studies, dimse_node(calling_ae="STRANGER"), StudyQuery(), 10)


def test_closed_port_is_refused(pacs) -> None:
    err = _fails(Failure.REFUSED, dimse.echo, dimse_node(port=4244), within=1.0)
    assert "connection refused" in str(err)


def test_unroutable_host_and_unknown_name(pacs) -> None:
    _fails(
        Failure.UNREACHABLE, dimse.echo, dimse_node(host="192.0.2.1"), within=1.0
    )  # TEST-NET-1, no route here
    _fails(Failure.UNRESOLVED, dimse.echo, dimse_node(host="pacs.invalid"), within=5.0)


def test_a_peer_that_never_answers_times_out(pacs) -> None:
    with socket.socket() as silent:  # accepts the TCP connection (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        node = dimse_node(port=silent.getsockname()[1])
        err = _fails(Failure.TIMEOUT, dimse.echo, node, timeout=1.0, within=3.0)
    assert "did not answer within 1 s" in str(err)


def test_find_studies_by_each_filter(pacs) -> None:
    node = dimse_node()
    alpha, beta = pacs.studies["alpha"], pacs.studies["beta"]

    def uids(**query) -> set[str]:
        return {r.study_uid for r in service.find_studies(node, StudyQuery(**query)).rows}

    assert uids() >= {alpha, beta, pacs.studies["mr"]}
    assert uids(patient_id="PACS-A") == {alpha}
    assert uids(patient_name="Pacs^Al*") == {alpha}
    assert uids(patient_name="pacs*") == {alpha, beta}
    assert uids(date_from="20240301", date_to="20240331") == {beta}
    assert uids(date_from="20240301") >= {beta} and alpha not in uids(date_from="20240301")
    assert uids(accession="ACC-B") == {beta}
    assert uids(modality="MR") == {pacs.studies["mr"]}
    row = service.find_studies(node, StudyQuery(patient_id="PACS-A")).rows[0]
    assert (row.patient_name, row.accession, row.study_date, row.n_series, row.n_instances) == (
        "Pacs^Alpha",
        "ACC-A",
        "20240102",
        2,
        12,
    )
    assert row.modalities == ("CT",)


def test_find_is_capped_and_says_so(pacs) -> None:
    from viewer.pacs.query import format_studies

    result = service.find_studies(dimse_node(), StudyQuery(), limit=2)
    assert len(result.rows) == 2 and result.capped
    assert "capped at 2" in format_studies(result)
    assert not service.find_studies(dimse_node(), StudyQuery(), limit=3).capped


def test_find_series_of_a_study(pacs) -> None:
    result = service.find_series(dimse_node(), pacs.studies["alpha"])
    assert [(r.series_uid, r.number, r.n_instances) for r in result.rows] == [
        (pacs.series["alpha1"], 1, 8),
        (pacs.series["alpha2"], 2, 4),
    ]


def _hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


def _check_arrived(pacs, result, series_uids: list[str]) -> None:
    """Every source instance arrived once, with the same HU, under a hashed name, and is in the index."""
    from viewer.dicom.cache import HeaderCache

    assert result.ok, result.summary()
    sources = {pydicom.dcmread(p).SOPInstanceUID: p for uid in series_uids for p in pacs.files[uid]}
    got = {pydicom.dcmread(p).SOPInstanceUID: p for p in result.files}
    assert set(got) == set(sources)
    for uid, path in got.items():
        assert uid not in str(path) and path.is_relative_to(result.folder)
        np.testing.assert_array_equal(_hu(path), _hu(sources[uid]))
    with HeaderCache() as cache:
        rows = cache.lookup([str(p) for p in result.files])
    assert set(rows) == {str(p) for p in result.files} and all(r.header_json for r in rows.values())
    assert not list(result.folder.rglob("*.partial"))


@pytest.mark.parametrize("move", [False, True], ids=["c-get", "c-move"])
def test_retrieve_a_series(pacs, store, move: bool) -> None:
    seen: list[RetrieveProgress] = []
    result = service.retrieve(
        dimse_node(),
        pacs.studies["alpha"],
        pacs.series["alpha1"],
        move=move,
        store=store,
        progress=seen.append,
    )
    _check_arrived(pacs, result, [pacs.series["alpha1"]])
    assert result.completed == 8 and result.protocol == ("C-MOVE" if move else "C-GET")
    assert seen and seen[-1].completed == 8 and seen[-1].remaining == 0


@pytest.mark.parametrize("move", [False, True], ids=["c-get", "c-move"])
def test_retrieve_a_study_then_open_it_from_the_index(pacs, store, move: bool) -> None:
    from viewer.dicom.index import scan

    result = service.retrieve(dimse_node(), pacs.studies["alpha"], move=move, store=store)
    _check_arrived(pacs, result, [pacs.series["alpha1"], pacs.series["alpha2"]])
    index = scan(result.folder, workers=1)
    assert index.n_files == 12 and index.n_cached == 12  # no header read again
    assert len(list(index.series())) == 2


def test_c_get_proposes_the_study_s_other_sop_classes(pacs, store) -> None:
    assert dimse.sop_classes(dimse_node(), pacs.studies["mr"]) == ["1.2.840.10008.5.1.4.1.1.4"]
    result = service.retrieve(dimse_node(), pacs.studies["mr"], store=store)
    _check_arrived(pacs, result, [pacs.series["mr"]])


@pytest.mark.parametrize("move", [False, True], ids=["c-get", "c-move"])
def test_cancel_halfway_keeps_only_complete_files(pacs, store, move: bool, monkeypatch) -> None:
    token = CancelToken()
    original = dimse._Receiver.on_store

    def slow_store(self, event):  # a slow link: the PACS is still busy when the C-CANCEL arrives
        time.sleep(0.1)
        return original(self, event)

    monkeypatch.setattr(dimse._Receiver, "on_store", slow_store)

    def progress(p: RetrieveProgress) -> None:
        if p.completed >= 1:
            token.cancel()

    result = service.retrieve(
        dimse_node(), pacs.studies["alpha"], move=move, store=store, progress=progress, cancel=token
    )
    assert result.cancelled and not result.ok, result.summary()
    assert 1 <= len(result.files) < 12
    assert "cancelled" in result.summary()
    for path in result.files:
        assert pydicom.dcmread(path).pixel_array.shape == (16, 16)  # complete
    assert not list(store.root.rglob("*.partial"))


def test_move_without_our_scp_port_says_why(pacs, store) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        node = dimse_node(move_port=taken.getsockname()[1])
        _fails(Failure.CONFIG, dimse.move, node, store, pacs.studies["beta"])


def test_an_instance_not_asked_for_is_refused(pacs, store) -> None:
    from types import SimpleNamespace

    ds = pydicom.dcmread(pacs.files[pacs.series["beta"]][0])
    receiver = dimse._Receiver(store, pacs.studies["alpha"], None)
    assert receiver.on_store(SimpleNamespace(dataset=ds, file_meta=ds.file_meta)) == 0xC000
    assert not receiver.drain() and not store.root.exists()
    receiver = dimse._Receiver(store, pacs.studies["beta"], None)
    assert receiver.on_store(SimpleNamespace(dataset=ds, file_meta=ds.file_meta)) == 0x0000
    assert len(receiver.drain()) == 1
