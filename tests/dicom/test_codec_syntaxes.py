"""Lossy and near-lossless syntaxes load within their codec's error of the source, with the chosen decoder, and
agree with SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import HTJ2K, HTJ2KLossless, JPEGBaseline8Bit, JPEGExtended12Bit

from viewer.dicom.headers import read_header
from viewer.dicom.pixels import decoder_order
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.synth import codec_series
from viewer.synth.codec_series import (
    LOSSLESS_CODEC_SYNTAXES,
    TOLERANCE,
    Tolerance,
    can_write,
    write_codec_series,
)


def _load(paths: list[Path], reader: str = "pydicom"):
    return load_stack(split_series([read_header(p) for p in paths])[0], reader=reader)


LOSSY = [t for t in TOLERANCE if t not in LOSSLESS_CODEC_SYNTAXES]


@pytest.mark.parametrize("syntax", LOSSY, ids=[pydicom.uid.UID(t).keyword for t in LOSSY])
def test_each_lossy_syntax_loads_within_its_codecs_error(tmp_path: Path, syntax: str) -> None:
    if can_write(syntax):
        pytest.skip(can_write(syntax))
    series = write_codec_series(tmp_path, 3, 64, syntax)
    coded = pydicom.dcmread(series.paths[0])
    assert coded.file_meta.TransferSyntaxUID == syntax and coded.LossyImageCompression == "01"
    source = _load(series.source_paths)
    ours = _load(series.paths)
    assert ours.decoders == (decoder_order(syntax)[0],)  # the table's first choice did every slice
    assert ours.array.dtype == source.array.dtype == np.int16
    slope = float(coded.RescaleSlope)
    in_hu = Tolerance(series.tolerance.max_abs * slope, series.tolerance.rms * slope)
    assert in_hu.accepts(ours.array, source.array)
    assert not np.array_equal(ours.array, source.array) or syntax == JPEGExtended12Bit  # it is lossy
    sitk = _load(series.paths, reader="simpleitk")
    assert in_hu.accepts(sitk.array, source.array)
    if syntax == JPEGBaseline8Bit:  # 8-bit: stored × 16 − 1024
        assert set(np.unique((source.array + 1024) % 16)) == {0}


def test_a_decoder_that_misdecodes_fails_the_tolerance() -> None:
    source = np.arange(64 * 64, dtype=np.int32).reshape(64, 64) % 4096
    tolerance = TOLERANCE[JPEGExtended12Bit]
    assert tolerance.accepts(source + 1, source)
    assert not tolerance.accepts(source + 16, source)  # an offset
    assert not tolerance.accepts(source.astype("<u2").byteswap() & 0xFFF, source)  # swapped bytes


@pytest.mark.parametrize("syntax", [HTJ2KLossless, HTJ2K])
def test_without_an_htj2k_encoder_the_series_is_refused_saying_why(
    tmp_path: Path, syntax: str, monkeypatch
) -> None:
    monkeypatch.setattr(codec_series.shutil, "which", lambda _name: None)
    assert "HTJ2K encoder" in can_write(syntax) and "openjph-tools" in can_write(syntax)
    with pytest.raises(ValueError, match="HTJ2K encoder"):
        write_codec_series(tmp_path, 1, 16, syntax)
    assert decoder_order(syntax) == ("pylibjpeg",)  # decoding stays possible: pylibjpeg-openjpeg reads HTJ2K


@pytest.mark.skipif(bool(can_write(HTJ2KLossless)), reason=can_write(HTJ2KLossless) or "-")
def test_htj2k_lossless_loads_exactly_in_one_process_and_in_many(tmp_path: Path) -> None:
    from viewer.dicom import decode_pool
    from viewer.dicom.readers import PydicomReader

    series = write_codec_series(tmp_path, 4, 64, HTJ2KLossless)
    assert pydicom.dcmread(series.paths[0]).file_meta.TransferSyntaxUID == HTJ2KLossless
    source = _load(series.source_paths)
    ours = _load(series.paths)
    assert ours.decoders == ("pylibjpeg",) and np.array_equal(ours.array, source.array)
    if decode_pool.unavailable() is None:
        stack = split_series([read_header(p) for p in series.paths])[0]
        decode_pool.pool()
        try:
            assert np.array_equal(PydicomReader().read(stack).array, source.array)
        finally:
            decode_pool.shutdown()
