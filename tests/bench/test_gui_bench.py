"""The GUI benchmark functions run end to end on tiny data (the real sizes run in ``gru-viewer bench``)."""

from __future__ import annotations

import os

import pytest
from pydicom.uid import JPEG2000Lossless

from viewer.bench.gui import bench_first_slice, bench_large_series, bench_memory, bench_slice_change

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


def test_slice_change_bench(qtbot) -> None:
    cache_dir = os.environ["GRU_VIEWER_CACHE_DIR"]
    out = bench_slice_change(n_slices=4, matrix=64, repeats=5)
    assert out["matrix"] == [64, 64] and out["n_slices"] == 4
    assert 0 < out["canvas"]["median_ms"] <= out["canvas"]["max_ms"]
    assert out["window"]["median_ms"] > 0
    assert os.environ["GRU_VIEWER_CACHE_DIR"] == cache_dir  # the bench's own cache folder is gone again


def test_first_slice_bench(qtbot) -> None:
    out = bench_first_slice(n_slices=12, matrix=64)
    assert out["n_slices"] == 12
    assert 0 < out["first_slice_s"] <= out["full_volume_s"]
    assert out["max_event_loop_gap_ms"] >= 0


def test_memory_bench(qtbot) -> None:
    out = bench_memory(n_series=4, n_slices=4, matrix=64, cache_mb=64)
    assert out["n_series"] == 4 and len(out["rss_after_each_mb"]) == 4
    assert out["cached_series"] == 4 and out["met"]


def test_first_slice_bench_of_a_compressed_series(qtbot) -> None:
    out = bench_first_slice(n_slices=6, matrix=64, transfer_syntax=JPEG2000Lossless)
    assert out["transfer_syntax"] == JPEG2000Lossless and out["n_slices"] == 6
    assert 0 < out["first_slice_s"] <= out["full_volume_s"] and out["goal_first_slice_s"] == 0.3


def test_large_series_bench(qtbot) -> None:
    out = bench_large_series(n_slices=260, matrix=32, repeats=5)  # two phantom parts joined
    assert out["n_slices"] == 260 and out["dtype"] == "int16"
    assert out["peak_over_volume"] >= 0 and out["frame"]["median_ms"] > 0
