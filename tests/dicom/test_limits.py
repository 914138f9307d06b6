"""Bounds on what one file or folder may cost: header elements and bytes at index time, slices per stack at load.

Each shape is built small (a header of 200 000 elements is 2 MB on disk) and checked against a limit lowered
through its environment variable, so the test stays fast while the code path is the one the default limit takes.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from viewer.dicom.headers import (
    MAX_HEADER_ELEMENTS_ENV,
    MAX_HEADER_MB_ENV,
    SkippedFile,
    max_header_elements,
    max_header_mb,
    read_header,
)
from viewer.dicom.index import scan
from viewer.dicom.readers import MAX_STACK_SLICES_ENV, load_stack, max_stack_slices
from viewer.errors import ViewerError
from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series

PEAK_LIMIT_MB = 64.0  # far under the 1 GiB the limits are there to keep: a regression shows at once


def _series(folder: Path, n: int, size: int = 2, **kwargs: object) -> list[Path]:
    meta = SeriesMeta.invented("Test^Limits", "LM-1", "LIMITS", series_number=2)
    positions, orientation = axial_geometry(n, 1.0, (0.5, 0.5), (size, size))
    return write_ct_series(
        np.zeros((n, size, size), np.float32),
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.5, 0.5),
        slice_thickness=1.0,
        meta=meta,
        **kwargs,
    )


def _private(k: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little-endian private element (short length), the ``k``-th of a run of them."""
    group, element = 0x0009 + 2 * (k // 0xFF00), 0x0100 + k % 0xFF00
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _nested(n: int) -> bytes:
    """A private sequence of undefined length whose items hold ``n`` elements in all."""
    items = b"".join(
        struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + struct.pack("<HH2sH", 0x0009, 0x1001, b"LO", 2)
        + b"ab"
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        for _ in range(n)
    )
    head = struct.pack("<HH2sHI", 0x0009, 0x1000, b"SQ", 0, 0xFFFFFFFF)
    return head + items + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def _with_elements(path: Path, elements: bytes) -> Path:
    """``path`` with ``elements`` spliced in before its first element of group 0010 (dataset order kept)."""
    data = path.read_bytes()
    ds = pydicom.dcmread(path)
    tag = next(t for t in ds.keys() if t.group >= 0x0010)
    at = ds.get_item(tag, keep_deferred=True).value_tell - 8
    path.write_bytes(data[:at] + elements + data[at:])
    return path


def _splice(dataset: bytes, elements: bytes) -> bytes:
    """An explicit VR little-endian ``dataset`` with ``elements`` before its first element of group 0010."""
    ds = read_dataset(io.BytesIO(dataset), False, True)
    tag = next(t for t in ds.keys() if t.group >= 0x0010)
    at = ds.get_item(tag, keep_deferred=True).value_tell - 8
    return dataset[:at] + elements + dataset[at:]


def _with_elements_deflated(path: Path, elements: bytes) -> Path:
    """A deflated ``path`` with ``elements`` spliced into its dataset, deflated again."""
    data = path.read_bytes()
    fh = io.BytesIO(data)
    read_preamble(fh, False)
    read_dataset(fh, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    start = fh.tell()
    dataset = _splice(zlib.decompress(data[start:], -zlib.MAX_WBITS), elements)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    path.write_bytes(data[:start] + deflater.compress(dataset) + deflater.flush())
    return path


def _peak_mb(fn) -> tuple[object, float]:
    tracemalloc.start()
    try:
        try:
            result: object = fn()
        except (SkippedFile, ViewerError) as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_limits_default_and_follow_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (max_header_elements(), max_header_mb(), max_stack_slices()) == (500_000, 64, 2000)
    monkeypatch.setenv(MAX_HEADER_ELEMENTS_ENV, "1000")
    monkeypatch.setenv(MAX_HEADER_MB_ENV, "2")
    monkeypatch.setenv(MAX_STACK_SLICES_ENV, "10")
    assert (max_header_elements(), max_header_mb(), max_stack_slices()) == (1000, 2, 10)
    for env in (MAX_HEADER_ELEMENTS_ENV, MAX_HEADER_MB_ENV, MAX_STACK_SLICES_ENV):
        monkeypatch.setenv(env, "not a number")
    assert (max_header_elements(), max_header_mb(), max_stack_slices()) == (500_000, 64, 2000)


@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_a_header_of_200000_elements_is_skipped_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    (path,) = _series(tmp_path, 1)
    n = 200_000
    elements = b"".join(_private(k, b"LO", b"ab") for k in range(n)) if shape == "flat" else _nested(n)
    _with_elements(path, elements)
    monkeypatch.setenv(MAX_HEADER_ELEMENTS_ENV, "20000")
    result, peak = _peak_mb(lambda: read_header(path))
    assert isinstance(result, SkippedFile)
    assert "more than 20000 data elements" in result.why and MAX_HEADER_ELEMENTS_ENV in result.why
    assert peak < PEAK_LIMIT_MB

    index = scan(tmp_path, use_cache=False, workers=1)
    assert [(s.path, s.reason) for s in index.skipped] == [(str(path), result.why)]
    assert not list(index.stacks())


def test_a_deflated_header_of_200000_elements_is_skipped_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = _series(tmp_path, 1, transfer_syntax=DeflatedExplicitVRLittleEndian)
    _with_elements_deflated(path, b"".join(_private(k, b"LO", b"ab") for k in range(2000)))
    assert read_header(path).rows == 2  # the spliced file is sound
    _with_elements_deflated(path, b"".join(_private(k, b"LO", b"ab") for k in range(200_000)))
    monkeypatch.setenv(MAX_HEADER_ELEMENTS_ENV, "20000")
    result, peak = _peak_mb(lambda: read_header(path))
    assert isinstance(result, SkippedFile)
    assert "more than 20000 data elements" in result.why
    assert peak < PEAK_LIMIT_MB


def test_a_header_under_the_limits_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (path,) = _series(tmp_path, 1)
    _with_elements(path, b"".join(_private(k, b"LO", b"ab") for k in range(2000)))
    monkeypatch.setenv(MAX_HEADER_ELEMENTS_ENV, "20000")
    assert read_header(path).rows == 2


def test_a_header_of_many_megabytes_of_values_is_skipped_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = _series(tmp_path, 1)
    # 600 values of 4000 bytes: short enough to be read (not left on disk), 2.4 MB in all.
    values = b"".join(
        struct.pack("<HH2sHI", 0x0009, 0x0100 + k, b"OB", 0, 4000) + b"x" * 4000 for k in range(600)
    )
    _with_elements(path, values)
    monkeypatch.setenv(MAX_HEADER_MB_ENV, "1")
    result, peak = _peak_mb(lambda: read_header(path))
    assert isinstance(result, SkippedFile)
    assert "more than 1 MB of values" in result.why and MAX_HEADER_MB_ENV in result.why
    assert peak < PEAK_LIMIT_MB


def test_a_stack_past_the_slice_limit_is_refused_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _series(tmp_path, 300)
    index = scan(tmp_path, use_cache=False, workers=1)
    (stack,) = index.stacks()
    assert stack.n_slices == 300
    monkeypatch.setenv(MAX_STACK_SLICES_ENV, "100")
    result, peak = _peak_mb(lambda: load_stack(stack, workers=1))
    assert isinstance(result, ViewerError)
    assert "300 slices, more than the 100" in result.why and MAX_STACK_SLICES_ENV in result.why
    assert peak < 1.0  # refused before a file is opened
    monkeypatch.setenv(MAX_STACK_SLICES_ENV, "300")
    assert load_stack(stack, workers=1).array.shape == (300, 2, 2)
