"""What native decoders print during a load lands in the debug log, never on the process's stderr."""

from __future__ import annotations

import logging
import os
import random
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom import uid as tsuids
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames

from viewer.dicom.codec_guard import MAX_MESSAGE, native_stderr_captured
from viewer.dicom.index import scan
from viewer.dicom.pixels import DecodeError, SourceFile
from viewer.dicom.readers import load_stack

GUARD_LOG = "viewer.dicom.codec_guard"


def _debug(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == GUARD_LOG]


def test_a_12_bit_jpeg_in_a_baseline_file_loads_and_gdcm_s_complaint_goes_to_the_debug_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """pylibjpeg and Pillow refuse the 12-bit frame; GDCM decodes it, after its libjpeg printed to fd 2."""
    ds = pydicom.dcmread(get_testdata_file("JPEG-lossy.dcm"))  # JPEG Extended, 12-bit samples
    ds.file_meta.TransferSyntaxUID = tsuids.JPEGBaseline8Bit
    path = tmp_path / "PATIENT_NAME_IN_PATH.dcm"
    ds.save_as(path)
    stack = next(scan([str(tmp_path)], use_cache=False).stacks())
    with caplog.at_level(logging.DEBUG, logger=GUARD_LOG):
        volume = load_stack(stack)
    assert volume.decoders == ("gdcm",) and volume.array.shape == (1, 1024, 256)
    assert capfd.readouterr().err == ""
    said = [m for m in _debug(caplog) if "Unsupported JPEG data precision 12" in m]
    assert said and said[0].startswith("decode: gdcm wrote to stderr: ")
    assert not any("PATIENT_NAME" in m for m in _debug(caplog))


def _corrupt_lossless_jpeg(tmp_path: Path) -> Path:
    """SC_rgb_jpeg_gdcm.dcm (JPEG Lossless SV1) with three bits of its codestream flipped."""
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    rng = random.Random(1)
    for _ in range(3):
        frame[rng.randrange(2, len(frame))] ^= 1 << rng.randrange(8)
    ds.PixelData = encapsulate([bytes(frame)])
    path = tmp_path / "corrupt.dcm"
    ds.save_as(path)
    return path


def test_a_frame_gdcm_fails_on_quotes_what_its_codec_printed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = _corrupt_lossless_jpeg(tmp_path)
    with caplog.at_level(logging.DEBUG, logger=GUARD_LOG), pytest.raises(DecodeError) as failed:
        SourceFile(str(path)).decode(0, ["gdcm"])
    assert "(it printed: Corrupt JPEG data: premature end of data segment)" in str(failed.value)
    assert capfd.readouterr().err == ""
    assert any("Corrupt JPEG data" in m for m in _debug(caplog))


def test_captures_on_threads_are_serialised_and_stderr_is_restored(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    before = os.fstat(2)

    def work(t: int) -> None:
        for k in range(25):
            with native_stderr_captured(f"t{t}"):
                os.write(2, f"thread {t} frame {k}\n".encode())

    with caplog.at_level(logging.DEBUG, logger=GUARD_LOG):
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    os.write(2, b"the process's own line\n")
    assert capfd.readouterr().err == "the process's own line\n"
    assert (os.fstat(2).st_ino, os.fstat(2).st_dev) == (before.st_ino, before.st_dev)
    expected = {f"decode: t{t} wrote to stderr: thread {t} frame {k}" for t in range(4) for k in range(25)}
    assert sorted(_debug(caplog)) == sorted(expected)  # each capture holds its own line, and only it


def test_a_capture_ends_when_the_decode_raises_and_keeps_no_path_or_excess(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = str(tmp_path / "Doe^Jane" / "1.dcm")
    with pytest.raises(RuntimeError):
        with native_stderr_captured("x", redact=(secret,)) as said:
            os.write(2, f"cannot read {secret}: ".encode() + b"y" * 5000 + b"\n")
            raise RuntimeError("codec failed")
    assert said.text.startswith("cannot read <file>: yyy") and len(said.text) == MAX_MESSAGE + 1
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_nested_captures_share_the_outer_one(capfd: pytest.CaptureFixture[str]) -> None:
    with native_stderr_captured("outer") as outer:
        with native_stderr_captured("inner") as inner:
            os.write(2, b"inner line\n")
        os.write(2, b"outer line\n")
    assert (outer.text, inner.text) == ("inner line | outer line", "")
    assert capfd.readouterr().err == ""
