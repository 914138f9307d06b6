"""How one series splits into stacks: every image of it stays viewable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from viewer.dicom.headers import read_header
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series


def _meta() -> SeriesMeta:
    return SeriesMeta.invented("Test^Stacks", "ST-1", "STACKS", series_number=3)


def _single(
    folder: Path, name: str, rows: int, cols: int, z: float, meta: SeriesMeta, acquisition: int = 1
) -> Path:
    """One CT image of ``rows`` × ``cols`` at height ``z`` in the series of ``meta``, with its own SOP UID."""
    hu = np.full((1, rows, cols), 40.0, dtype=np.float32)
    positions, orientation = axial_geometry(1, 1.0, (0.5, 0.5), (rows, cols))
    positions = positions + np.array([0.0, 0.0, z])
    (path,) = write_ct_series(
        hu,
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.5, 0.5),
        slice_thickness=1.0,
        meta=meta,
        file_names=[name],
    )
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.AcquisitionNumber = acquisition
    ds.save_as(path)
    return path


def test_single_images_of_different_sizes_each_get_a_stack_that_loads(tmp_path: Path) -> None:
    meta = _meta()
    paths = [
        _single(tmp_path, "square.dcm", 48, 48, 0.0, meta),
        _single(tmp_path, "narrow.dcm", 30, 48, 10.0, meta),
    ]
    stacks = split_series([read_header(p) for p in paths])
    assert sorted((s.rows, s.columns) for s in stacks) == [(30, 48), (48, 48)]
    assert len({s.uid for s in stacks}) == 2
    for s in stacks:
        assert f"{s.rows}×{s.columns}" in s.label
        volume = load_stack(s)
        assert volume.array.shape == (1, s.rows, s.columns)
        np.testing.assert_allclose(volume.array, 40.0)


def test_single_images_of_one_size_stay_one_set_beside_another_size(tmp_path: Path) -> None:
    meta = _meta()
    paths = [
        _single(tmp_path, "a.dcm", 48, 48, 0.0, meta),
        _single(tmp_path, "b.dcm", 48, 48, 0.0, meta, acquisition=2),
        _single(tmp_path, "c.dcm", 30, 48, 10.0, meta),
    ]
    headers = [read_header(p) for p in paths]
    # Two acquisitions at one position with one size, another size beside them: single images only.
    stacks = split_series(headers)
    assert [(s.rows, s.columns, s.n_slices) for s in stacks] == [(48, 48, 2), (30, 48, 1)]
    assert stacks[0].label == "images 48×48 (2 images)"
    assert stacks[1].label == "axial 30×48 (1 image)"
    for s in stacks:
        assert load_stack(s).array.shape == (s.n_slices, s.rows, s.columns)
