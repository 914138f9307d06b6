"""``gru-viewer pacs test|find|get`` against the test PACS: sentences, exit codes, the folder to open."""

from __future__ import annotations

import io

from viewer.pacs import testserver as orthanc


def _cli(capsys, monkeypatch, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    from viewer.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _add_nodes(capsys, monkeypatch) -> None:
    port = str(orthanc.DICOM_PORT)
    assert (
        _cli(
            capsys,
            monkeypatch,
            "pacs",
            "nodes",
            "add",
            "pacs",
            "--ae-title",
            "ORTHANC",
            "--host",
            "127.0.0.1",
            "--port",
            port,
        )[0]
        == 0
    )
    assert (
        _cli(
            capsys,
            monkeypatch,
            "pacs",
            "nodes",
            "add",
            "wrong",
            "--ae-title",
            "NOPE",
            "--host",
            "127.0.0.1",
            "--port",
            port,
        )[0]
        == 0
    )
    url = f"http://127.0.0.1:{orthanc.HTTP_PORT}/dicom-web"
    assert (
        _cli(
            capsys,
            monkeypatch,
            "pacs",
            "nodes",
            "add",
            "web",
            "--web-url",
            url,
            "--auth",
            "basic",
            "--user",
            orthanc.USER,
            stdin=orthanc.PASSWORD,
        )[0]
        == 0
    )


def test_cli_test_find_get(pacs, capsys, monkeypatch, tmp_path) -> None:
    from viewer.dicom.index import scan

    monkeypatch.setenv("GRU_VIEWER_DATA_DIR", str(tmp_path / "data"))
    _add_nodes(capsys, monkeypatch)
    code, out, _ = _cli(capsys, monkeypatch, "pacs", "test", "pacs")
    assert code == 0 and "C-ECHO to ORTHANC" in out
    code, _, err = _cli(capsys, monkeypatch, "pacs", "test", "wrong")
    assert code == 1 and "rejected the association" in err and "Called AE title not recognised" in err
    code, out, _ = _cli(capsys, monkeypatch, "pacs", "test", "web")
    assert code == 0 and "QIDO-RS" in out

    code, out, _ = _cli(
        capsys, monkeypatch, "pacs", "find", "pacs", "--name", "Pacs^*", "--date-from", "2024-01-01"
    )
    assert (
        code == 0
        and pacs.studies["alpha"] in out
        and pacs.studies["beta"] in out
        and "2 studies found" in out
    )
    code, out, _ = _cli(capsys, monkeypatch, "pacs", "find", "web", "--limit", "1")
    assert code == 0 and "capped at 1" in out
    code, out, _ = _cli(capsys, monkeypatch, "pacs", "find", "pacs", "--series", pacs.studies["alpha"])
    assert code == 0 and pacs.series["alpha2"] in out and "2 series found" in out
    code, _, _ = _cli(capsys, monkeypatch, "pacs", "find", "pacs", "--patient-id", "NOBODY")
    assert code == 3

    code, out, _ = _cli(capsys, monkeypatch, "pacs", "get", "pacs", pacs.studies["beta"], "-q")
    assert code == 0 and "6 instances retrieved (C-GET)" in out
    folder = out.split("stored in ", 1)[1].splitlines()[0]
    assert folder.startswith(str(tmp_path / "data" / "pacs-store"))
    index = scan(folder, workers=1)
    assert index.n_files == index.n_cached == 6
    code, out, _ = _cli(capsys, monkeypatch, "pacs", "get", "pacs", pacs.studies["beta"], "--move", "-q")
    assert code == 0 and "6 instances retrieved (C-MOVE)" in out and f"stored in {folder}" in out
