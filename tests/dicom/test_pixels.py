"""The pixel pipeline steps on numpy, and decoding of pydicom's bundled files with every decoder we choose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid as tsuids
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from viewer.dicom.headers import read_header
from viewer.dicom.pixels import (
    DECODERS,
    GDCM_CODEC,
    GDCM_READER,
    LUT,
    DecodeError,
    SourceFile,
    apply_modality_lut,
    apply_voi_window,
    decoder_order,
    invert,
    lut_from_item,
    mask_unused_bits,
    robust_window,
    to_display,
    to_rgb8,
    window_from_lut,
)
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.errors import ViewerError


def _path(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return str(path)


def _load(name: str):
    stacks = split_series([read_header(_path(name))])
    assert len(stacks) == 1
    return load_stack(stacks[0])


# ---------------------------------------------------------------------------------------------------------------
# Pipeline steps
# ---------------------------------------------------------------------------------------------------------------


def test_modality_rescale_gives_float32_values() -> None:
    stored = np.array([[0, 1024, 4095]], dtype=np.uint16)
    out = apply_modality_lut(stored, 1.0, -1024.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[-1024, 0, 3071]])
    np.testing.assert_allclose(apply_modality_lut(stored, 0.5, 10.0), [[10, 522, 2057.5]])
    np.testing.assert_array_equal(apply_modality_lut(stored), stored)


def test_modality_rescale_writes_into_the_given_slice() -> None:
    volume = np.zeros((2, 1, 3), dtype=np.float32)
    stored = np.array([[5, 6, 7]], dtype=np.int16)
    result = apply_modality_lut(stored, 2.0, 1.0, out=volume[1])
    assert result is not None and np.shares_memory(result, volume)
    np.testing.assert_array_equal(volume[1], [[11, 13, 15]])
    np.testing.assert_array_equal(volume[0], 0)


def test_modality_lut_replaces_rescale_and_clamps() -> None:
    lut = LUT(first_mapped=10, table=np.array([100, 200, 300], dtype=np.float32))
    stored = np.array([0, 10, 11, 12, 99], dtype=np.uint16)
    np.testing.assert_array_equal(apply_modality_lut(stored, 5.0, 5.0, lut), [100, 100, 200, 300, 300])


def test_lut_from_sequence_item_reads_list_and_ow_data() -> None:
    item = Dataset()
    item.LUTDescriptor = [3, 2, 16]
    item.LUTData = [7, 8, 9]
    lut = lut_from_item(item)
    assert (lut.first_mapped, lut.n_entries) == (2, 3)
    item.LUTData = np.array([7, 8, 9], dtype="<u2").tobytes()
    np.testing.assert_array_equal(lut_from_item(item).table, [7, 8, 9])
    assert window_from_lut(lut) == (3.5, 3.0)


def test_voi_window_follows_the_dicom_linear_function() -> None:
    # PS3.3 C.11.2.1.2.1 with c = 40, w = 80: 0 at x <= 0.5 - 39.5 = 0, 1 above 79, linear between.
    x = np.array([-1000, 0.0, 39.5, 79.0, 80.0, 3000], dtype=np.float32)
    y = apply_voi_window(x, 40, 80)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0, 0, 0.5, 1, 1, 1], atol=1e-6)
    assert 0 < apply_voi_window(np.array([20.0]), 40, 80)[0] < 0.5
    np.testing.assert_array_equal(apply_voi_window(np.array([-1.0, 1.0]), 0.5, 1), [0, 1])


def test_voi_window_narrower_than_one_uses_linear_exact() -> None:
    y = apply_voi_window(np.array([0.9, 1.0, 1.1]), 1.0, 0.2)
    np.testing.assert_allclose(y, [0, 0.5, 1], atol=1e-6)
    with pytest.raises(ValueError):
        apply_voi_window(np.zeros(2), 0, 0)


def test_invert_and_display_compose() -> None:
    np.testing.assert_allclose(invert(np.array([0.0, 0.25, 1.0])), [1, 0.75, 0])
    values = np.array([-1000.0, 40.0, 1000.0])
    np.testing.assert_allclose(to_display(values, 40, 80), [0, 0.5, 1], atol=0.01)
    np.testing.assert_allclose(to_display(values, 40, 80, inverted=True), [1, 0.5, 0], atol=0.01)


def test_robust_window_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(40, 10, 100_000).astype(np.float32)
    values[:50] = 30000  # metal
    center, width = robust_window(values)
    assert 35 < center < 45 and 30 < width < 60
    assert robust_window(np.full(10, 7.0)) == (7.0, 1.0)
    assert robust_window(np.array([0.9, 1.1, 1.0] * 100))[1] < 1  # real-valued data keeps a narrow window


def test_unused_bits_are_masked_or_sign_extended() -> None:
    unsigned = np.array([0xF123], dtype=np.uint16)  # overlay garbage above bit 11
    assert mask_unused_bits(unsigned, 12, 16)[0] == 0x123
    signed = np.array([0x0FFF], dtype=np.int16)  # 12-bit −1 stored without sign extension
    assert mask_unused_bits(signed, 12, 16)[0] == -1
    untouched = np.array([0x7FFF], dtype=np.int16)
    assert mask_unused_bits(untouched, 16, 16)[0] == 0x7FFF


def test_rgb_of_any_depth_becomes_8_bit() -> None:
    rgb16 = np.array([[[65535, 256, 0]]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb8(rgb16, 16), [[[255, 1, 0]]])
    rgb8 = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert to_rgb8(rgb8, 8) is rgb8


# ---------------------------------------------------------------------------------------------------------------
# Decoder choice
# ---------------------------------------------------------------------------------------------------------------


def test_every_compressed_syntax_pydicom_decodes_has_a_choice() -> None:
    for ts in tsuids.AllTransferSyntaxes:
        if ts.is_encapsulated and ts in tsuids.PrivateTransferSyntaxes:
            continue
        try:
            get_decoder(ts)
        except NotImplementedError:
            continue
        assert ts in DECODERS, ts.name


def test_decoder_order_prefers_gdcm_for_lossless_jpeg_and_rle_plugin_for_rle() -> None:
    assert decoder_order(tsuids.JPEGLosslessSV1)[:2] == (GDCM_CODEC, "gdcm")
    assert decoder_order(tsuids.JPEGExtended12Bit)[0] == GDCM_CODEC
    # GDCM aborts the process on a corrupt JPEG 2000 codestream, so it is never used for JPEG 2000.
    for ts in (tsuids.JPEG2000Lossless, tsuids.JPEG2000):
        assert "gdcm" not in decoder_order(ts) and GDCM_READER not in decoder_order(ts)
    assert decoder_order(tsuids.RLELossless)[0] == "pylibjpeg"
    assert decoder_order(tsuids.JPEGBaseline8Bit)[-1] == GDCM_READER
    assert decoder_order(tsuids.ExplicitVRLittleEndian) == ("",)


# ---------------------------------------------------------------------------------------------------------------
# pydicom's bundled files
# ---------------------------------------------------------------------------------------------------------------

MR_LOSSLESS = [
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_padded.dcm",
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", MR_LOSSLESS)
def test_lossless_variants_equal_the_uncompressed_reference(name: str) -> None:
    reference = _load("MR_small.dcm")
    volume = _load(name)
    assert volume.array.dtype == reference.array.dtype == np.int16 and volume.array.shape == (1, 64, 64)
    np.testing.assert_array_equal(volume.array, reference.array)
    np.testing.assert_allclose(volume.affine, reference.affine)
    assert volume.window == reference.window


def test_uncompressed_ct_uses_the_direct_read_and_rescales_to_hu() -> None:
    volume = _load("CT_small.dcm")
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(volume.array[0], expected)
    assert volume.decoders == ("direct",)
    assert volume.units == "HU" and volume.modality == "CT"


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"])
def test_lossy_and_signed_jpeg_files_decode_like_pydicom(name: str) -> None:
    volume = _load(name)
    ds = pydicom.dcmread(_path(name))
    expected = apply_modality_lut(
        ds.pixel_array, float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    )
    np.testing.assert_array_equal(volume.array[0], expected)


def test_12_bit_jpeg_extended_decodes_as_gdcms_reader_does() -> None:
    # pydicom's GDCM plugin refuses 12-bit JPEG Extended and libjpeg rejects this file; GDCM's 12-bit codec on the
    # frame decodes it, to the pixels of GDCM's whole-file reader (SimpleITK's) and of the other encoding of the
    # same image within a grey level.
    volume = _load("JPEG-lossy.dcm")
    assert volume.decoders == (GDCM_CODEC,)
    source = SourceFile(_path("JPEG-lossy.dcm"))
    np.testing.assert_array_equal(source.decode(0, [GDCM_CODEC])[0], source.decode(0, [GDCM_READER])[0])
    same_image = _load("JPGExtended.dcm")
    assert np.abs(volume.array.astype(np.int64) - same_image.array).max() <= 1


def test_12_bit_jpeg_extended_is_gdcms_values_within_a_grey_level_of_pydicoms() -> None:
    # A lossy codestream: libjpeg (pydicom's default) and GDCM's IJG 12-bit build round a few pixels apart.
    volume = _load("JPGExtended.dcm")
    assert volume.decoders == (GDCM_CODEC,)
    source = SourceFile(_path("JPGExtended.dcm"))
    np.testing.assert_array_equal(source.decode(0, [GDCM_CODEC])[0], source.decode(0, [GDCM_READER])[0])
    ds = pydicom.dcmread(_path("JPGExtended.dcm"))
    expected = apply_modality_lut(
        ds.pixel_array, float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    )
    assert np.abs(volume.array[0] - expected).max() <= 1


COLOUR = [
    "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # lossless JPEG
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_rgb_gdcm_KY.dcm",
    "SC_rgb_jls_lossy_line.dcm",
]


@pytest.mark.parametrize("name", COLOUR)
def test_colour_variants_become_the_same_rgb_image(name: str) -> None:
    reference = _load("SC_rgb_rle.dcm").array
    volume = _load(name)
    assert volume.is_colour and volume.array.dtype == np.uint8 and volume.array.shape == (1, 100, 100, 3)
    diff = np.abs(volume.array.astype(int) - reference.astype(int))
    lossless = "rle" in name or name == "SC_rgb_jpeg_gdcm.dcm"
    assert diff.max() == 0 if lossless else diff.mean() < 3, name
    assert volume.units == "" and not volume.invert


def test_ybr_422_uncompressed_and_multiframe_ybr_jpeg_are_rgb() -> None:
    volume = _load("SC_ybr_full_422_uncompressed.dcm")
    assert volume.array.shape == (1, 100, 100, 3)
    assert np.abs(volume.array.astype(int) - _load("SC_rgb_rle.dcm").array.astype(int)).mean() < 3
    cine = _load("examples_ybr_color.dcm")
    assert cine.is_colour and cine.array.shape == (30, 240, 320, 3)
    ds = pydicom.dcmread(_path("examples_ybr_color.dcm"))
    assert cine.decoders == ("pillow",)  # the fastest baseline decoder (viewer.dicom.pixels.DECODERS)
    np.testing.assert_array_equal(
        cine.array[3], pydicom.pixels.pixel_array(ds, index=3, decoding_plugin="pillow")
    )
    other = pydicom.pixels.pixel_array(
        ds, index=3, decoding_plugin="pylibjpeg"
    )  # another IDCT and upsampling
    assert np.abs(cine.array[3].astype(int) - other).max() <= 3


def test_palette_colour_is_expanded_to_rgb() -> None:
    from pydicom.pixels.processing import apply_color_lut

    volume = _load("examples_palette.dcm")
    ds = pydicom.dcmread(_path("examples_palette.dcm"))
    expected = apply_color_lut(ds.pixel_array, ds)
    expected = (expected >> 8).astype(np.uint8) if expected.dtype == np.uint16 else expected
    assert volume.is_colour
    np.testing.assert_array_equal(volume.array[0], expected)


def test_deflated_dataset_decodes() -> None:
    volume = _load("image_dfl.dcm")
    ds = pydicom.dcmread(_path("image_dfl.dcm"))
    np.testing.assert_array_equal(volume.array[0], ds.pixel_array)


def test_rt_dose_frames_become_slices_at_their_grid_offsets() -> None:
    volume = _load("rtdose.dcm")
    ds = pydicom.dcmread(_path("rtdose.dcm"))
    assert volume.array.shape == (15, 10, 10)
    assert volume.units == ("Gy" if ds.DoseUnits == "GY" else "")  # this file holds RELATIVE dose
    np.testing.assert_allclose(volume.array, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)
    offsets = np.asarray(ds.GridFrameOffsetVector, float)
    assert volume.spacing[0] == pytest.approx(abs(offsets[1] - offsets[0]))
    np.testing.assert_allclose(volume.positions[:, 2] - volume.positions[0, 2], offsets - offsets[0])
    for other in ("rtdose_rle.dcm", "rtdose_expb.dcm"):
        np.testing.assert_array_equal(_load(other).array, volume.array)


def test_an_undecodable_file_is_refused_naming_the_series() -> None:
    with pytest.raises(ViewerError) as err:
        _load("JPEG2000-embedded-sequence-delimiter.dcm")
    assert "Could not load series" in str(err.value)
    assert "cannot decode" in err.value.why


CROSS_CHECK = [
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "693_J2KI.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "MR_small_RLE.dcm",
]


@pytest.mark.parametrize("name", CROSS_CHECK)
def test_every_installed_decoder_gives_the_same_pixels(name: str) -> None:
    path = _path(name)
    source = SourceFile(path)
    plugins = list(get_decoder(source.transfer_syntax).available_plugins)
    results = {p: source.decode(0, [p])[0] for p in plugins if p != "pillow"}
    if source.transfer_syntax != tsuids.RLELossless:
        results[GDCM_READER] = source.decode(0, [GDCM_READER])[0]
    assert len(results) >= 2
    first = next(iter(results.values()))
    for plugin, arr in results.items():
        np.testing.assert_array_equal(arr, first, err_msg=f"{name}: {plugin}")


CORRUPT_J2K_SCRIPT = """
import os, shutil, sys, pydicom, pydicom.data
from viewer.dicom.headers import read_header
from viewer.dicom.stacks import split_series
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError
p = os.path.join(sys.argv[1], "corrupt.dcm")
shutil.copy(pydicom.data.get_testdata_file("MR_small_jp2klossless.dcm"), p)
ds = pydicom.dcmread(p)
data = bytearray(ds.PixelData)
for i in range(200, len(data) - 10, 7):
    data[i] ^= 0xFF
