"""Wall time of Analyze on written DICOM series: load, preprocess, forward, gates, pixel saliency, total.

Two series like the ones radiologists open: 32 slices of 5 mm, and 300 thin slices of 0.625 mm (averaged into
5 mm slabs by the model's preprocessing), both 512². The shipped weights are used when installed (timings do not
depend on the weight values); otherwise a freshly initialised network of the same shape.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from viewer.analysis.model_cache import load_model
from viewer.analysis.run import analyze_volume
from viewer.dicom.headers import read_header
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.errors import ViewerError
from viewer.model.network import SliceGRUNet
from viewer.model.weights import ModelCard
from viewer.synth.simple import bench_meta, head_phantom
from viewer.synth.writer import axial_geometry, write_ct_series

SERIES: dict[str, tuple[int, float]] = {"32x5mm": (32, 5.0), "300x0.625mm": (300, 0.625)}


def _model() -> tuple[SliceGRUNet, ModelCard, str]:
    try:
        model, card = load_model()
        return model, card, f"{card.name} {card.version}"
    except ViewerError:
        model = SliceGRUNet().eval()
        card = ModelCard("untrained", "0", "0" * 64, model.config)
        return model, card, "untrained network (no weights installed)"


def _write(folder: Path, n_slices: int, dz: float, matrix: int) -> list[Path]:
    positions, orientation = axial_geometry(n_slices, dz, (0.45, 0.45), matrix)
    return write_ct_series(
        head_phantom(n_slices, matrix),
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.45, 0.45),
        slice_thickness=dz,
        meta=bench_meta("BENCH ANALYZE"),
    )


def bench_analysis(
    matrix: int = 512, repeats: int = 3, series: dict[str, tuple[int, float]] | None = None
) -> dict[str, Any]:
    """Median seconds per step of Analyze for each series in ``series`` (name → slices, spacing)."""
    model, card, which = _model()
    out: dict[str, Any] = {"model": which}
    with tempfile.TemporaryDirectory(prefix="gru-bench-analyze-") as tmp:
        for name, (n, dz) in (series or SERIES).items():
            paths = _write(Path(tmp) / name, n, dz, matrix)
            stack = split_series([read_header(p) for p in paths])[0]
            load_s, steps = [], []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                volume = load_stack(stack)
                load_s.append(time.perf_counter() - start)
                steps.append(analyze_volume(volume, model, card).timings)
            runs = steps[1:]  # the first run warms caches and allocators
            entry = {"load_s": float(np.median(load_s[1:]))}
            for key in runs[0]:
                entry[f"{key}_s"] = float(np.median([r[key] for r in runs]))
            entry["analyze_with_load_s"] = entry["load_s"] + entry["total_s"]
            out[name] = entry
    return out
