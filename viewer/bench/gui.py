"""GUI benchmarks: slice change to repaint, opening a 300-slice series to its first slice, memory over 20 series,
and the frame time while scrolling during an analysis.

Library code: each function writes its data to a temporary folder (never the repository or the user's cache),
drives the real window through :mod:`viewer.ui.measure` and returns a dict. Nothing is printed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from viewer.synth.simple import head_phantom, write_bench_series


@contextmanager
def _scratch() -> Iterator[Path]:
    """A temporary folder for the series, with the header index cached inside it too."""
    with tempfile.TemporaryDirectory(prefix="gru-bench-gui-") as tmp:
        old = os.environ.get("GRU_VIEWER_CACHE_DIR")
        os.environ["GRU_VIEWER_CACHE_DIR"] = str(Path(tmp) / "cache")
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("GRU_VIEWER_CACHE_DIR", None)
            else:
                os.environ["GRU_VIEWER_CACHE_DIR"] = old


def bench_slice_change(n_slices: int = 40, matrix: int = 512, repeats: int = 200) -> dict[str, Any]:
    """Milliseconds from a slice change to the repainted 512² image with its annotations (goal: median ≤ 16)."""
    from viewer.ui.measure import measure_slice_change

    with _scratch() as tmp:
        write_bench_series(tmp / "series", n_slices, matrix)
        return measure_slice_change(tmp / "series", repeats=repeats)


def bench_first_slice(
    n_slices: int = 300, matrix: int = 512, transfer_syntax: str = ExplicitVRLittleEndian
) -> dict[str, Any]:
    """Seconds from opening a 300-slice series to its first slice on screen (goal ≤ 0.3 s), and to all of it.

    The slice shown first (the first along the normal) is the first one decoded, so a compressed series shows it
    after one slice's decode, not the series'.
    """
    from viewer.ui.measure import measure_first_slice

    with _scratch() as tmp:
        write_bench_series(tmp / "series", n_slices, matrix, transfer_syntax)
        out = measure_first_slice(tmp / "series")
        out["transfer_syntax"] = str(transfer_syntax)
        return out


def bench_large_series(n_slices: int = 1000, matrix: int = 512, repeats: int = 100) -> dict[str, Any]:
    """A CT angiogram-sized series (1000 × 512², 500 MB as int16) in the window: peak memory while it loads over
    its int16 bytes (goal ≤ 1.1) and the frame time scrolling through it (goal: median ≤ 16 ms)."""
    import numpy as np

    from viewer.ui.measure import measure_large_series

    with _scratch() as tmp:
        parts = [head_phantom(min(250, n_slices - k), matrix, seed=k) for k in range(0, n_slices, 250)]
        hu = np.concatenate(parts)
        del parts
        write_bench_series(tmp / "series", n_slices, matrix, hu=hu)
        del hu
        return measure_large_series(tmp / "series", repeats=repeats)


def bench_memory(
    n_series: int = 20, n_slices: int = 30, matrix: int = 512, cache_mb: int = 256
) -> dict[str, Any]:
    """Resident memory after opening ``n_series`` series one after another (goal: bounded by the cache)."""
    from viewer.ui.measure import measure_memory

    with _scratch() as tmp:
        hu = head_phantom(n_slices, matrix)
        for i in range(n_series):
            write_bench_series(tmp / "study" / f"series{i:02d}", n_slices, matrix, hu=hu)
        return measure_memory(tmp / "study", cache_mb=cache_mb)


def _bench_model(folder: Path) -> tuple[Path | None, str]:
    """The shipped weights when installed (frame times do not depend on weight values), else a fresh network."""
    from viewer.model.card import default_model_paths

    if default_model_paths().weights.is_file():
        return None, "shipped weights"
    from viewer.model.network import SliceGRUNet
    from viewer.model.weights import save_weights

    path = folder / "untrained.safetensors"
    save_weights(SliceGRUNet().eval(), path, name="untrained", version="0")
    return path, "untrained network of the default shape (no weights installed)"


def bench_analysis_frames(n_slices: int = 32, matrix: int = 512, idle_frames: int = 100) -> dict[str, Any]:
    """GUI frame time (median, p95) scrolling a 32 × 5 mm head series idle and while Analyze runs on it."""
    from viewer.synth.simple import bench_meta
    from viewer.synth.writer import axial_geometry, write_ct_series
    from viewer.ui.measure import measure_frames_during_analysis

    with _scratch() as tmp:
        positions, orientation = axial_geometry(n_slices, 5.0, (0.45, 0.45), matrix)
        write_ct_series(
            head_phantom(n_slices, matrix),
            tmp / "series",
            positions=positions,
            orientation=orientation,
            pixel_spacing=(0.45, 0.45),
            slice_thickness=5.0,
            meta=bench_meta("BENCH GUI ANALYZE"),
        )
        model_path, which = _bench_model(tmp)
        out = measure_frames_during_analysis(tmp / "series", model_path, idle_frames=idle_frames)
        out["model"] = which
        return out


def run_gui_benchmarks() -> dict[str, Any]:
    """All four, as ``gru-viewer bench`` reports them."""
    return {
        "slice_change": bench_slice_change(),
        "first_slice": bench_first_slice(),
        "first_slice_jpeg2000": bench_first_slice(transfer_syntax=JPEG2000Lossless),
        "memory": bench_memory(),
        "analysis_frames": bench_analysis_frames(),
    }
