"""Phantom CT series on disk, loaded into volumes: known HU, true geometry, and what the loader must report."""

from __future__ import annotations

import hashlib
import math
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from viewer.dicom.geometry import build_geometry
from viewer.dicom.headers import read_header
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import Stack, split_series
from viewer.dicom.volume import Volume
from viewer.errors import CancelledError, ViewerError
from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series

PIXEL_SPACING = (0.7, 0.6)  # rows ≠ columns, so a swapped dy/dx shows


def _meta() -> SeriesMeta:
    return SeriesMeta.invented(
        "Test^Volume",
        "VOL-1",
        "AXIAL 2mm",
        series_number=3,
        birth_date="19600102",
        sex="F",
        study_date="20240301",
        study_time="101500",
        accession_number="ACC42",
    )


def _hu(n: int, rows: int = 24, cols: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 2000, size=(n, rows, cols)).astype(np.float32)


def _write(
    folder: Path,
    n: int = 8,
    *,
    spacing_z: float = 2.0,
    tilt_deg: float = 0.0,
    feet_first: bool = False,
    seed: int = 0,
    matrix: tuple[int, int] = (24, 20),
    **kwargs,
) -> tuple[list[Path], np.ndarray, np.ndarray, tuple[float, ...]]:
    hu = _hu(n, *matrix, seed=seed)
    positions, orientation = axial_geometry(
        n, spacing_z, PIXEL_SPACING, (hu.shape[1], hu.shape[2]), tilt_deg=tilt_deg, feet_first=feet_first
    )
    paths = write_ct_series(
        hu,
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=PIXEL_SPACING,
        slice_thickness=spacing_z,
        meta=kwargs.pop("meta", None) or _meta(),
        **kwargs,
    )
    return paths, hu, positions, orientation


def _stacks(paths: list[Path]) -> list[Stack]:
    return split_series([read_header(p) for p in paths])


def _digest(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _expected_point(
    positions: np.ndarray, orientation: tuple[float, ...], k: int, j: float, i: float
) -> np.ndarray:
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return positions[k] + col * j * PIXEL_SPACING[0] + row * i * PIXEL_SPACING[1]


# ---------------------------------------------------------------------------------------------------------------
# Geometry and values
# ---------------------------------------------------------------------------------------------------------------


def test_series_loads_in_true_geometry_with_metadata(tmp_path: Path) -> None:
    paths, hu, positions, orientation = _write(tmp_path, 8)
    before = _digest(paths)
    volume = load_stack(_stacks(paths)[0])
    assert _digest(paths) == before  # loading never writes

    assert volume.array.dtype == np.int16 and volume.array.shape == hu.shape
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.positions, positions, atol=1e-4)
    assert volume.spacing == pytest.approx((2.0, 0.7, 0.6))
    assert volume.origin == pytest.approx(tuple(positions[0]), abs=1e-4)
    assert volume.orientation == pytest.approx(orientation)
    for k, j, i in [(0, 0, 0), (3, 5, 7), (7, 23, 19)]:
        expected = _expected_point(positions, orientation, k, j, i)
        np.testing.assert_allclose(volume.affine @ [k, j, i, 1], [*expected, 1], atol=1e-4)
        np.testing.assert_allclose(volume.voxel_to_patient(k, j, i), expected, atol=1e-4)
    assert volume.slice_position_mm(3) == pytest.approx(positions[3, 2], abs=1e-4)
    assert volume.units == "HU" and volume.modality == "CT" and volume.window == (40.0, 80.0)
    assert not volume.invert and not volume.is_colour and volume.slice_thickness == 2.0
    assert volume.nbytes == hu.size * 2
    assert volume.warnings == [] and volume.skipped == []
    assert volume.identifiers.patient_name == "Test^Volume" and volume.identifiers.accession_number == "ACC42"
    assert (
        volume.identifiers.institution == "GRU Viewer Phantom Lab" and volume.identifiers.series_number == "3"
    )
    ds = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    assert volume.sop_uids == [d.SOPInstanceUID for d in ds]
    assert volume.study_uid == ds[0].StudyInstanceUID and volume.series_uid == ds[0].SeriesInstanceUID


