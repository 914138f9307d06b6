"""Our reader and SimpleITK's give the same volume (3D Slicer's test_AlternateReaders), and decoders agree."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from viewer.dicom.headers import read_header
from viewer.dicom.pixels import GDCM_CODEC, GDCM_READER, SourceFile
from viewer.dicom.readers import PydicomReader, SimpleITKReader, get_reader, load_stack
from viewer.dicom.stacks import Stack, split_series
from viewer.dicom.volume import Volume
from viewer.errors import ViewerError
from viewer.synth.simple import transcode_with_gdcm
from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series

PIXEL_SPACING = (0.8, 0.5)


def _meta() -> SeriesMeta:
    return SeriesMeta.invented(
        "Test^Readers",
        "RD-1",
        "READERS",
        series_number=5,
        sex="M",
        study_date="20240401",
        study_time="080000",
        accession_number="ACC7",
    )


def _oblique(n: int, spacing: float, angle_deg: float) -> tuple[np.ndarray, tuple[float, ...]]:
    """Axial slices rotated about the patient z axis: neither identity cosines nor a tilt."""
    a = math.radians(angle_deg)
    row = np.array([math.cos(a), math.sin(a), 0.0])
    col = np.array([-math.sin(a), math.cos(a), 0.0])
    normal = np.cross(row, col)
    positions = np.array([[-20.0, -30.0, 5.0]]) + np.arange(n)[:, None] * spacing * normal[None, :]
    return positions, (*row, *col)


def _series(
    folder: Path,
    n: int = 6,
    rows: int = 40,
    cols: int = 32,
    *,
    oblique_deg: float = 0.0,
    **kwargs,
) -> tuple[list[Path], np.ndarray]:
    rng = np.random.default_rng(n + rows)
    hu = rng.integers(-1000, 1800, size=(n, rows, cols)).astype(np.float32)
    if oblique_deg:
        positions, orientation = _oblique(n, 1.5, oblique_deg)
    else:
        positions, orientation = axial_geometry(n, 1.5, PIXEL_SPACING, (rows, cols), feet_first=True)
    paths = write_ct_series(
        hu,
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=PIXEL_SPACING,
        slice_thickness=1.5,
        meta=_meta(),
        **kwargs,
    )
    return paths, hu


def _stack(paths: list[Path]) -> Stack:
    stacks = split_series([read_header(p) for p in paths])
    assert len(stacks) == 1
    return stacks[0]


def _assert_same_volume(a: Volume, b: Volume) -> None:
    np.testing.assert_array_equal(a.array, b.array)
    # Both keep integers when the values are integers; GDCM (in SimpleITK) sizes its type from the stored
    # range (int32 for BitsStored 16 with an intercept), ours from the values (int16).
    assert a.array.dtype.kind == b.array.dtype.kind
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-4)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.orientation, b.orientation, atol=1e-5)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-3)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    assert a.sop_uids == b.sop_uids
    assert (a.window, a.units, a.invert, a.is_colour, a.identifiers) == (
        b.window,
        b.units,
        b.invert,
        b.is_colour,
        b.identifiers,
    )


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"oblique_deg": 20.0},
        {"transfer_syntax": ImplicitVRLittleEndian},
        {"transfer_syntax": RLELossless},
        {"transfer_syntax": JPEG2000Lossless, "rows": 64, "cols": 64},
        {"file_names": [f"{k:02d}.dcm" for k in (4, 0, 5, 2, 3, 1)]},
    ],
    ids=["axial-feet-first", "oblique", "implicit", "rle", "j2k", "shuffled"],
)
def test_both_readers_give_the_same_volume(tmp_path: Path, case: dict) -> None:
    paths, hu = _series(tmp_path, **case)
    stack = _stack(paths)
    ours = PydicomReader().read(stack)
    theirs = SimpleITKReader().read(stack)
    _assert_same_volume(ours, theirs)
    np.testing.assert_array_equal(ours.array, hu[::-1] if not case.get("oblique_deg") else hu)
    assert (ours.reader, theirs.reader) == ("pydicom", "simpleitk")


def test_monochrome1_readers_differ_and_ours_follows_the_modality_lut(tmp_path: Path) -> None:
    # The writer stores 4095 − raw with slope −1, intercept 3071, so HU = 3071 − stored (PS3.3 C.11.1: the
    # modality LUT applies to stored values whatever the photometric interpretation). GDCM, under SimpleITK,
    # inverts MONOCHROME1 stored values before the rescale, which mirrors the HU about (3071 − 1024) / 2.
    paths, hu = _series(tmp_path, 3, photometric="MONOCHROME1")
    stack = _stack(paths)
    ours = PydicomReader().read(stack)
    theirs = SimpleITKReader().read(stack)
    np.testing.assert_array_equal(ours.array, hu[::-1])
    assert ours.invert and theirs.invert
    np.testing.assert_array_equal(theirs.array, 2047 - ours.array)
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-3)


def test_simpleitk_reader_reports_progress_and_slices(tmp_path: Path) -> None:
    paths, _ = _series(tmp_path, 4)
    ticks: list[tuple[int, int]] = []
    seen: list[int] = []
    get_reader("sitk").read(
        _stack(paths), progress=lambda d, t, text: ticks.append((d, t)), on_slice=lambda k, a: seen.append(k)
    )
    assert ticks[-1] == (4, 4) and seen == [0, 1, 2, 3]


def test_simpleitk_reader_refuses_frames_out_of_file_order() -> None:
    stacks = split_series([read_header(get_testdata_file("rtdose.dcm"))])
    reordered = Stack(
        **{**{f: getattr(stacks[0], f) for f in stacks[0].__slots__}, "slices": stacks[0].slices[::-1]}
    )
    with pytest.raises(ViewerError, match="SimpleITK"):
        SimpleITKReader().read(reordered)


def test_unknown_reader_name_is_refused() -> None:
    with pytest.raises(ValueError):
        get_reader("dcmtk")


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless])
def test_gdcm_and_pylibjpeg_agree_on_lossless_jpeg_ct(tmp_path: Path, syntax: str) -> None:
    # pylibjpeg-libjpeg has decoded some lossless JPEG wrongly (DESIGN.md): check both on the same CT pixels.
    paths, hu = _series(tmp_path, 3, 64, 64)
    for p in paths:
        transcode_with_gdcm(p, p, syntax)
        assert pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    volume = PydicomReader().read(_stack(paths))
    assert volume.decoders == ((GDCM_CODEC,) if syntax == JPEGLosslessSV1 else ("pyjpegls",))
    np.testing.assert_array_equal(volume.array, hu[::-1])
    for p in paths:
        source = SourceFile(str(p))
        gdcm_pixels = source.decode(0, ["gdcm"])[0]
        np.testing.assert_array_equal(source.decode(0, ["pylibjpeg"])[0], gdcm_pixels)
        np.testing.assert_array_equal(source.decode(0, [GDCM_READER])[0], gdcm_pixels)
        if syntax == JPEGLosslessSV1:
            np.testing.assert_array_equal(source.decode(0, [GDCM_CODEC])[0], gdcm_pixels)
        if syntax == JPEGLSLossless:
            np.testing.assert_array_equal(source.decode(0, ["pyjpegls"])[0], gdcm_pixels)


def test_fallback_decoder_is_used_when_the_first_choice_fails(tmp_path: Path) -> None:
    paths, hu = _series(tmp_path, 3, 64, 64, transfer_syntax=JPEG2000Lossless)
    reader = PydicomReader(workers=1)
    stack = _stack(paths)
    source = SourceFile(str(paths[0]))
    with pytest.raises(Exception, match="cannot decode"):
        source.decode(0, ["no-such-plugin"])
    assert source.decode(0, ["no-such-plugin", "pylibjpeg"])[1] == "pylibjpeg"
    np.testing.assert_array_equal(reader.read(stack).array, hu[::-1])


def test_uncompressed_explicit_little_endian_is_read_directly(tmp_path: Path) -> None:
    paths, _ = _series(tmp_path, 3, 128, 128, transfer_syntax=ExplicitVRLittleEndian)
    source = SourceFile(str(paths[0]), header=read_header(paths[0]))
    assert source.direct and source.pixel_offset is not None
    assert source.header is not None  # the indexed header is trusted while size and mtime match
    assert PydicomReader().read(_stack(paths)).decoders == ("direct",)


@pytest.mark.parametrize(
    "name", ["SC_rgb_rle_2frame.dcm", "examples_palette.dcm", "SC_rgb_jpeg_gdcm.dcm", "CT_small.dcm"]
)
def test_both_readers_agree_on_bundled_colour_and_single_files(name: str) -> None:
    stack = split_series([read_header(get_testdata_file(name))])[0]
    _assert_same_volume(PydicomReader().read(stack), SimpleITKReader().read(stack))


def test_both_readers_place_rt_dose_frames_alike() -> None:
    # SimpleITK reads GridFrameOffsetVector itself; it leaves out DoseGridScaling, which we apply.
    path = get_testdata_file("rtdose.dcm")
    stack = split_series([read_header(path)])[0]
    ours, theirs = PydicomReader().read(stack), SimpleITKReader().read(stack)
    np.testing.assert_allclose(ours.positions, theirs.positions, atol=1e-4)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)
    scaling = float(pydicom.dcmread(path, stop_before_pixels=True).DoseGridScaling)
    np.testing.assert_allclose(ours.array, theirs.array * scaling, rtol=1e-6)


def test_warnings_while_loading_go_to_the_debug_log_not_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import sys
    import warnings

    from viewer.dicom.index import scan

    path = get_testdata_file("SC_rgb_jpeg.dcm")  # pydicom warns: explicit VR expected, implicit found
    stack = next(scan([path], use_cache=False).stacks())  # the index reads headers quietly
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)  # the command line's console log, warnings and up
    console.setLevel(logging.WARNING)
    root.addHandler(console)
    filters = list(warnings.filters)
    try:
        with caplog.at_level(logging.DEBUG, logger="viewer.dicom.readers"):
            volume = load_stack(stack)
    finally:
        root.removeHandler(console)
    assert volume.array.shape[0] == 1 and volume.is_colour
    assert capfd.readouterr().err == ""
    debug = [r.getMessage() for r in caplog.records if r.name == "viewer.dicom.readers"]
    assert any("UserWarning" in m for m in debug) and any("pydicom WARNING" in m for m in debug)
    assert not any("implicit VR" in m for m in debug)  # the text may quote header values: withheld
    assert warnings.filters == filters  # the test's own filters (warnings are errors) are back


def test_simpleitk_reader_keeps_itk_warnings_off_stderr(tmp_path: Path, capfd, caplog) -> None:
    """ITK prints "Non uniform sampling or missing slices detected" for a stack with a gap: it goes to the debug
    log, not to the process's stderr (issue #15: nothing reaches stderr during a load)."""
    import logging

    paths, _ = _series(tmp_path, n=6)
    gapped = [p for p in sorted(paths) if p != sorted(paths)[2]]
    with caplog.at_level(logging.DEBUG, logger="viewer.dicom.codec_guard"):
        volume = SimpleITKReader().read(_stack(gapped))
    assert volume.array.shape[0] == 5
    assert capfd.readouterr().err == ""
    assert any("Non uniform sampling" in r.getMessage() for r in caplog.records)
