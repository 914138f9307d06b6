"""The JPEG 2000 marker check: no intact frame refused, damaged structure caught before it decodes to garbage.

Measured with single bit flips, 60 per region per file, on the 20 JPEG 2000 frames at hand under 250 kB
(pydicom's test files, pydicom-data's ``*_J2KR``/``*_J2KI`` and others, six lossless head phantoms; the larger
files only in the intact check):

- structure bytes (main and tile-part headers, SOT/SOD/EOC; a median 0.5 % of a frame): of 742 flips that
  changed the decoded image, OpenJPEG itself refused 518 (70 %) and decoded 224 to a wrong image without an
  error; the check caught 143 of those 224 (64 %), so 89 % of damaging structure flips are refused. It also
  refused 78 of 458 flips that left the image unchanged (a damaged stream all the same). It misses mostly
  quantisation values, the sign bit of a component's precision and the code-block style, where most values are
  legal;
- entropy-coded data (the other 99.5 %): 1188 of 1200 flips decoded to a wrong image without an error and the
  check caught 2: a flip inside a code-block's arithmetic-coded bytes leaves every marker and length intact,
  and nothing short of a redundant copy detects it. GDCM decodes with the same OpenJPEG and gave the same wrong
  image for 12 of 12 such flips, so a second decode does not catch them either;
- flips at uniformly random positions, 100 per frame: of the wrong images OpenJPEG gave without an error, the
  check caught 12 of 1885 (0.6 %) with one flip and 55 of 1819 (3.0 %) with four.

No intact frame of any file at hand was refused (every frame of every multi-frame file included). The check
costs 0.03–0.24 ms a frame, against 0.5–93 ms for the decode.
"""

from __future__ import annotations

import glob
import io
import os
import random
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless

from viewer.dicom.headers import read_header
from viewer.dicom.j2k_check import J2K_CHECKED, codestream_problem
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.synth.simple import bench_meta, head_phantom
from viewer.synth.writer import axial_geometry, write_ct_series

# Damaged files among the test files, refused by the check as by every decoder.
KNOWN_DAMAGED = {"JPEG2000-embedded-sequence-delimiter.dcm": "the codestream holds"}


def _pydicom_data_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("data_store")  # pydicom-data's package
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data"


def _phantom_series(folder: Path, n: int = 4, matrix: int = 64) -> list[Path]:
    positions, orientation = axial_geometry(n, 5.0, (3.0, 3.0), matrix)
    return write_ct_series(
        head_phantom(n, matrix, seed=2),
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(3.0, 3.0),
        slice_thickness=5.0,
        meta=bench_meta("J2K PHANTOM"),
        transfer_syntax=JPEG2000Lossless,
    )


def _frames(path: str) -> tuple[pydicom.Dataset, list[bytes]] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            if str(ds.file_meta.get("TransferSyntaxUID", "")) not in J2K_CHECKED:
                return None
            n = int(ds.get("NumberOfFrames", 1) or 1)
            return ds, list(generate_frames(ds.PixelData, number_of_frames=n))
    except (
        Exception
    ):  # not DICOM, or fragments that do not parse (refused before any codestream is looked at)
        return None


def test_no_intact_jpeg_2000_frame_at_hand_is_refused(tmp_path: Path) -> None:
    folders = [Path(get_testdata_file("CT_small.dcm")).parent, tmp_path]
    if (extra := _pydicom_data_dir()) is not None:
        folders.append(extra)
    _phantom_series(tmp_path, n=3, matrix=128)
    checked = 0
    for path in sorted(p for folder in folders for p in glob.glob(str(folder / "*.dcm"))):
        found = _frames(path)
        if found is None:
            continue
        ds, frames = found
        for k, frame in enumerate(frames):
            problem = codestream_problem(frame, ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated)
            expected = KNOWN_DAMAGED.get(os.path.basename(path))
            if expected:
                assert expected in problem
            else:
                assert problem == "", f"{os.path.basename(path)} frame {k}: {problem}"
                checked += 1
    assert checked >= 10 + 3  # pydicom's own J2K frames and the phantoms at least


def _stream() -> tuple[bytes, pydicom.Dataset]:
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    return next(generate_frames(ds.PixelData, number_of_frames=1)), ds


def _at(b: bytes, marker: int) -> int:
    return b.index(bytes([0xFF, marker]))


def _set(b: bytes, i: int, value: bytes) -> bytes:
    return b[:i] + value + b[i + len(value) :]


MUTATIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "width": (
        lambda b: _set(b, 8, (65).to_bytes(4, "big")),
        "the codestream holds 65×64×1, the header says 64",
    ),
    "siz length": (lambda b: _set(b, 4, b"\x00\x30"), "SIZ of length 48 for 1 components"),
    "precision": (lambda b: _set(b, 42, b"\x9f"), "component 0 has 32-bit samples, the header allocates 16"),
    "subsampled": (lambda b: _set(b, 43, b"\x02"), "component 0 is subsampled 2×1"),
    "cod levels": (lambda b: _set(b, _at(b, 0x52) + 9, b"\x04"), "QCD quantises 5 levels, COD decomposes 4"),
    "qcd reserved": (lambda b: _set(b, _at(b, 0x5C) + 6, bytes([b[_at(b, 0x5C) + 6] | 1])), "reserved bits"),
    "psot": (
        lambda b: _set(
            b, _at(b, 0x90) + 6, (int.from_bytes(b[_at(b, 0x90) + 6 :][:4], "big") - 2).to_bytes(4, "big")
        ),
        "no SOT where a tile-part should start",
    ),
    "tile index": (lambda b: _set(b, _at(b, 0x90) + 4, b"\x00\x01"), "SOT of length 10 for tile 1 of 1"),
    "tile-part": (lambda b: _set(b, _at(b, 0x90) + 10, b"\x01"), "tile-part 1 of tile 0 out of order"),
    "no eoc": (lambda b: b[:-2], "no EOC at the end of the codestream"),
    "marker in data": (
        lambda b: _set(b, _at(b, 0x93) + 40, b"\xff\x95"),
        "marker 0xFF95 inside the packet data",
    ),
    "main marker": (lambda b: _set(b, _at(b, 0x52) + 1, b"\x99"), "marker 0xFF99 in the main header"),
    "no jp2 codestream": (lambda b: b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b, "a JP2 file without a codestream"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_kind_of_damage_is_named(name: str) -> None:
    stream, ds = _stream()
    assert codestream_problem(stream, 64, 64, 1, 16) == ""
    mutate, expected = MUTATIONS[name]
    assert expected in codestream_problem(mutate(stream), 64, 64, 1, 16)


def test_damage_openjpeg_decodes_silently_is_refused_before_the_decode() -> None:
    """Two of the cases above that OpenJPEG turns into a wrong image without an error."""
    stream, _ = _stream()
    intact = decode(stream)
    for name in ("cod levels", "marker in data"):
        damaged = MUTATIONS[name][0](stream)
        assert not np.array_equal(decode(damaged), intact), name


def test_a_slice_with_a_damaged_codestream_is_skipped_naming_the_damage(tmp_path: Path) -> None:
    paths = _phantom_series(tmp_path)
    ds = pydicom.dcmread(paths[1])
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([MUTATIONS["cod levels"][0](frame)])
    ds.save_as(paths[1])
    volume = load_stack(split_series([read_header(p) for p in paths])[0])
    assert volume.array.shape[0] == 3
    [(path, why)] = volume.skipped
    assert path == str(paths[1])
    assert why == (
        "cannot decode the pixel data: damaged JPEG 2000 codestream (QCD quantises 5 levels, COD decomposes 4)"
    )


def decode(stream: bytes) -> np.ndarray:
    from openjpeg import decode as openjpeg_decode

    return openjpeg_decode(io.BytesIO(stream))


def _structure_bytes(b: bytes) -> np.ndarray:
    """Positions outside the packet data of an intact codestream, SIZ left out: a flipped image size makes
    OpenJPEG allocate gigabytes (the check refuses it first, so the loader never decodes one)."""
    inside = np.zeros(len(b), bool)
    inside[: 4 + int.from_bytes(b[4:6], "big")] = True
    i = b.index(b"\xff\x90")
    while b[i : i + 2] == b"\xff\x90":
        end = i + int.from_bytes(b[i + 6 : i + 10], "big")
        inside[b.index(b"\xff\x93", i) + 2 : end] = True
        i = end
    return np.flatnonzero(~inside)


def test_most_damaging_flips_of_the_structure_are_refused(tmp_path: Path) -> None:
    """A small, fixed sample of the measurement in the module docstring (structure bytes only)."""

    streams = [_stream()[0]]
    for path in _phantom_series(tmp_path, n=2, matrix=128):
        streams.append(next(generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1)))
    shapes = [(64, 64, 1, 16), (128, 128, 1, 16), (128, 128, 1, 16)]
    rng = random.Random(7)
    damaging = caught = 0
    for stream, shape in zip(streams, shapes, strict=True):
        intact = decode(stream)
        positions = _structure_bytes(stream)
        for _ in range(80):
            b = bytearray(stream)
            b[int(positions[rng.randrange(len(positions))])] ^= 1 << rng.randrange(8)
            refused = bool(codestream_problem(bytes(b), *shape))
            try:
                changed = not np.array_equal(decode(bytes(b)), intact)
                failed = False
            except Exception:  # OpenJPEG's own refusal
                changed = failed = True
            damaging += changed
            caught += changed and (refused or failed)
    assert damaging > 60
    assert caught / damaging >= 0.75, (caught, damaging)
