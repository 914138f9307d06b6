"""Deflated files are inflated once, within what their own header allows (never past the overall cap)."""

from __future__ import annotations

import io
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid as tsuids
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from viewer.dicom.headers import INFLATE_MARGIN, SkippedFile, read_header
from viewer.dicom.index import scan
from viewer.dicom.pixels import DecodeError, SourceFile
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series

ZEROS = bytes(1 << 20)


def _bomb(path: Path, side: int, pixel_bytes: int | None = None) -> int:
    """A deflated CT slice of ``side`` × ``side`` 16-bit pixels whose Pixel Data holds ``pixel_bytes`` zeros
    (default: as many as the header says), written in a few ms however large it inflates: after a full flush
    deflate forgets its history, so each MB of zeros compresses to the same bytes, written once and repeated.
    Returns the inflated size of the dataset."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = tsuids.CTImageStorage, tsuids.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = (
        tsuids.generate_uid(),
        tsuids.generate_uid(),
        "CT",
    )
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    n = side * side * 2 if pixel_bytes is None else pixel_bytes
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    body.write(b"\xe0\x7f\x10\x00OW\x00\x00" + n.to_bytes(4, "little"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = tsuids.DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out.write(deflater.compress(body.getvalue()) + deflater.flush(zlib.Z_FULL_FLUSH))
    block = deflater.compress(ZEROS) + deflater.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(n, len(ZEROS))
    out.write(block * whole)
    out.write(deflater.compress(ZEROS[:rest]) + deflater.flush())
    path.write_bytes(out.getvalue())
    return len(body.getvalue()) + n


def test_the_bomb_helper_inflates_to_what_it_says(tmp_path: Path) -> None:
    path = tmp_path / "b.dcm"
    size = _bomb(path, 1000, 3_500_000)
    data = path.read_bytes()
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")  # after (0002,0000) File Meta Group Length
    assert len(zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)) == size


def _skip_reason(path: Path) -> tuple[str, float, int]:
    """Why the index skips ``path``, how long reading its header took and the peak of Python allocations."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(SkippedFile) as skipped:
            read_header(path)
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return skipped.value.why, took, peak


def test_a_bomb_whose_header_describes_2_gb_is_refused_before_its_pixels_inflate(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.dcm"
    assert _bomb(bomb, 33_000) > 2_100_000_000 and bomb.stat().st_size < 3 << 20  # the shape
    why, took, peak = _skip_reason(bomb)
    assert why == (
        "its header describes 2077 MB of pixel data (33000 × 33000 × 1 sample(s) × 16 bits × 1 frame(s)), more "
        "than 512 MB, the limit for a deflated file (GRU_VIEWER_INFLATE_LIMIT_MB)"
    )
    assert took < 20 and peak < 1 << 30
    index = scan([str(tmp_path)], use_cache=False)
    assert [s.reason for s in index.skipped] == [why]
    with pytest.raises(DecodeError, match="more than 512 MB, the limit for a deflated file"):
        SourceFile(str(bomb))


def test_a_small_image_whose_pixel_data_inflates_to_2_gb_stops_at_its_own_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.dcm"
    assert _bomb(bomb, 512, 2_100_000_000) > 2_000_000_000 and bomb.stat().st_size < 3 << 20
    why, took, peak = _skip_reason(bomb)
    assert why == (
        "inflates past 1.5 MB, the most its header allows: 0.5 MB of pixel data (512 × 512 × 1 sample(s) × 16 "
        "bits × 1 frame(s)) and 1.0 MB for the rest of the dataset"
    )
    assert took < 20 and peak < 1 << 30
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="inflates past 1.5 MB, the most its header allows"):
            SourceFile(str(bomb))
        assert tracemalloc.get_traced_memory()[1] < 64 << 20  # stopped near 1.5 MB, not at the 512 MB cap
    finally:
        tracemalloc.stop()


def test_the_margin_admits_elements_after_the_pixel_data(tmp_path: Path) -> None:
    """Pixel data one byte longer than the image (padding) loads; past the margin it does not."""
    ok, over = tmp_path / "ok", tmp_path / "over"
    ok.mkdir(), over.mkdir()
    _bomb(ok / "a.dcm", 1024, 1024 * 1024 * 2 + INFLATE_MARGIN // 2)
    assert read_header(ok / "a.dcm").rows == 1024
    _bomb(over / "a.dcm", 1024, 1024 * 1024 * 2 + 2 * INFLATE_MARGIN)
    with pytest.raises(SkippedFile, match="the most its header allows"):
        read_header(over / "a.dcm")


def test_a_deflated_ct_loads_to_the_right_hu(tmp_path: Path) -> None:
    source = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(source)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.file_meta.TransferSyntaxUID = tsuids.DeflatedExplicitVRLittleEndian
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    header = read_header(path)
    assert header.transfer_syntax_uid == tsuids.DeflatedExplicitVRLittleEndian
    volume = load_stack(split_series([header])[0])
    expected = ds.pixel_array.astype(np.float32) - 1024
    assert volume.units == "HU"
    np.testing.assert_array_equal(np.asarray(volume.array[0], dtype=np.float32), expected)
