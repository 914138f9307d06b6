"""GDCM's JPEG codec on a frame's bytes: the same values as pydicom's gdcm plugin and the source, and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import get_frame
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1

from viewer.dicom import gdcm_codec
from viewer.dicom.headers import read_header
from viewer.dicom.native_scan import compressed_source
from viewer.dicom.pixels import GDCM_CODEC, DecodeError, SourceFile
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.synth.simple import transcode_with_gdcm, write_bench_series

pytestmark = pytest.mark.skipif(not gdcm_codec.available(), reason="GDCM's Python wrapper is not installed")


def _signed(path: Path, bits_stored: int) -> np.ndarray:
    """Rewrite a bench slice as signed stored values (negative ones included); returns them."""
    ds = pydicom.dcmread(path)
    values = (ds.pixel_array.astype(np.int32) - 1024).astype(np.int16)
    values[0, :4] = [-(1 << (bits_stored - 1)), -1, 0, (1 << (bits_stored - 1)) - 1]
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, bits_stored, bits_stored - 1
    ds.RescaleIntercept = 0
    ds.PixelData = values.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return values


def _high_bits_set(path: Path) -> np.ndarray:
    """Set bits above Bits Stored (12) in some pixels, as old scanners left overlays there; returns the values
    the stored ones must read as."""
    ds = pydicom.dcmread(path)
    values = ds.pixel_array.copy()
    values[::3, ::5] |= 0x5000
    ds.PixelData = values.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return values & 0x0FFF


def test_bits_above_bits_stored_are_masked_as_the_plugin_masks_them(tmp_path: Path) -> None:
    path = write_bench_series(tmp_path / "s", 1, 48, ExplicitVRLittleEndian)[0]
    expected = _high_bits_set(path)
    transcode_with_gdcm(path, path, JPEGLosslessSV1)
    header = read_header(path)
    source = SourceFile(str(path), header.transfer_syntax_uid, header)
    ours = source.decode(0, [GDCM_CODEC])[0]
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours, source.decode(0, ["gdcm"])[0])


@pytest.mark.parametrize("signed_bits", [None, 16, 12])
def test_the_codec_gives_the_plugins_and_the_sources_values(tmp_path: Path, signed_bits: int | None) -> None:
    paths = write_bench_series(tmp_path / "s", 3, 48, ExplicitVRLittleEndian)
    stored = []
    for p in paths:
        stored.append(_signed(p, signed_bits) if signed_bits else pydicom.dcmread(p).pixel_array)
        transcode_with_gdcm(p, p, JPEGLosslessSV1)
    for p, values in zip(paths, stored, strict=True):
        header = read_header(p)
        for source in (SourceFile(str(p), header.transfer_syntax_uid, header), compressed_source(header)):
            assert source is not None
            ours, used = source.decode(0, [GDCM_CODEC])
            assert used == GDCM_CODEC and ours.dtype == source.stored_dtype
            np.testing.assert_array_equal(ours, source.decode(0, ["gdcm"])[0])
            np.testing.assert_array_equal(ours, values)
    volume = load_stack(split_series([read_header(p) for p in paths])[0])
    assert volume.decoders == (GDCM_CODEC,)


def test_what_the_codec_does_not_take_is_refused_and_the_next_decoder_used(tmp_path: Path) -> None:
    path = write_bench_series(tmp_path / "s", 1, 32, JPEGLosslessSV1)[0]
    source = compressed_source(read_header(path))
    assert source is not None
    frame = get_frame(source.ds.PixelData, 0, number_of_frames=1)
    args = (source.rows, source.columns, 16, 16, False)  # GDCM's transcoder writes 16-bit samples
    for syntax, bits, photometric in (
        (JPEG2000Lossless, args[2:], "MONOCHROME2"),
        (JPEGLosslessSV1, (32, 16, False), "MONOCHROME2"),
        (JPEGLosslessSV1, (8, 16, False), "MONOCHROME2"),
        (JPEGLosslessSV1, (16, 10, False), "MONOCHROME2"),  # no libjpeg build of 10 bits in GDCM
        (JPEGLosslessSV1, args[2:], "RGB"),
    ):
        with pytest.raises(gdcm_codec.CodecError):
            gdcm_codec.decode_jpeg_frame(frame, syntax, *args[:2], *bits, photometric)
    with pytest.raises(gdcm_codec.CodecError, match="bytes for a"):  # a cut codestream: part of a frame
        gdcm_codec.decode_jpeg_frame(frame[: len(frame) // 2], JPEGLosslessSV1, *args, "MONOCHROME2")
    with pytest.raises(gdcm_codec.CodecError, match="cannot decode"):
        gdcm_codec.decode_jpeg_frame(bytes(64), JPEGLosslessSV1, *args, "MONOCHROME2")
    whole = source.decode(0, [GDCM_CODEC])[0]
    source.ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + _item(frame[: len(frame) // 2])
    with pytest.raises(DecodeError, match="gdcm-codec: CodecError"):
        source.decode(0, [GDCM_CODEC])
    assert whole.shape == (32, 32)


def _item(data: bytes) -> bytes:
    data = data + b"\0" * (len(data) % 2)
    return b"\xfe\xff\x00\xe0" + len(data).to_bytes(4, "little") + data