ds.PixelData = bytes(data)
ds.save_as(p)
try:
    load_stack(split_series([read_header(p)])[0])
except ViewerError:
    pass
print("survived")
"""


def test_corrupt_jpeg2000_never_kills_the_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", CORRUPT_J2K_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "survived" in run.stdout


def _deflate_bomb(path: Path, side: int) -> int:
    """A CT slice of side × side zero pixels in Deflated Explicit VR Little Endian, written without ever holding
    the inflated dataset; returns its inflated size in bytes."""
    import io
    import zlib

    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import CTImageStorage, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n_pixel_bytes = side * side * 2
    body.write(b"\xe0\x7f\x10\x00OW\x00\x00" + n_pixel_bytes.to_bytes(4, "little"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = tsuids.DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out.write(deflater.compress(body.getvalue()))
    zeros = bytes(1 << 20)
    for start in range(0, n_pixel_bytes, len(zeros)):
        out.write(deflater.compress(zeros[: n_pixel_bytes - start]))
    out.write(deflater.flush())
    path.write_bytes(out.getvalue())
    return len(body.getvalue()) + n_pixel_bytes


def test_a_deflate_bomb_stops_at_the_inflate_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from viewer.dicom.headers import INFLATE_LIMIT_ENV, SkippedFile
    from viewer.dicom.index import scan

    bomb = tmp_path / "bomb.dcm"
    assert _deflate_bomb(bomb, 10_000) > 190 << 20 and bomb.stat().st_size < 1 << 20
    monkeypatch.setenv(INFLATE_LIMIT_ENV, "64")
    started = time.monotonic()
    with pytest.raises(SkippedFile) as skipped:
        read_header(bomb)
    assert skipped.value.why.startswith(
        "its header describes 191 MB of pixel data (10000 × 10000 × 1 sample(s)"
    )
    assert skipped.value.why.endswith(
        "more than 64 MB, the limit for a deflated file (GRU_VIEWER_INFLATE_LIMIT_MB)"
    )
    index = scan([str(tmp_path)], use_cache=False)
    assert [s.reason for s in index.skipped] == [skipped.value.why]
    with pytest.raises(DecodeError, match="more than 64 MB, the limit for a deflated file"):
        SourceFile(str(bomb))
    assert time.monotonic() - started < 20


def test_a_deflated_file_within_the_limit_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer.dicom.headers import INFLATE_LIMIT_ENV

    monkeypatch.setenv(INFLATE_LIMIT_ENV, "64")
    path = get_testdata_file("image_dfl.dcm")
    header = read_header(path)
    assert header.transfer_syntax_uid == tsuids.DeflatedExplicitVRLittleEndian
    volume = load_stack(split_series([header])[0])
    np.testing.assert_array_equal(volume.array[0], pydicom.dcmread(path).pixel_array)
    small = tmp_path / "small.dcm"
    _deflate_bomb(small, 1000)  # 2 MB of zeros: well within the limit
    volume = load_stack(split_series([read_header(small)])[0])
    assert volume.array.shape == (1, 1000, 1000) and not volume.array.any()


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.uint8])
def test_display_steps_give_the_same_result_for_integer_and_float32_values(dtype) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    values = rng.integers(max(info.min, -3000), min(info.max, 4000) + 1, (64, 48)).astype(dtype)
    as_float = values.astype(np.float32)
    for center, width in ((40.0, 80.0), (600.0, 2800.0), (100.5, 1.0), (10.0, 0.5)):
        for inverted in (False, True):
            np.testing.assert_array_equal(
                to_display(values, center, width, inverted), to_display(as_float, center, width, inverted)
            )
    assert robust_window(values) == robust_window(as_float)
