"""The command line: help and version without a display, index output, exit codes, the bench table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from viewer.bench.runner import flatten, format_table
from viewer.cli import EXIT_NOTHING, EXIT_OK, main


def test_version_and_help_need_no_display(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "gru-viewer" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes" in out and "index" in out and "demo-data" in out


def test_index_prints_tree_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "demo"
    assert main(["demo-data", str(data), "--matrix", "64"]) == EXIT_OK
    out_json = tmp_path / "index.json"
    assert main(["index", str(data), "-q", "--json", str(out_json)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "PHANTOM^" in out and "labels.json: not DICOM" in out
    index = json.loads(out_json.read_text())
    assert json.dumps(index).count("PHANTOM^") >= 1


def test_index_of_folder_without_images_exits_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["index", str(tmp_path), "-q"]) == EXIT_NOTHING


def test_missing_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path / "absent"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "absent" in err and "Traceback" not in err


def test_bench_table_flattens_nested_results() -> None:
    results = {"load": {"ours": {"median_s": 0.5}, "shape": [512, 512]}, "index": {"runs": [{"s": 1.0}]}}
    assert dict(flatten(results)) == {
        "load.ours.median_s": 0.5,
        "load.shape": [512, 512],
        "index.runs[0].s": 1.0,
    }
    assert "load.ours.median_s  0.5" in format_table(results)


def test_a_file_name_that_is_not_utf8_is_listed_not_fatal(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "demo"
    assert main(["demo-data", str(data), "--matrix", "64"]) == EXIT_OK
    (data / os.fsdecode(b"caf\xe9.txt")).write_text("not an image")
    capsys.readouterr()
    for extra in ([], ["--no-cache"], []):
        assert main(["index", str(data), "-q", *extra]) == EXIT_OK
        assert "caf\\xe9.txt: not DICOM" in capsys.readouterr().out
    out_json = tmp_path / "r.json"
    assert main(["analyze", str(data), "--model", str(model_file), "-q", "--json", str(out_json)]) == EXIT_OK
    assert "probability" in capsys.readouterr().out
    json.loads(out_json.read_text())
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / os.fsdecode(b"caf\xe9.txt")).write_text("not an image")
    assert main(["analyze", str(tmp_path / "empty"), "--model", str(model_file), "-q"]) == EXIT_NOTHING
    # Nothing analysed: the skipped files say why (here the odd name, escaped), the first ten, then a count.
    assert "caf\\xe9.txt: not DICOM" in capsys.readouterr().err
    for k in range(12):
        (tmp_path / "empty" / f"note{k:02d}.txt").write_text("not an image")
    assert main(["analyze", str(tmp_path / "empty"), "--model", str(model_file), "-q"]) == EXIT_NOTHING
    err = capsys.readouterr().err
    assert err.count("skipped: ") == 11 and "… and 3 more files" in err
