"""Integer volumes: the narrowest integer type that holds the modality values exactly, float32 only where needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from viewer.dicom.headers import read_header
from viewer.dicom.modality_dtype import (
    FLOAT_PLAN,
    ModalityPlan,
    PlanBroken,
    check_frame,
    integer_type_for,
    modality_range,
    stored_range,
)
from viewer.dicom.pixels import LUT, ModalityParams, apply_modality_lut
from viewer.dicom.readers import SimpleITKReader, load_stack
from viewer.dicom.stacks import Stack, split_series

CT = "1.2.840.10008.5.1.4.1.1.2"


def _write(
    folder: Path,
    stored: np.ndarray,
    *,
    signed: bool,
    bits_stored: int = 16,
    slopes: list[float] | float = 1.0,
    intercepts: list[float] | float = 0.0,
    rle: bool = False,
) -> list[Path]:
    """A CT series built here with pydicom (not viewer.synth), one file per slice of ``stored``."""
    n = stored.shape[0]
    slopes = slopes if isinstance(slopes, list) else [slopes] * n
    intercepts = intercepts if isinstance(intercepts, list) else [intercepts] * n
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.BitsAllocated = stored.dtype.itemsize * 8
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = int(signed)
        ds.RescaleSlope = f"{slopes[k]:g}"
        ds.RescaleIntercept = f"{intercepts[k]:g}"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        if rle:
            ds.compress(RLELossless)
        path = folder / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _stack(paths: list[Path]) -> Stack:
    stacks = split_series([read_header(p) for p in paths])
    assert len(stacks) == 1
    return stacks[0]


def _expected(stored: np.ndarray, slopes: list[float] | float, intercepts: list[float] | float) -> np.ndarray:
    """The float path: modality values as float32 (what every volume held before integer volumes)."""
    n = stored.shape[0]
    slopes = slopes if isinstance(slopes, list) else [slopes] * n
    intercepts = intercepts if isinstance(intercepts, list) else [intercepts] * n
    return np.stack([apply_modality_lut(stored[k], slopes[k], intercepts[k]) for k in range(n)])


def _values(rng: np.random.Generator, lo: int, hi: int, dtype: str, n: int = 3) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=(n, 12, 10)).astype(dtype)


CASES = [
    # stored type, signed, BitsStored, value range, slope, intercept, expected volume type
    ("int16", True, 16, (-2000, 3000), 1.0, 0.0, np.int16),  # identity (SimpleITK's writer)
    ("uint16", False, 16, (0, 65535), 1.0, 0.0, np.uint16),  # identity, full unsigned range
    ("uint16", False, 12, (0, 4095), 1.0, -1024.0, np.int16),  # the classic CT layout
    ("int16", True, 16, (-1000, 3000), 1.0, -1024.0, np.int16),  # int32 by range, int16 by value
    ("uint16", False, 12, (0, 4095), 2.0, -1024.0, np.int16),  # integer slope
    ("uint16", False, 12, (0, 4095), -1.0, 3071.0, np.int16),  # MONOCHROME1-like negative slope
    ("uint8", False, 8, (0, 255), 1.0, 0.0, np.uint8),
    ("uint16", False, 12, (0, 4095), 0.5, -1024.0, np.float32),  # fractional slope
    ("uint16", False, 12, (0, 4095), 1.0, -1024.5, np.float32),  # fractional intercept
]


@pytest.mark.parametrize("stored_type, signed, bits, span, slope, intercept, expected", CASES)
def test_volume_type_is_the_narrowest_that_holds_the_values_exactly(
    tmp_path: Path, stored_type, signed, bits, span, slope, intercept, expected
) -> None:
    stored = _values(np.random.default_rng(1), *span, stored_type)
    paths = _write(tmp_path, stored, signed=signed, bits_stored=bits, slopes=slope, intercepts=intercept)
    volume = load_stack(_stack(paths))
    assert volume.array.dtype == expected
    reference = _expected(stored, slope, intercept)
    np.testing.assert_array_equal(volume.array, reference)  # the same HU as the float path, to the value
    assert volume.array.dtype == np.float32 or np.array_equal(
        volume.array.astype(np.float64), stored.astype(np.float64) * slope + intercept
    )


def test_identity_int16_is_read_straight_into_an_int16_volume(tmp_path: Path) -> None:
    stored = _values(np.random.default_rng(2), -32768, 32767, "int16")
    volume = load_stack(_stack(_write(tmp_path, stored, signed=True)))
    assert volume.array.dtype == np.int16 and volume.decoders == ("direct",)
    np.testing.assert_array_equal(volume.array, stored)
    assert volume.nbytes == stored.nbytes


def test_values_beyond_int16_fall_back_to_int32_exactly(tmp_path: Path) -> None:
    # BitsStored 16 with an intercept: int16 is tried first; one slice's -32768 - 1024 does not fit it.
    stored = _values(np.random.default_rng(3), -1000, 3000, "int16")
    stored[2, 0, 0] = -32768
    volume = load_stack(_stack(_write(tmp_path, stored, signed=True, intercepts=-1024.0)))
    assert volume.array.dtype == np.int32
    assert volume.array[2, 0, 0] == -33792
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)


def test_unsigned_values_that_need_more_than_16_bits_fall_back_exactly(tmp_path: Path) -> None:
    stored = _values(np.random.default_rng(4), 0, 65535, "uint16")
    stored[1, 3, 3] = 65535
    volume = load_stack(_stack(_write(tmp_path, stored, signed=False, intercepts=-1024.0)))
    assert volume.array.dtype == np.int32
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)


def test_slices_with_different_rescales_give_float32(tmp_path: Path) -> None:
    stored = _values(np.random.default_rng(5), 0, 4095, "uint16", n=4)
    intercepts = [-1024.0, -1024.0, 0.0, -1024.0]
    volume = load_stack(_stack(_write(tmp_path, stored, signed=False, bits_stored=12, intercepts=intercepts)))
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, _expected(stored, 1.0, intercepts))


def test_compressed_slices_keep_integers_too(tmp_path: Path) -> None:
    stored = _values(np.random.default_rng(6), 0, 4095, "uint16")
    paths = _write(tmp_path, stored, signed=False, bits_stored=12, intercepts=-1024.0, rle=True)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == RLELossless
    volume = load_stack(_stack(paths))
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)


def test_simpleitk_reader_agrees_on_the_values(tmp_path: Path) -> None:
    stored = _values(np.random.default_rng(7), -1000, 3000, "int16")
    stack = _stack(_write(tmp_path, stored, signed=True, intercepts=-1024.0))
    ours, theirs = load_stack(stack), SimpleITKReader().read(stack)
    assert ours.array.dtype == np.int16 and theirs.array.dtype.kind == "i"
    np.testing.assert_array_equal(ours.array, theirs.array)


def test_modality_lut_with_integer_table_keeps_integers() -> None:
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut as pydicom_modality_lut

    path = get_testdata_file("mlut_18.dcm")
    if path is None:
        pytest.skip("mlut_18.dcm (pydicom-data) is not installed")
    volume = load_stack(_stack([Path(path)]))
    ds = pydicom.dcmread(path)
    expected = pydicom_modality_lut(ds.pixel_array, ds)
    assert volume.array.dtype.kind in "iu"
    np.testing.assert_array_equal(volume.array[0], expected)


# ---------------------------------------------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------------------------------------------


def test_integer_type_for_picks_the_narrowest() -> None:
    assert integer_type_for(0, 255) == np.uint8
    assert integer_type_for(-128, 127) == np.int8
    assert integer_type_for(-1024, 3071) == np.int16
    assert integer_type_for(0, 65535) == np.uint16
    assert integer_type_for(-33792, 31743) == np.int32
    assert integer_type_for(0, 2**32 - 1) is None  # never uint32
    assert stored_range(12, False) == (0, 4095) and stored_range(16, True) == (-32768, 32767)


def test_modality_range_is_none_for_non_integer_transforms() -> None:
    assert modality_range(ModalityParams(1.0, -1024.0), 0, 4095) == (-1024, 3071)
    assert modality_range(ModalityParams(-1.0, 100.0), 0, 10) == (90, 100)
    assert modality_range(ModalityParams(0.5, 0.0), 0, 10) is None
    table = LUT(0, np.array([5, 7, 9], dtype=np.float32))
    assert modality_range(ModalityParams(lut=table), 0, 65535) == (5, 9)
    assert modality_range(ModalityParams(lut=LUT(0, np.array([0.5], dtype=np.float32))), 0, 1) is None


def test_check_frame_refuses_a_different_transform_or_values_that_do_not_fit() -> None:
    plan = ModalityPlan(np.dtype(np.int16), ModalityParams(1.0, -1024.0), FLOAT_PLAN)
    fits = np.array([[0, 4095]], dtype=np.uint16)
    check_frame(plan, ModalityParams(1.0, -1024.0), fits)
    with pytest.raises(PlanBroken) as other:
        check_frame(plan, ModalityParams(1.0, 0.0), fits)
    assert other.value.fallback.dtype == np.float32
    with pytest.raises(PlanBroken):
        check_frame(plan, ModalityParams(1.0, -1024.0), np.array([[0, 65535]], dtype=np.uint16))


def test_integer_rescale_wraps_to_the_exact_result() -> None:
    # uint16 stored, intercept -32768 into int16: every intermediate wraps, every result fits and is exact.
    stored = np.array([[0, 1, 32768, 65535]], dtype=np.uint16)
    out = np.empty(stored.shape, np.int16)
    apply_modality_lut(stored, 1.0, -32768.0, out=out)
    np.testing.assert_array_equal(out, [[-32768, -32767, 0, 32767]])
    out32 = np.empty(stored.shape, np.int32)
    apply_modality_lut(stored, 3.0, -5.0, out=out32)
    np.testing.assert_array_equal(out32, stored.astype(np.int64) * 3 - 5)
    with pytest.raises(ValueError, match="integer rescale"):
        apply_modality_lut(stored, 0.5, 0.0, out=out)
