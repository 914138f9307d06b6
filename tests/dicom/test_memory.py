"""Series larger than a share of this machine's memory are refused, with their size, before any allocation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from viewer.dicom import readers
from viewer.dicom.headers import read_header
from viewer.dicom.memory import (
    MAX_SERIES_RAM_SHARE,
    MAX_SERIES_RAM_SHARE_ENV,
    max_series_ram_share,
    memory_refusal,
)
from viewer.dicom.readers import SimpleITKReader, load_stack
from viewer.dicom.stacks import Stack, split_series
from viewer.errors import ViewerError
from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    hu = np.full((4, 32, 32), 40.0, np.float32)
    positions, orientation = axial_geometry(4, 2.0, (0.5, 0.5), (32, 32))
    meta = SeriesMeta.invented("Test^Memory", "MEM-1", "MEMORY")
    paths = write_ct_series(
        hu,
        tmp_path,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.5, 0.5),
        slice_thickness=2.0,
        meta=meta,
    )
    return split_series([read_header(p) for p in paths])[0]


def test_share_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_SERIES_RAM_SHARE_ENV, raising=False)
    assert max_series_ram_share() == MAX_SERIES_RAM_SHARE == 0.5
    for text, share in (("0.8", 0.8), ("nonsense", 0.5), ("-1", 0.5), ("0", 0.5), ("nan", 0.5)):
        monkeypatch.setenv(MAX_SERIES_RAM_SHARE_ENV, text)
        assert max_series_ram_share() == share


def test_refusal_names_the_size_and_the_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_SERIES_RAM_SHARE_ENV, raising=False)
    gb = 10**9
    assert memory_refusal(4 * gb, total=8 * gb) == ""
    refusal = memory_refusal(int(2.1 * gb), total=4 * gb)
    assert refusal == (
        "this series needs 2.1 GB, more than 50 % of this machine's memory "
        f"(4.0 GB; {MAX_SERIES_RAM_SHARE_ENV} sets the share)"
    )


def test_a_series_over_the_share_is_refused_before_its_array_exists(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_stack(stack)  # fits by default
    monkeypatch.setenv(MAX_SERIES_RAM_SHARE_ENV, "1e-9")

    def never(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the volume was allocated")

    monkeypatch.setattr(readers, "_allocate", never)
    with pytest.raises(ViewerError, match=r"needs 8 kB, more than .* % of this machine's memory") as refused:
        load_stack(stack)  # 4 × 32 × 32 int16
    assert MAX_SERIES_RAM_SHARE_ENV in str(refused.value) and "Could not load series" in str(refused.value)
    with pytest.raises(ViewerError, match="needs 16 kB"):
        SimpleITKReader().read(stack)  # sized as float32 from the headers, before SimpleITK reads anything
