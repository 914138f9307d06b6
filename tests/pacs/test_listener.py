"""Receiving: Orthanc pushes a 40-slice series to our C-STORE SCP, which stores and indexes it as it arrives;
calling AE titles not listed, and a wrong called AE title, are rejected with their reasons."""

from __future__ import annotations

import threading
import time
import urllib.error
from pathlib import Path

import pydicom
import pytest

from tests.pacs.conftest import _write_series, c_store, dimse_node
from viewer.errors import ViewerError
from viewer.pacs import dimse
from viewer.pacs import testserver as orthanc
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.listener import ListenerConfig, StorageListener


@pytest.fixture(scope="module")
def forty(pacs, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    """A 40-slice series stored into the test PACS: (series UID, source files)."""
    from viewer.synth.writer import SeriesMeta

    meta = SeriesMeta.invented("Push^Forty", "PUSH-40", "Axial", series_number=1, study_date="20240601")
    files = _write_series(tmp_path_factory.mktemp("push"), "push", meta, 40, 0)
    c_store(files)
    return meta.series_uid, files


def _listener(store, allowed=(orthanc.AET,), **kwargs) -> StorageListener:
    config = ListenerConfig(ae_title=orthanc.LISTEN_AET, port=orthanc.LISTEN_PORT, allowed=tuple(allowed))
    return StorageListener(config, store, **kwargs)


def test_a_pushed_series_arrives_complete_and_indexed(pacs, forty, store) -> None:
    from viewer.dicom.cache import HeaderCache
    from viewer.dicom.index import scan

    series_uid, sources = forty
    batches: list[list[Path]] = []
    threads: set[str] = set()

    def on_indexed(paths: list[Path]) -> None:
        threads.add(threading.current_thread().name)
        batches.append(paths)

    with _listener(store, on_indexed=on_indexed, interval_s=0.2) as listener:
        pacs.server.push(series_uid)
        deadline = time.monotonic() + 10
        while sum(map(len, batches)) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert listener.received == 40 and listener.refused == 0 and not listener.running
    files = [p for batch in batches for p in batch]
    assert len(files) == len(set(files)) == 40
    assert threads == {"pacs-receiver-index"}
    got = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in files}
    assert set(got) == {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sources}
    for uid, path in got.items():
        assert uid not in str(path) and series_uid not in str(path) and "Forty" not in str(path)
        assert path.is_relative_to(store.root) and (path.stat().st_mode & 0o777) == 0o600
    with HeaderCache() as cache:
        rows = cache.lookup([str(p) for p in files])
    assert len(rows) == 40 and all(r.header_json for r in rows.values())
    folder = files[0].parent.parent
    index = scan(folder, workers=1)
    assert index.n_files == 40 and index.n_cached == 40
    assert not list(store.root.rglob("*.partial"))


def test_an_unlisted_calling_ae_is_rejected(pacs, forty, store) -> None:
    rejected: list[str] = []
    with _listener(store, allowed=["SOMEONE"], on_rejected=lambda ae, _addr: rejected.append(ae)) as listener:
        with pytest.raises(urllib.error.HTTPError):  # Orthanc's push fails: its association was rejected
            pacs.server.push(forty[0])
        node = dimse_node(ae_title=orthanc.LISTEN_AET, port=orthanc.LISTEN_PORT, calling_ae="STRANGER")
        with pytest.raises(PacsError) as info:
            dimse.echo(node)
        assert info.value.kind is Failure.REJECTED
        assert "Calling AE title not recognised" in str(info.value) and "'STRANGER'" in str(info.value)
        assert "rejected permanent, by the service user" in str(info.value)
        ok = dimse_node(ae_title=orthanc.LISTEN_AET, port=orthanc.LISTEN_PORT, calling_ae="SOMEONE")
        dimse.echo(ok)  # the listed one is accepted
        wrong_called = dimse_node(ae_title="NOTUS", port=orthanc.LISTEN_PORT, calling_ae="SOMEONE")
        with pytest.raises(PacsError, match="Called AE title not recognised"):
            dimse.echo(wrong_called)
    assert listener.received == 0 and not store.root.exists()
    assert rejected[:2] == [orthanc.AET, "STRANGER"] and listener.rejected == 3


def test_a_port_in_use_says_so(pacs, store) -> None:
    with _listener(store):
        with pytest.raises(PacsError, match=f"cannot listen on 127.0.0.1:{orthanc.LISTEN_PORT}"):
            _listener(store).start()


def test_the_configuration_is_checked() -> None:
    with pytest.raises(ViewerError, match="accepts nobody"):
        ListenerConfig(allowed=()).validated()
    with pytest.raises(ViewerError, match="at most 16"):
        ListenerConfig(allowed=("A" * 17,)).validated()
    with pytest.raises(ViewerError, match="not a TCP port"):
        ListenerConfig(port=70000, allowed=("X",)).validated()
    config = ListenerConfig(allowed=(" ORTHANC ", "ORTHANC", "B")).validated()
    assert config.allowed == ("ORTHANC", "B") and config.bind == "127.0.0.1"


def test_cli_listen_receives_until_ctrl_c(pacs, forty, tmp_path: Path, monkeypatch, capsys) -> None:
    import os
    import signal
    import socket

    from viewer.cli import main

    monkeypatch.setenv("GRU_VIEWER_DATA_DIR", str(tmp_path / "data"))
    store_root = tmp_path / "data" / "pacs-store"
    pushed: list[object] = []

    def push_then_interrupt() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", orthanc.LISTEN_PORT), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        try:
            pushed.append(pacs.server.push(forty[0]))
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=push_then_interrupt)
    helper.start()
    args = ["pacs", "listen", "--allow", orthanc.AET, "--ae-title", orthanc.LISTEN_AET]
    code = main([*args, "--port", str(orthanc.LISTEN_PORT)])
    helper.join()
    out = capsys.readouterr().out
    assert code == 0 and pushed, out
    assert f"listening: {orthanc.LISTEN_AET} on 127.0.0.1:{orthanc.LISTEN_PORT}, accepting ORTHANC" in out
    assert "40 in all" in out and "stopped: 40 received, 0 refused, 0 association(s) rejected" in out
    assert len(list(store_root.rglob("*.dcm"))) == 40
