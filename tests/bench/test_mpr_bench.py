"""The reformat benchmark runs end to end on tiny data (the real 300 × 512² run is ``gru-viewer bench mpr``)."""

from __future__ import annotations

import pytest

from viewer.bench.mpr import run_mpr_benchmark
from viewer.bench.runner import SUITES

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]


def test_mpr_bench_reports_planes_memory_and_screen_beside_baselines(qtbot) -> None:
    out = run_mpr_benchmark(n_slices=12, matrix=64, repeats=2, frames=3)
    assert "mpr" in SUITES
    for geometry in ("untilted", "tilt15"):
        part = out[geometry]
        assert set(part["reformat"]) == {"axial", "coronal", "sagittal"}
        assert set(part["numpy_slice"]) == {"axial", "coronal", "sagittal"}
        assert part["reformat"]["coronal"]["median_ms"] > 0
        assert part["memory"]["ratio"] >= 1.0
        screen = part["screen"]
        assert screen["first_image_ms"] > 0
        assert 0 < screen["drag"]["median_ms"] <= screen["drag"]["max_ms"]
        assert screen["numpy_slices_repaint"]["median_ms"] > 0
