"""Wall time of Analyze on written DICOM series: load, preprocess, forward, gates, pixel saliency, total.

Two series like the ones radiologists open: 32 slices of 5 mm, and 300 thin slices of 0.625 mm (averaged into
5 mm slabs by the model's preprocessing), both 512². The shipped weights are used when installed (timings do not
depend on the weight values); otherwise a freshly initialised network of the same shape.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from viewer.analysis.model_cache import load_model
from viewer.analysis.run import AnalysisOptions, analyze_volume
from viewer.dicom.headers import read_header
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import split_series
from viewer.errors import ViewerError
from viewer.model.card import ModelCard
from viewer.model.network import SliceGRUNet
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


_SPIN = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"


def _busy_processes(count: int, limit_s: float) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that each keep one core busy, and stop by themselves after ``limit_s``."""
    return [subprocess.Popen([sys.executable, "-c", _SPIN.format(limit=limit_s)]) for _ in range(count)]


def bench_analysis_under_load(busy: int = 2, matrix: int = 512, repeats: int = 5) -> dict[str, Any]:
    """Analyze of the demo study quiet and beside ``busy`` competing busy processes, as a user waits for it.

    Two CPU thread policies are timed alternately in the same run: the viewer's own (the cores other programs
    leave free, chosen per analysis) and the baseline of one thread per core (torch's default, what the viewer
    did before). Goal: with two busy processes on a 2-core machine, loaded ≤ 2.5 × quiet for the viewer's policy.
    """
    from viewer.synth.dataset import write_phantom_dataset

    model, card, which = _model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    policies = {
        "viewer": AnalysisOptions(device="cpu"),
        "all_cores": AnalysisOptions(device="cpu", cpu_threads=cores),
    }
    out: dict[str, Any] = {"model": which, "cores": cores, "busy_processes": busy}
    with tempfile.TemporaryDirectory(prefix="gru-bench-analyze-load-") as tmp:
        write_phantom_dataset(Path(tmp), studies=1, seed=0, matrix=matrix)
        paths = sorted(p for p in Path(tmp).rglob("*.dcm"))
        volume = load_stack(split_series([read_header(p) for p in paths])[0])
        analyze_volume(volume, model, card, options=policies["viewer"])  # warm-up

        def timed(options: AnalysisOptions) -> float:
            start = time.perf_counter()
            analyze_volume(volume, model, card, options=options)
            return time.perf_counter() - start

        times: dict[str, dict[str, list[float]]] = {name: {"quiet": [], "loaded": []} for name in policies}
        for condition in ("quiet", "loaded"):
            procs = _busy_processes(busy if condition == "loaded" else 0, limit_s=600)
            try:
                time.sleep(0.5 if procs else 0)
                for _ in range(repeats):
                    for name, options in policies.items():
                        times[name][condition].append(timed(options))
            finally:
                for proc in procs:
                    proc.kill()
                    proc.wait()
    for name, runs in times.items():
        quiet, loaded = float(np.median(runs["quiet"])), float(np.median(runs["loaded"]))
        out[name] = {"quiet_s": quiet, "loaded_s": loaded, "loaded_over_quiet": loaded / quiet}
    out["viewer_loaded_over_all_cores_loaded"] = out["viewer"]["loaded_s"] / out["all_cores"]["loaded_s"]
    return out
