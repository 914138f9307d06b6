"""Hostile inputs: DICOMDIRs that point outside their folder, executable preambles, code-running model files.

Extends ``tests/test_index.py`` (``read_dicomdir`` on pydicom's DICOMDIR tree, ``check_file_id``) and
``tests/test_model_weights.py`` (pickles refused by format) with the user-facing paths: the command line and a
folder scan for DICOMDIRs, the whole index → load → analyse → report chain for polyglot files, and model files
whose payload would leave a marker file behind if anything ever ran it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.fileset import FileSet

from viewer.analysis.model_cache import load_model
from viewer.analysis.run import AnalysisOptions, analyze_volume
from viewer.cli import EXIT_ERROR, EXIT_NOT_ASSESSED, EXIT_OK, main
from viewer.dicom.dicomdir import OUTSIDE, read_dicomdir
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError
from viewer.model.card import card_path_for, sha256_file
from viewer.model.config import ModelConfig
from viewer.model.intended_use import MIN_MATRIX_PX
from viewer.model.network import SliceGRUNet
from viewer.model.weights import load_weights, save_weights
from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series

TINY = ModelConfig(input_size=32, encoder_channels=(8, 16), hidden_size=8)


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "models" / "tiny.safetensors"
    save_weights(SliceGRUNet(TINY).eval(), path, name="tiny", version="0")
    return path


def _write_series(folder: Path, patient: str, n: int = 6) -> list[Path]:
    hu = np.full((n, MIN_MATRIX_PX, MIN_MATRIX_PX), 30.0, np.float32)  # the smallest matrix analysed
    positions, orientation = axial_geometry(n, 5.0, (0.7, 0.7), MIN_MATRIX_PX)
    return write_ct_series(
        hu,
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.7, 0.7),
        slice_thickness=5.0,
        meta=SeriesMeta.invented(f"SECURITY^{patient}", patient, f"{patient} head"),
    )


# -- DICOMDIR ------------------------------------------------------------------------------------------------


@pytest.fixture()
def hostile_media(tmp_path: Path) -> dict[str, Path]:
    """``media/DICOMDIR`` listing an inside series, with three records redirected to ``outside/``.

    ``outside/`` holds a valid CT series of another patient: indexing any of it would be visible.
    """
    outside = tmp_path / "outside"
    secret_files = _write_series(outside, "SECRET")
    source = tmp_path / "source"
    inside_files = _write_series(source, "INSIDE")
    media = tmp_path / "media"
    fs = FileSet()
    for f in inside_files:
        fs.add(f)
    fs.write(media)
    dicomdir = media / "DICOMDIR"
    ds = pydicom.dcmread(dicomdir)
    images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    redirects = [
        ["..", "outside", secret_files[0].name],
        str(secret_files[1]),  # absolute
        ["SUB", "..", "..", "outside", secret_files[2].name],
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # '.', '/' are not valid in CS: that is the point
        for record, new_id in zip(images, redirects, strict=False):
            record.ReferencedFileID = new_id
        ds.save_as(dicomdir)
    return {"media": media, "dicomdir": dicomdir, "outside": outside, "secret": secret_files[0]}


def test_dicomdir_outside_references_are_refused_on_the_command_line(
    hostile_media: dict[str, Path], cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(hostile_media["dicomdir"]), "-q"]) == EXIT_OK
    out = capsys.readouterr().out
    refusals = [line for line in out.splitlines() if line.startswith("  DICOMDIR:") and OUTSIDE in line]
    assert len(refusals) == 3 and all(line.endswith("(not read)") for line in refusals)
    assert "'../outside/IM0001.dcm'" in out and "'SUB/../../outside/IM0003.dcm'" in out
    assert "SECURITY^INSIDE" in out and "SECRET" not in out
    assert "1 series, 3 images" in out  # 6 listed, 3 refused


def test_dicomdir_outside_references_are_never_analysed(
    hostile_media: dict[str, Path], tiny_model: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = hostile_media["media"].parent / "report.pdf"
    code = main(
        ["analyze", str(hostile_media["dicomdir"]), "--model", str(tiny_model), "-q", "--report", str(report)]
    )
    captured = capsys.readouterr()
    assert code == EXIT_NOT_ASSESSED, captured.err  # 3 slices are far below a head's coverage
    refusals = [line for line in captured.err.splitlines() if OUTSIDE in line]
    assert len(refusals) == 3 and all(line.endswith("(not read)") for line in refusals)
    findings = [line for line in captured.out.splitlines() if "not assessed" in line]
    assert len(findings) == 1 and findings[0].startswith("#1 INSIDE head (3 slices)")  # 6 listed, 3 refused
    assert "SECRET" not in captured.out and report.read_bytes().startswith(b"%PDF")
    listing = read_dicomdir(hostile_media["dicomdir"])
    assert not any(str(hostile_media["outside"]) in f for f in listing.files)
    assert len(listing.files) == 3


def test_a_folder_scan_does_not_follow_a_hostile_dicomdir(
    hostile_media: dict[str, Path], cache_dir: Path
) -> None:
    index = scan(hostile_media["media"], use_cache=False)
    indexed = {h.path for s in index.series() for h in s.headers}
    assert all(p.startswith(str(hostile_media["media"])) for p in indexed)
    assert {h.patient_id for s in index.series() for h in s.headers} == {"INSIDE"}
    dicomdir = next(s for s in index.skipped if s.path == str(hostile_media["dicomdir"]))
    assert "DICOMDIR" in dicomdir.reason


# -- executable preambles ------------------------------------------------------------------------------------


def _shebang(marker: Path) -> bytes:
    script = f"#!/bin/sh\ntouch '{marker}'\nexit 0\n".encode()
    assert len(script) < 128
    return script.ljust(127, b"#") + b"\n"


PREAMBLES = {
    "elf": b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00",
    "mz": b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + b"This program cannot be run in DOS mode",
    "shebang": b"",  # filled per test: it names the marker file
}


@pytest.mark.parametrize("kind", sorted(PREAMBLES))
def test_an_executable_preamble_is_read_as_dicom_and_never_run(
    kind: str, tmp_path: Path, tiny_model: Path, cache_dir: Path
) -> None:
    marker = tmp_path / "EXECUTED"
    preamble = _shebang(marker) if kind == "shebang" else PREAMBLES[kind].ljust(128, b"\x00")
    folder = tmp_path / "series"
    files = _write_series(folder, "POLYGLOT")
    for f in files:
        data = bytearray(f.read_bytes())
        assert data[128:132] == b"DICM"
        data[:128] = preamble
        f.write_bytes(bytes(data))
        f.chmod(0o644)
    if kind == "shebang":  # the payload is live: run explicitly by a shell, it leaves the marker
        subprocess.run(["sh", str(files[0])], check=True, timeout=30)
        assert marker.exists()
        marker.unlink()
    before = {f: (f.stat().st_mode, hashlib.sha256(f.read_bytes()).hexdigest()) for f in files}

    index = scan(folder, use_cache=False)
    assert not index.skipped
    (stack,) = list(index.stacks())
    volume = load_stack(stack)
    assert volume.array.shape == (len(files), MIN_MATRIX_PX, MIN_MATRIX_PX) and not volume.skipped
    np.testing.assert_allclose(volume.array, 30.0)
    model, card = load_model(tiny_model)
    analyze_volume(volume, model, card, options=AnalysisOptions(device="cpu", key_slices=1))
    # analysed in full, though six uniform slices are far outside the model's intended use
    assert main(["analyze", str(folder), "--model", str(tiny_model), "-q"]) == EXIT_NOT_ASSESSED

    assert not marker.exists()
    for f, (mode, digest) in before.items():
        assert f.stat().st_mode == mode and not f.stat().st_mode & (
            stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        )
        assert hashlib.sha256(f.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cache", "models", "series"])


# -- model files that would run code -------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the folder ``path``: the marker that code from a model file ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


def _with_card(bad: Path, good: Path, *, matching_sha: bool) -> None:
    """Give ``bad`` a card copied from ``good``: with ``bad``'s own SHA-256, or left with ``good``'s."""
    card = json.loads(card_path_for(good).read_text())
    if matching_sha:
        card["sha256"] = sha256_file(bad)
    card_path_for(bad).write_text(json.dumps(card))


def _torch_zip(payload: object) -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": payload}, buffer)
    return buffer.getvalue()


def _pickle_in_zip(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        return zf.read(name)


@pytest.mark.parametrize("matching_sha", [True, False], ids=["card-matches", "card-of-other-weights"])
@pytest.mark.parametrize("kind", ["pickle", "torch-zip"])
def test_a_model_file_that_runs_code_is_refused(
    kind: str, matching_sha: bool, tmp_path: Path, tiny_model: Path
) -> None:
    marker = tmp_path / "EXECUTED"
    payload = _Payload(marker)
    if kind == "pickle":
        data = pickle.dumps({"weights": payload}, protocol=4)
        pickle.loads(data)  # the payload is live: unpickled, it leaves the marker
    else:
        data = _torch_zip(payload)
        torch.load(io.BytesIO(data), weights_only=False)  # the payload is live: torch.load runs it
    assert marker.exists()
    marker.rmdir()

    bad = tmp_path / "models" / "hostile.safetensors"
    bad.write_bytes(data)
    _with_card(bad, tiny_model, matching_sha=matching_sha)
    with pytest.raises(ViewerError) as err:
        load_weights(bad)
    message = str(err.value)
    if matching_sha:
        assert "pickle" in message and "only accepts safetensors" in message
    else:
        assert "SHA-256" in message or "pickle" in message
    with pytest.raises(ViewerError):
        load_model(bad)
    assert not marker.exists()


def test_a_model_whose_sha256_is_not_its_cards_is_refused_everywhere(
    tmp_path: Path, tiny_model: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(1)
    other = tmp_path / "other" / "model.safetensors"
    save_weights(SliceGRUNet(TINY).eval(), other, name="other", version="0")
    card = json.loads(card_path_for(other).read_text())
    card["sha256"] = json.loads(card_path_for(tiny_model).read_text())["sha256"]  # a card for other weights
    card_path_for(other).write_text(json.dumps(card))
    with pytest.raises(ViewerError, match="SHA-256") as err:
        load_weights(other)
    assert err.value.what == "Cannot load model weights" and "changed or damaged" in err.value.why
    with pytest.raises(ViewerError, match="SHA-256"):
        load_model(other)

    folder = tmp_path / "series"
    _write_series(folder, "SHA")
    assert main(["analyze", str(folder), "--model", str(other), "-q"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "SHA-256" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize(
    "content",
    [
        (2**63).to_bytes(8, "little") + b"{}",  # a header length past any file
        (40).to_bytes(8, "little")
        + b'{"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}}',
        (7).to_bytes(8, "little") + b'{"a": 1',  # truncated JSON
    ],
    ids=["absurd-header-length", "tensor-past-the-end", "truncated-header"],
)
def test_a_malformed_safetensors_file_is_refused(content: bytes, tmp_path: Path, tiny_model: Path) -> None:
    bad = tmp_path / "models" / "malformed.safetensors"
    bad.write_bytes(content)
    _with_card(bad, tiny_model, matching_sha=True)
    with pytest.raises(ViewerError) as err:
        load_weights(bad)
    assert err.value.what == "Cannot load model weights" and err.value.why


def test_weights_are_never_opened_with_torch_load(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    model, card = load_weights(tiny_model)
    assert card.name == "tiny" and not model.training
    bad = tmp_path / "models" / "ckpt.safetensors"
    bad.write_bytes(_torch_zip({"w": 1}))
    _with_card(bad, tiny_model, matching_sha=True)
    with pytest.raises(ViewerError, match="PyTorch checkpoint"):
        load_weights(bad)
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") in (None, "", "0", "1")
