"""Reformat benchmarks on a 300 × 512² head phantom: planes, memory, and the 1 × 3 layout on screen.

Baselines in the same run: a plain numpy slice of the same volume along each axis (the cheapest a reformat of an
untilted stack could be), and, on screen, the same three panes repainted with plain numpy slices. Both geometries
are measured: untilted (most planes are the voxels themselves) and a 15° gantry tilt (every plane resampled).
Nothing is printed; each function returns a dict.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from viewer.dicom.reformat import PlaneKind, Reformatter
from viewer.dicom.volume import Volume
from viewer.synth.marker_volume import marker_volume
from viewer.synth.simple import head_phantom

GOAL_FIRST_IMAGE_MS = 100.0
GOAL_DRAG_FRAME_MS = 33.0
#: At most this × the volume's bytes in memory while the three planes are shown.
GOAL_MEMORY_RATIO = 1.5


def bench_volume(
    n_slices: int = 300, matrix: int = 512, tilt_deg: float = 0.0, dtype: type = np.int16
) -> Volume:
    """The head phantom (HU) in the geometry of a thin-slice head CT: 0.45 mm pixels, 0.5 mm slices."""
    volume = marker_volume(
        n_slices, matrix, pixel_spacing=(0.45, 0.45), spacing_z=0.5, tilt_deg=tilt_deg, dtype=dtype
    )
    for k in range(n_slices):  # slice by slice: never a second full-size float volume
        volume.array[k] = head_phantom(1, matrix, seed=k)[0]
    volume.window = (40.0, 80.0)
    return volume


def _ms(samples: list[float]) -> dict[str, float]:
    ms = sorted(1000.0 * s for s in samples)
    return {"median_ms": statistics.median(ms), "max_ms": ms[-1]}


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_planes(volume: Volume, repeats: int = 10) -> dict[str, Any]:
    """Milliseconds per plane (each at a new position, so nothing is re-used), beside numpy slices."""
    array = volume.array
    n, rows, cols = array.shape
    baseline = {
        "axial": _ms(_timed(lambda: array[n // 2].copy(), repeats)),
        "coronal": _ms(_timed(lambda: array[:, rows // 2, :].copy(), repeats)),
        "sagittal": _ms(_timed(lambda: array[:, :, cols // 2].copy(), repeats)),
    }
    t0 = time.perf_counter()
    reformat = Reformatter.of(volume)
    setup = time.perf_counter() - t0
    centre = reformat.slice_point(n // 2)
    planes: dict[str, Any] = {}
    for kind in PlaneKind:
        layout = reformat.layout
        start = layout.snap(kind, float(centre @ layout.axes[kind].w))
        depths = [layout.step(kind, start, i) for i in range(repeats)]
        samples = []
        for depth in depths:
            t0 = time.perf_counter()
            image = reformat.plane(array, kind, depth)
            samples.append(time.perf_counter() - t0)
        planes[kind.value] = {**_ms(samples), "shape": list(image.data.shape)}
    return {"setup_ms": 1000.0 * setup, "reformat": planes, "numpy_slice": baseline}


def bench_memory(volume: Volume) -> dict[str, Any]:
    """Peak memory allocated while the three planes (and a saliency overlay) are computed, over the volume's."""
    reformat = Reformatter.of(volume)
    centre = reformat.slice_point(volume.n_slices // 2)
    k = volume.n_slices // 2
    maps = {k: np.zeros(volume.array.shape[1:], np.uint8)}
    tracemalloc.start()
    try:
        for kind in PlaneKind:
            depth = reformat.layout.snap(kind, float(centre @ reformat.layout.axes[kind].w))
            reformat.plane(volume.array, kind, depth)
            reformat.plane(maps.get, kind, depth, normal="nearest", fill=0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ratio = 1.0 + peak / volume.array.nbytes
    return {
        "volume_mb": volume.array.nbytes / 2**20,
        "peak_extra_mb": peak / 2**20,
        "ratio": ratio,
        "goal_ratio": GOAL_MEMORY_RATIO,
        "met": ratio <= GOAL_MEMORY_RATIO,
    }


def run_mpr_benchmark(
    n_slices: int = 300, matrix: int = 512, repeats: int = 10, frames: int = 40
) -> dict[str, Any]:
    """Planes and memory (Qt-free) and the 1 × 3 layout on screen, for an untilted and a tilted stack."""
    from viewer.ui.mpr_measure import measure_mpr

    out: dict[str, Any] = {"volume": [n_slices, matrix, matrix], "dtype": "int16"}
    for name, tilt in (("untilted", 0.0), ("tilt15", 15.0)):
        volume = bench_volume(n_slices, matrix, tilt_deg=tilt)
        screen = measure_mpr(volume, frames=frames)
        out[name] = {
            **bench_planes(volume, repeats=repeats),
            "memory": bench_memory(volume),
            "screen": {
                **screen,
                "goal_first_image_ms": GOAL_FIRST_IMAGE_MS,
                "goal_drag_frame_ms": GOAL_DRAG_FRAME_MS,
                "met": screen["first_image_ms"] <= GOAL_FIRST_IMAGE_MS
                and screen["drag"]["median_ms"] <= GOAL_DRAG_FRAME_MS,
            },
        }
        del volume
    return out
