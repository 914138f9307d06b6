"""The scan that finds an uncompressed file's pixel data without pydicom, and its refusals."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from viewer.dicom.headers import read_header
from viewer.dicom.native_scan import _fragments_end, compressed_source, direct_source, scan_native
from viewer.dicom.pixels import GDCM_READER, PIXEL_DATA, DecodeError, SourceFile
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.synth.simple import write_bench_series


def _series(tmp_path: Path, syntax: str = ExplicitVRLittleEndian, n: int = 3) -> list[Path]:
    return write_bench_series(tmp_path / "s", n, 32, syntax)


def _rewrite(path: Path, edit, syntax: str | None = None) -> None:
    ds = pydicom.dcmread(path)
    edit(ds)
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_the_scan_finds_what_pydicom_finds_past_nested_sequences(tmp_path: Path, syntax: str) -> None:
    path = _series(tmp_path)[0]

    def add_sequences(ds: Dataset) -> None:
        inner = Dataset()
        inner.CodeValue, inner.CodeMeaning = "X", "nested"
        item = Dataset()
        item.ConceptNameCodeSequence = Sequence([inner])
        ds.ReferencedImageSequence = Sequence([item, Dataset()])
        ds["ReferencedImageSequence"].is_undefined_length = True  # delimited, as many generators write them
        item.is_undefined_length_sequence_item = True
        item["ConceptNameCodeSequence"].is_undefined_length = True
        ds.add_new(0x00091010, "UN", b"\x01\x02")  # a private element with a VR the scan only skips

    _rewrite(path, add_sequences, syntax)
    assert path.read_bytes().count(b"\xfe\xff\xdd\xe0") == 2  # two sequence delimiters: undefined lengths
    header = read_header(path)
    layout = scan_native(str(path), header)
    elem = pydicom.dcmread(path, defer_size=64).get_item(PIXEL_DATA, keep_deferred=True)
    assert layout is not None
    assert (layout.pixel_offset, layout.pixel_length) == (elem.value_tell, elem.length)
    assert layout.bits_stored == 12 and layout.has_rescale
    source = direct_source(header)
    assert source is not None
    parsed = SourceFile(str(path), header.transfer_syntax_uid, header)
    ours, theirs = np.empty((32, 32), np.int16), np.empty((32, 32), np.int16)
    source.grey_into(0, ours)
    parsed.grey_into(0, theirs, ())
    np.testing.assert_array_equal(ours, theirs)
    assert source.modality_params() == parsed.modality_params()


def test_files_that_need_more_than_the_scan_go_to_pydicom(tmp_path: Path) -> None:
    paths = _series(tmp_path, n=4)

    def modality_lut(ds: Dataset) -> None:
        item = Dataset()
        item.LUTDescriptor = [4, 0, 16]
        item.LUTData = np.arange(4, dtype="<u2").tobytes()
        ds.ModalityLUTSequence = Sequence([item])

    _rewrite(paths[0], modality_lut)
    assert direct_source(read_header(paths[0])) is None
    header = read_header(paths[1])
    os.utime(paths[1], ns=(header.mtime_ns + 10**9, header.mtime_ns + 10**9))
    assert scan_native(str(paths[1]), header) is None  # the indexed header is stale
    st = paths[1].stat()
    changed = replace(header, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns - 1)
    assert scan_native(str(paths[1]), changed) is None  # same size and mtime, another status-change time
    assert scan_native(str(paths[1]), replace(changed, ctime_ns=st.st_ctime_ns)) is not None
    compressed = write_bench_series(tmp_path / "rle", 1, 32, RLELossless)[0]
    assert scan_native(str(compressed), read_header(compressed)) is None
    raw = paths[2].read_bytes()
    paths[2].write_bytes(raw[:128] + b"XXXX" + raw[132:])
    assert scan_native(str(paths[2]), replace(read_header(paths[3]), path=str(paths[2]))) is None
    colour = replace(read_header(paths[3]), samples_per_pixel=3)
    assert direct_source(colour) is None


def test_a_truncated_header_block_is_refused_not_misread(tmp_path: Path) -> None:
    path = _series(tmp_path, n=1)[0]
    header = read_header(path)
    path.write_bytes(path.read_bytes()[:600])
    st = path.stat()
    assert (
        scan_native(str(path), replace(header, size=600, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns))
        is None
    )


def test_a_load_through_the_scan_equals_a_load_through_pydicom(tmp_path: Path, monkeypatch) -> None:
    paths = _series(tmp_path, n=5)
    stack = split_series([read_header(p) for p in paths])[0]
    fast = load_stack(stack)
    monkeypatch.setattr("viewer.dicom.readers.direct_source", lambda header, dest=None: None)
    slow = load_stack(stack)
    assert fast.array.dtype == slow.array.dtype == np.int16
    np.testing.assert_array_equal(fast.array, slow.array)
    assert fast.window == slow.window and fast.units == slow.units == "HU"


def test_sequences_nested_deeper_than_the_scan_follows_go_to_pydicom(tmp_path: Path) -> None:
    path = _series(tmp_path, n=1)[0]

    def nest(ds: Dataset) -> None:
        inner = Dataset()
        for _ in range(24):
            outer = Dataset()
            outer.ReferencedImageSequence = Sequence([inner])
            outer["ReferencedImageSequence"].is_undefined_length = True
            inner.is_undefined_length_sequence_item = True
            inner = outer
        ds.ReferencedImageSequence = inner.ReferencedImageSequence
        ds["ReferencedImageSequence"].is_undefined_length = True

    _rewrite(path, nest)
    header = read_header(path)
    assert scan_native(str(path), header) is None  # given up, not a RecursionError
    assert load_stack(split_series([header])[0]).array.shape == (1, 32, 32)  # pydicom reads it


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_slices_without_a_parse_equal_a_load_through_pydicom(
    tmp_path: Path, monkeypatch, syntax
) -> None:
    paths = _series(tmp_path, syntax, n=4)
    headers = [read_header(p) for p in paths]
    quick = compressed_source(headers[1])
    assert quick is not None and quick.minimal and quick.bits_stored == 12
    assert scan_native(str(paths[1]), headers[1]) is None  # the uncompressed scan refuses it
    stack = split_series(headers)[0]
    fast = load_stack(stack)
    monkeypatch.setattr("viewer.dicom.readers.compressed_source", lambda header, dest=None: None)
    slow = load_stack(stack)
    np.testing.assert_array_equal(fast.array, slow.array)
    assert fast.decoders == slow.decoders and fast.array.dtype == np.int16


def test_gdcms_reader_is_not_given_a_file_checked_only_by_its_quick_header(tmp_path: Path) -> None:
    path = _series(tmp_path, JPEGLSLossless, n=1)[0]
    quick = compressed_source(read_header(path))
    assert quick is not None
    with pytest.raises(DecodeError, match="full header"):
        quick.decode(0, [GDCM_READER])


def test_a_slice_the_quick_path_cannot_decode_is_retried_with_its_whole_header(
    tmp_path: Path, monkeypatch
) -> None:
    paths = _series(tmp_path, RLELossless, n=4)
    headers = [read_header(p) for p in paths]

    def garbled(header):
        source = compressed_source(header)
        if source is not None and header.path == str(paths[2]):  # fragments that parse, pixels that do not
            source.ds.PixelData = (
                b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\xfe\xff\x00\xe0\x10\x00\x00\x00" + bytes(16)
            )
        return source

    monkeypatch.setattr("viewer.dicom.readers.compressed_source", garbled)
    full: list[str] = []
    monkeypatch.setattr(SourceFile, "__init__", _recording(SourceFile.__init__, full))
    volume = load_stack(split_series(headers)[0])
    assert str(paths[2]) in full and str(paths[1]) not in full  # only that one was parsed again
    assert volume.array.shape[0] == 4 and not volume.skipped and volume.decoders == ("pylibjpeg",)
    assert _fragments_end(b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00") is None


def _recording(init, into: list[str]):
    def wrapped(self, path, *args, **kwargs):
        into.append(str(path))
        init(self, path, *args, **kwargs)

    return wrapped


def _stored(header) -> np.ndarray:
    kind = "i" if header.pixel_representation == 1 else "u"
    return np.empty((header.rows, header.columns), np.dtype(f"<{kind}{header.bits_allocated // 8}"))


def _via_pydicom(path: Path) -> np.ndarray:
    header = read_header(path)
    out = np.empty((header.rows, header.columns), np.float32)
    SourceFile(str(path), header.transfer_syntax_uid, header).grey_into(0, out, ())
    return out


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed layout", "guessed layout"])
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_header_and_pixels_read_in_one_call_equal_pydicoms_values(
    tmp_path: Path, monkeypatch, syntax: str, indexed: bool
) -> None:
    """One open and one read per file: at the offset the index recorded, or guessed (pixel data last) and
    checked by a scan of the header read in the same call."""
    path = _series(tmp_path, syntax, n=1)[0]
    header = read_header(path)
    assert header.native is not None
    if not indexed:
        header = replace(header, native=None)  # a header without the index's layout: the guess path
    dest = _stored(header)
    reads: list[int] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: reads.append(1) or real_open(*a, **k))
    source = direct_source(header, dest)
    assert source is not None and source._filled is not None  # pixels already in dest
    monkeypatch.setattr(os, "open", real_open)
    out = np.empty((32, 32), np.float32)
    source.grey_into(0, out, (), scratch=dest)
    assert len(reads) == 1 and source._filled is None
    np.testing.assert_array_equal(out, _via_pydicom(path))


def test_a_pre_read_frame_is_handed_over_once_and_only_for_frame_0(tmp_path: Path) -> None:
    path = _series(tmp_path, n=1)[0]
    header = read_header(path)
    dest = _stored(header)
    source = direct_source(header, dest)
    assert source is not None and source._filled is dest
    reference = _via_pydicom(path)
    out = np.empty((32, 32), np.float32)
    dest[...] = 0  # what is in the pre-read buffer is what is rescaled: nothing is read again
    source.grey_into(0, out, (), scratch=dest)
    assert (out == -1024).all() and source._filled is None  # zeros, rescaled
    source.grey_into(0, out, (), scratch=dest)  # later calls read the file
    np.testing.assert_array_equal(out, reference)
    other = direct_source(header, dest)
    assert other is not None and other._filled is dest
    dest[...] = 0
    other.grey_into(0, out, ())  # a call on other buffers (another slice's) reads the file itself
    np.testing.assert_array_equal(out, reference)
    volume = np.zeros((2, 32, 32), np.int16)
    third = direct_source(header, volume[1].view(np.uint16))
    assert third is not None
    volume[1] = 0
    third.grey_into(0, volume[0])  # not slice 1's memory: read from the file
    third.grey_into(0, volume[1])  # the pre-read buffer was handed over once, then it is read again
    np.testing.assert_array_equal(volume[0], reference)
    np.testing.assert_array_equal(volume[1], reference)
    with pytest.raises(DecodeError, match="fewer than 2"):
        direct_source(header, _stored(header)).grey_into(1, out, ())


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed layout", "no indexed layout"])
@pytest.mark.parametrize("where", ["trailing element", "modality LUT", "stale header", "odd 8-bit"])
def test_a_wrong_guess_or_an_odd_file_falls_back_to_the_scan_or_pydicom(
    tmp_path: Path, where: str, indexed: bool
) -> None:
    """Without the index's layout (a header made elsewhere) the file is scanned where the guess fails; with it,
    the pixels are read at their recorded place at once. Either way a stale header or a LUT goes to pydicom."""
    paths = _series(tmp_path, n=3)

    def edit(ds: Dataset) -> None:
        if where == "trailing element":
            ds.add_new(0xFFFCFFFC, "OB", bytes(6))  # Data Set Trailing Padding after the pixel data
        elif where == "modality LUT":
            item = Dataset()
            item.LUTDescriptor = [4, 0, 16]
            item.LUTData = np.arange(4, dtype="<u2").tobytes()
            ds.ModalityLUTSequence = Sequence([item])
        elif where == "odd 8-bit":
            ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 31, 31, 8, 8, 7
            ds.PixelRepresentation = 0
            ds.PixelData = (np.arange(31 * 31) % 251).astype(np.uint8).tobytes() + b"\0"

    if where != "stale header":
        _rewrite(paths[1], edit)
    header = read_header(paths[1])
    assert (header.native is None) == (where == "modality LUT")
    if not indexed:
        header = replace(header, native=None)
    if where == "stale header":
        os.utime(paths[1], ns=(header.mtime_ns + 10**9, header.mtime_ns + 10**9))
    dest = _stored(header)
    source = direct_source(header, dest)
    if where in ("modality LUT", "stale header"):
        assert source is None  # pydicom's to read
    else:
        # Read at the recorded place at once, or scanned and read at the pixel data's place.
        assert source is not None and source._filled is (dest if indexed else None)
        stored = _stored(header)
        out = np.empty(stored.shape, np.float32)
        source.grey_into(0, out, (), scratch=stored)
        np.testing.assert_array_equal(out, _via_pydicom(paths[1]))
    if where != "odd 8-bit":  # a stack of the three files loads as pydicom reads each
        stack = split_series([read_header(p) for p in paths])[0]
        volume = load_stack(stack)
        for k, p in enumerate(paths):
            np.testing.assert_array_equal(volume.array[k], _via_pydicom(p))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_the_index_records_the_layout_the_scan_finds(tmp_path: Path, syntax: str) -> None:
    """The header reader's layout equals the scan's for a file with nested sequences, and survives the header
    cache's JSON; a stale file is not read by it."""
    path = _series(tmp_path)[0]

    def add_sequences(ds: Dataset) -> None:
        item = Dataset()
        item.ReferencedSOPInstanceUID = "1.2.3"
        ds.ReferencedImageSequence = Sequence([item])
        ds["ReferencedImageSequence"].is_undefined_length = True
        ds.RescaleType = "HU"

    _rewrite(path, add_sequences, syntax)
    header = read_header(path)
    assert header.native is not None and header.native == scan_native(str(path), header)
    assert header.native.rescale_type == "HU" and header.native.has_rescale
    assert type(header).from_json(header.to_json()) == header
    os.utime(path, ns=(header.mtime_ns + 10**9, header.mtime_ns + 10**9))
    assert direct_source(header, _stored(header)) is None  # changed since it was indexed: pydicom's to read


@pytest.mark.parametrize(
    "syntax",
    ["1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", RLELossless],
    ids=["big endian", "deflated", "rle"],
)
def test_no_layout_is_recorded_where_the_pixels_are_not_plain_little_endian(
    tmp_path: Path, syntax: str
) -> None:
    if syntax == "1.2.840.10008.1.2.2":
        path = Path(get_testdata_file("MR_small_bigendian.dcm"))
    elif syntax == RLELossless:
        path = _series(tmp_path, RLELossless, n=1)[0]
    else:
        path = _series(tmp_path, n=1)[0]
        _rewrite(path, lambda ds: None, syntax)
    header = read_header(path)
    assert header.transfer_syntax_uid == syntax and header.native is None
    assert direct_source(header, _stored(header)) is None