def test_shuffled_file_names_do_not_change_the_order(tmp_path: Path) -> None:
    names = [f"{name:03d}.dcm" for name in np.random.default_rng(3).permutation(10)]
    paths, hu, positions, _ = _write(tmp_path, 10, file_names=names)
    volume = load_stack(_stacks(paths)[0])
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.positions, positions, atol=1e-4)


def test_feet_first_series_is_shown_from_the_lowest_slice(tmp_path: Path) -> None:
    paths, hu, positions, _ = _write(tmp_path, 6, feet_first=True)
    volume = load_stack(_stacks(paths)[0])
    np.testing.assert_array_equal(volume.array, hu[::-1])
    np.testing.assert_allclose(volume.positions, positions[::-1], atol=1e-4)
    assert np.all(np.diff(volume.positions[:, 2]) > 0)
    assert volume.spacing[0] == pytest.approx(2.0)


def test_missing_slice_is_reported_and_kept_at_true_positions(tmp_path: Path) -> None:
    paths, hu, positions, orientation = _write(tmp_path, 9)
    paths[4].unlink()
    kept = [p for k, p in enumerate(paths) if k != 4]
    volume = load_stack(_stacks(kept)[0])
    assert volume.n_slices == 8
    np.testing.assert_array_equal(volume.array, np.delete(hu, 4, axis=0))
    assert any("missing slice" in w for w in volume.warnings)
    assert volume.spacing[0] == pytest.approx(2.0)
    true_positions = np.delete(positions, 4, axis=0)
    for k in (3, 4, 7):
        np.testing.assert_allclose(
            volume.voxel_to_patient(k, 2, 3), _expected_point(true_positions, orientation, k, 2, 3), atol=1e-4
        )


def test_gantry_tilt_keeps_patient_coordinates_true(tmp_path: Path) -> None:
    tilt = 15.0
    paths, hu, positions, orientation = _write(tmp_path, 7, spacing_z=2.0, tilt_deg=tilt)
    volume = load_stack(_stacks(paths)[0])
    np.testing.assert_array_equal(volume.array, hu)
    assert any("tilt" in w for w in volume.warnings)
    assert volume.spacing[0] == pytest.approx(2.0 * math.cos(math.radians(tilt)), abs=1e-3)
    np.testing.assert_allclose(volume.affine[:3, 0], positions[1] - positions[0], atol=1e-3)
    for k, j, i in [(0, 0, 0), (6, 10, 4), (3, 23, 19)]:
        expected = _expected_point(positions, orientation, k, j, i)
        np.testing.assert_allclose(volume.affine @ [k, j, i, 1], [*expected, 1], atol=1e-3)
        np.testing.assert_allclose(volume.voxel_to_patient(k, j, i), expected, atol=1e-3)


def test_monochrome1_keeps_hu_and_asks_for_inverted_display(tmp_path: Path) -> None:
    paths, hu, _, _ = _write(tmp_path, 4, photometric="MONOCHROME1")
    volume = load_stack(_stacks(paths)[0])
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.invert and volume.units == "HU"


def test_unused_high_bits_are_ignored_on_the_direct_path(tmp_path: Path) -> None:
    paths, hu, _, _ = _write(tmp_path, 3)
    for p in paths:
        ds = pydicom.dcmread(p)
        assert ds.BitsStored == 12
        ds.PixelData = (
            (ds.pixel_array | 0xF000).astype(np.uint16).tobytes()
        )  # overlay bits left by old scanners
        ds.save_as(p)
    volume = load_stack(_stacks(paths)[0])
    assert volume.decoders == ("direct",)
    np.testing.assert_array_equal(volume.array, hu)


