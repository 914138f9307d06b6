"""The load benchmark's other-generator series and its comparison, on tiny series."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

import viewer.dicom.readers as readers
from viewer.bench.load import format_generator_report, run_generator_benchmark, stack_of
from viewer.bench.other_series import KINDS, modality_values, write_other_series


@pytest.mark.parametrize("kind", KINDS, ids=[k.key for k in KINDS])
def test_other_generators_write_the_layout_they_announce(tmp_path: Path, kind) -> None:
    values = modality_values(3, 16)
    paths = write_other_series(tmp_path, kind, values)
    assert len(paths) == 3
    ds = pydicom.dcmread(paths[0])
    assert (int(ds.BitsStored), int(ds.PixelRepresentation)) == (
        kind.bits_stored,
        int(kind.stored == "int16"),
    )
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (kind.slope, kind.intercept)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    shift = values.min() if kind.stored == "uint16" and kind.generator == "simpleitk" else 0
    first = int(np.argmin([float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in paths]))
    assert first == 0
    np.testing.assert_allclose(hu, values[0] - shift, atol=kind.slope / 2)


def test_generator_benchmark_compares_every_loader_on_the_same_values(tmp_path: Path) -> None:
    keys = ("sitk_int16", "pydicom_uint16_12bit_intercept", "pydicom_uint16_slope_half")
    results = run_generator_benchmark(n_slices=4, matrix=32, repeats=1, kinds=keys, work_dir=tmp_path)
    assert [r.key for r in results] == list(keys)
    for r in results:
        data = r.as_dict()
        assert set(data["median_s"]) == {"ours", "simpleitk", "pydicom_plain", "floor"}
        assert all(v > 0 for v in data["median_s"].values())
        assert data["same_values_as_ours"] == {"simpleitk": True, "pydicom_plain": True}
        assert data["ours_vs_floor"] > 0
    assert [r.dtypes["ours"] for r in results] == ["int16", "int16", "float32"]
    table = format_generator_report(results)
    assert "sitk_int16" in table and "/floor" in table


def test_other_generators_series_read_in_one_call_equal_a_load_through_pydicom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = modality_values(4, 48)
    calls: list[int] = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda *a: calls.append(1) or real(*a))
    for kind in KINDS:
        stack = stack_of(write_other_series(tmp_path / kind.key, kind, values))
        calls.clear()
        fast = readers.load_stack(stack)
        assert len(calls) == 3, kind.key  # every slice after the first: header and pixels in one call
        with monkeypatch.context() as m:
            m.setattr(readers, "direct_source", lambda header, dest=None: None)
            slow = readers.load_stack(stack)
        assert fast.array.dtype == slow.array.dtype, kind.key
        np.testing.assert_array_equal(fast.array, slow.array)
