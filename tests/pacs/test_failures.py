"""The failures the other PACS tests do not reach: a C-MOVE to a destination the PACS does not know (Orthanc's
0xC000 and the standard 0xA801), and a retrieve cancelled while instances are being written, also when the PACS
ignores the C-CANCEL: nothing half-written, nothing unaccounted for is left in the store."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from tests.pacs.conftest import dimse_node
from viewer.dicom.cache import HeaderCache
from viewer.pacs import dimse, service
from viewer.pacs.retrieve import CancelToken, RetrieveProgress, RetrieveResult


def test_move_to_a_destination_orthanc_does_not_know(pacs, store) -> None:
    result = dimse.move(dimse_node(), store, pacs.studies["beta"], destination="NOWHERE")
    assert not result.ok and result.status == 0xC000 and result.completed == 0
    text = result.summary()
    assert "0 instances retrieved (C-MOVE); final status 0xC000: Unable to Process" in text
    assert "the PACS does not know the move destination 'NOWHERE'" in text and "port 11113" in text
    assert not store.root.exists() or not list(store.root.rglob("*"))


@pytest.fixture
def refusing_move_scp():
    """A pynetdicom Q/R SCP that knows no move destination (answers 0xA801, the standard status)."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    def on_move(event):
        yield None, None  # the destination is unknown

    ae = AE(ae_title="FAKEPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)])
    yield server.server_address[1]
    server.shutdown()


def test_move_destination_unknown_is_said_with_the_status_meaning(pacs, store, refusing_move_scp) -> None:
    node = dimse_node(ae_title="FAKEPACS", port=refusing_move_scp)
    result = dimse.move(node, store, pacs.studies["beta"], destination="NOWHERE")
    assert result.status == 0xA801 and not result.ok
    assert "final status 0xA801: Move destination unknown" in result.summary()
    assert "The PACS does not know the move destination 'NOWHERE'" in result.summary()


def test_the_summary_carries_the_error_comment_and_the_hint() -> None:
    result = RetrieveResult(
        Path("x"),
        status=0xA801,
        meaning="Move destination unknown",
        error_comment="no such AE",
        protocol="C-MOVE",
    )
    result.hint = "check it"
    assert result.summary() == (
        "0 instances retrieved (C-MOVE); final status 0xA801: Move destination unknown — the PACS says: "
        "no such AE. check it"
    )


def _slow_writes(monkeypatch: pytest.MonkeyPatch, writing: threading.Event) -> None:
    """Each instance sits 0.1 s under its ``.partial`` name before the rename (a slow disk)."""
    original = pydicom.dataset.Dataset.save_as

    def save_as(self, filename, *args, **kwargs):
        original(self, filename, *args, **kwargs)
        writing.set()
        time.sleep(0.1)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", save_as)


def _check_store(store, result) -> None:
    """No ``.partial`` file; every file in the store is complete, in the result and in the index."""
    assert not list(store.root.rglob("*.partial"))
    on_disk = sorted(store.root.rglob("*.dcm"))
    assert on_disk == sorted(result.files) and on_disk
    for path in on_disk:
        assert pydicom.dcmread(path).pixel_array.shape == (16, 16)
    with HeaderCache() as cache:
        assert set(cache.lookup([str(p) for p in on_disk])) == {str(p) for p in on_disk}


@pytest.mark.parametrize(
    ("move", "ignored"),
    [(False, False), (True, False), (False, True)],
    ids=["c-get", "c-move", "c-get-cancel-ignored"],
)
def test_cancel_while_writing_leaves_nothing_half_written(
    pacs, store, monkeypatch: pytest.MonkeyPatch, move: bool, ignored: bool
) -> None:
    study = pacs.studies["alpha"]
    stale = store.study_folder(study) / "0" / ".killed-run.dcm.partial"  # left by a process killed mid-write
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"DICM half")
    writing = threading.Event()
    _slow_writes(monkeypatch, writing)
    if ignored:  # the PACS ignores C-CANCEL: the association is aborted after the grace time
        monkeypatch.setattr("pynetdicom.association.Association.send_c_cancel", lambda *a, **k: None)
        monkeypatch.setattr(dimse, "TIMEOUT_S", 0.3)
    token = CancelToken()

    def progress(p: RetrieveProgress) -> None:
        if p.completed >= 1:
            token.cancel()

    result = service.retrieve(dimse_node(), study, move=move, store=store, progress=progress, cancel=token)
    assert writing.is_set() and result.cancelled and 1 <= len(result.files) < 12, result.summary()
    _check_store(store, result)
    assert not stale.exists()


def test_a_response_taken_by_the_reactor_goes_back_to_the_waiting_send() -> None:
    """pynetdicom's reactor can take the response a ``send_*()`` waits for: it is put back first in line."""
    pending = threading.Event()  # cleared: a send_*() is under way
    q: queue.Queue = queue.Queue()
    q.put((3, "later"))
    assoc = SimpleNamespace(
        _reactor_checkpoint=pending, is_requestor=True, dimse=SimpleNamespace(msg_queue=q)
    )
    response = SimpleNamespace(is_valid_request=False)
    dimse._serve_or_hand_back(assoc, response, 1)
    assert q.get_nowait() == (1, response) and q.get_nowait() == (3, "later")