def test_localizer_beside_axials_gives_two_stacks(tmp_path: Path) -> None:
    paths, hu, _, _ = _write(tmp_path, 6)
    ds = pydicom.dcmread(paths[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    ds.InstanceNumber = 99
    localizer = tmp_path / "localizer.dcm"
    ds.save_as(localizer)
    stacks = _stacks([*paths, localizer])
    assert [s.n_slices for s in stacks] == [6, 1]
    axial, scout = (load_stack(s) for s in stacks)
    np.testing.assert_array_equal(axial.array, hu)
    np.testing.assert_array_equal(scout.array[0], hu[0])
    assert scout.orientation == pytest.approx((0, 1, 0, 0, 0, -1))
    assert axial.stack_uid != scout.stack_uid and axial.series_uid == scout.series_uid


def test_single_image_without_geometry_gets_identity_geometry() -> None:
    path = get_testdata_file("image_dfl.dcm")
    volume = load_stack(_stacks([Path(path)])[0])
    assert volume.n_slices == 1
    assert volume.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    # (k, j, i) → (z, y, x): slices step along +z, rows along +y, columns along +x
    np.testing.assert_array_equal(volume.affine[:3, :3], [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(volume.affine[:3, 3], 0)
    assert volume.warnings == ["no pixel spacing in the files: distances are in pixels, not mm"]


def test_enhanced_ct_frames_become_slices_sorted_along_the_normal(tmp_path: Path) -> None:
    n, rows, cols = 5, 12, 10
    hu = _hu(n, rows, cols, seed=5)
    z = np.array([8.0, 6.0, 4.0, 2.0, 0.0])  # frames stored head first
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
        generate_uid(),
        generate_uid(),
        generate_uid(),
    )
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 7, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = list(PIXEL_SPACING), 2.0
    plane = Dataset()
    plane.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    rescale = Dataset()
    rescale.RescaleIntercept, rescale.RescaleSlope, rescale.RescaleType = -1024, 1, "HU"
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = 50, 350
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    shared.PixelValueTransformationSequence = Sequence([rescale])
    shared.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for f in range(n):
        item, pos, content = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [-3.0, -4.0, float(z[f])]
        content.StackID, content.InStackPositionNumber = "1", f + 1
        item.PlanePositionSequence = Sequence([pos])
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)

    volume = load_stack(_stacks([path])[0])
    np.testing.assert_array_equal(volume.array, hu[::-1])
    np.testing.assert_allclose(volume.positions[:, 2], z[::-1])
    assert volume.spacing == pytest.approx((2.0, 0.7, 0.6))
    assert volume.units == "HU" and volume.window == (50.0, 350.0)
    assert volume.sources == [(str(path), f) for f in range(n - 1, -1, -1)]


def test_colour_frames_stay_colour() -> None:
    volume = load_stack(_stacks([Path(get_testdata_file("SC_rgb_rle_2frame.dcm"))])[0])
    assert volume.is_colour and volume.array.shape == (2, 100, 100, 3) and volume.array.dtype == np.uint8
    assert not np.array_equal(volume.array[0], volume.array[1])


# ---------------------------------------------------------------------------------------------------------------
# Damage
# ---------------------------------------------------------------------------------------------------------------


# Small pixel data is read with the header; 128² is larger than the parser's defer size and read from its offset.
@pytest.mark.parametrize(("damaged", "matrix"), [(0, (24, 20)), (3, (24, 20)), (3, (128, 128))])
def test_file_truncated_after_indexing_is_skipped_and_geometry_recomputed(
    tmp_path: Path, damaged: int, matrix: tuple[int, int]
) -> None:
    paths, hu, positions, _ = _write(tmp_path, 7, matrix=matrix)
    stack = _stacks(paths)[0]
    with open(paths[damaged], "r+b") as fh:
        fh.truncate(paths[damaged].stat().st_size - 300)
    volume = load_stack(stack)
    assert volume.n_slices == 6
    np.testing.assert_array_equal(volume.array, np.delete(hu, damaged, axis=0))
    np.testing.assert_allclose(volume.positions, np.delete(positions, damaged, axis=0), atol=1e-4)
    assert [p for p, _ in volume.skipped] == [str(paths[damaged])]
    assert "truncated" in volume.skipped[0][1]
    assert any(str(paths[damaged]) in w for w in volume.warnings)
    assert any("missing slice" in w for w in volume.warnings) == (damaged != 0)
    np.testing.assert_allclose(volume.origin, np.delete(positions, damaged, axis=0)[0], atol=1e-4)


def test_undecodable_compressed_slice_is_skipped(tmp_path: Path) -> None:
    paths, hu, _, _ = _write(tmp_path, 5, transfer_syntax=JPEG2000Lossless, matrix=(64, 64))
    stack = _stacks(paths)[0]
    data = bytearray(paths[2].read_bytes())
    start = data.find(b"\xff\x4f\xff\x51")  # JPEG 2000 codestream: SOC + SIZ markers
    assert start > 0
    data[start : start + 64] = bytes(64)
    paths[2].write_bytes(bytes(data))
    volume = load_stack(stack)
    assert volume.n_slices == 4
    np.testing.assert_array_equal(volume.array, np.delete(hu, 2, axis=0))
    assert volume.skipped[0][0] == str(paths[2]) and "cannot decode" in volume.skipped[0][1]
    assert any("missing slice" in w for w in volume.warnings)


def test_stack_that_cannot_load_names_the_series(tmp_path: Path) -> None:
    paths, _, _, _ = _write(tmp_path, 3)
    stack = _stacks(paths)[0]
    for p in paths:
        p.unlink()
    with pytest.raises(ViewerError) as err:
        load_stack(stack)
    assert "series 3" in str(err.value) and "AXIAL 2mm" in str(err.value)
    assert "disappeared" in err.value.why


# ---------------------------------------------------------------------------------------------------------------
# Progress, cancel, slices as they come, threads, memory
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 3])
def test_progress_and_slices_arrive_in_display_order(tmp_path: Path, workers: int) -> None:
    paths, hu, _, _ = _write(tmp_path, 6, feet_first=True)
    seen: list[tuple[int, np.ndarray]] = []
    ticks: list[tuple[int, int]] = []
    volume = load_stack(
        _stacks(paths)[0],
        workers=workers,
        on_slice=lambda k, a: seen.append((k, a.copy())),
        progress=lambda done, total, text: ticks.append((done, total)),
    )
    assert [k for k, _ in seen] == list(range(6))
    for k, a in seen:
        np.testing.assert_array_equal(a, hu[::-1][k])
    assert ticks[-1] == (6, 6) and [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    np.testing.assert_array_equal(volume.array, hu[::-1])


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_between_slices(tmp_path: Path, workers: int) -> None:
    paths, _, _, _ = _write(tmp_path, 8)
    loaded: list[int] = []
    with pytest.raises(CancelledError):
        load_stack(
            _stacks(paths)[0],
            workers=workers,
            on_slice=lambda k, a: loaded.append(k),
            cancel=lambda: len(loaded) >= 3,
        )
    assert loaded == [0, 1, 2]


def test_peak_numpy_memory_stays_within_one_and_a_half_volumes(tmp_path: Path) -> None:
    n = 24
    hu = _hu(n, 96, 96)
    positions, orientation = axial_geometry(n, 1.0, PIXEL_SPACING, 96)
    paths = write_ct_series(
        hu,
        tmp_path,
        positions=positions,
        orientation=orientation,
        pixel_spacing=PIXEL_SPACING,
        slice_thickness=1.0,
        meta=_meta(),
    )
    stack = _stacks(paths)[0]
    tracemalloc.start()
    try:
        volume = load_stack(stack, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * volume.nbytes, (peak, volume.nbytes)


def test_simpleitk_reader_is_reachable_through_load_stack(tmp_path: Path) -> None:
    paths, hu, _, _ = _write(tmp_path, 4)
    volume = load_stack(_stacks(paths)[0], reader="simpleitk")
    assert volume.reader == "simpleitk"
    np.testing.assert_array_equal(volume.array, hu)
    with pytest.raises(ValueError):
        load_stack(_stacks(paths)[0], reader="nonsense")


# ---------------------------------------------------------------------------------------------------------------
# Geometry helper and Volume on their own
# ---------------------------------------------------------------------------------------------------------------


def test_build_geometry_without_positions_steps_along_the_normal() -> None:
    geo = build_geometry([None, None, None], (0, 1, 0, 0, 0, -1), (0.5, 0.25), 3.0)
    assert geo.spacing == (3.0, 0.5, 0.25)
    np.testing.assert_allclose(geo.positions[2], [-6.0, 0, 0])  # normal of sagittal (0,1,0)×(0,0,-1) = −x
    assert geo.warnings == []


def test_volume_extrapolates_outside_and_interpolates_between_slices() -> None:
    positions = np.array([[0, 0, 0], [0, 0, 2], [0, 0, 4], [0, 0, 10]], float)  # a gap after slice 2
    geo = build_geometry(list(positions), (1, 0, 0, 0, 1, 0), (1.0, 1.0), 2.0)
    assert any(w.kind == "gap" for w in geo.warnings)
    volume = Volume(
        array=np.zeros((4, 2, 2), np.float32),
        spacing=geo.spacing,
        origin=geo.origin,
        orientation=geo.orientation,
        positions=geo.positions,
        affine=geo.affine,
        stack_uid="s",
        series_uid="s",
        study_uid="t",
        sop_uids=["a", "b", "c", "d"],
    )
    assert geo.spacing[0] == 2.0
    assert volume.slice_position_mm(3) == pytest.approx(10.0)
    assert volume.slice_position_mm(2.5) == pytest.approx(7.0)
    assert volume.slice_position_mm(-1) == pytest.approx(-2.0)
    np.testing.assert_allclose(volume.voxel_to_patient(3, 1, 1), [1, 1, 10])


def test_file_names_that_are_not_utf8_load(tmp_path: Path) -> None:
    paths, hu, _, _ = _write(tmp_path, 4)
    odd = [p.with_name(os.fsdecode(b"caf\xe9-%d.dcm" % k)) for k, p in enumerate(paths)]
    for p, q in zip(paths, odd, strict=True):
        p.rename(q)
    volume = load_stack(_stacks(odd)[0])
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.skipped == []


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_files_without_preamble_and_meta_load_like_the_same_files_with(
    tmp_path: Path, implicit: bool
) -> None:
    paths, hu, positions, _ = _write(tmp_path / "with", 6)
    bare = []
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.file_meta
        ds.preamble = None
        q = tmp_path / "bare" / p.name
        q.parent.mkdir(exist_ok=True)
        pydicom.dcmwrite(q, ds, enforce_file_format=False, implicit_vr=implicit, little_endian=True)
        assert q.read_bytes()[128:132] != b"DICM"
        bare.append(q)
    expected = load_stack(_stacks(paths)[0])
    volume = load_stack(_stacks(bare)[0])
    assert volume.skipped == [] and volume.warnings == expected.warnings
    np.testing.assert_array_equal(volume.array, expected.array)
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.positions, positions, atol=1e-4)


def test_a_file_without_preamble_is_read_only_when_the_header_reader_accepted_it(tmp_path: Path) -> None:
    from viewer.dicom.pixels import DecodeError, SourceFile

    paths, _, _, _ = _write(tmp_path, 1)
    ds = pydicom.dcmread(paths[0])
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "bare.dcm"
    pydicom.dcmwrite(bare, ds, enforce_file_format=False)
    header = read_header(bare)
    assert SourceFile(str(bare), header.transfer_syntax_uid, header).rows == 24
    with pytest.raises(DecodeError, match="force"):
        SourceFile(str(bare))  # no header: not accepted as DICOM by the header reader
