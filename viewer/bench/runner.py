"""``gru-viewer bench``: run the benchmark suites and report one flat table plus JSON.

Each suite returns nested dicts of numbers measured in this process, baselines included (SimpleITK and plain
pydicom for loading, ``nn.GRU`` for the recurrence, the plain forward for explanations, dcmtk for the PACS
client); the table flattens
them to ``suite.path value`` rows so runs can be compared line by line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _index(quick: bool) -> dict[str, Any]:
    from viewer.bench.index import run_index_benchmark

    return run_index_benchmark(n_files=600 if quick else 3000)


def _load(quick: bool) -> dict[str, Any]:
    from viewer.bench.load import run_generator_benchmark, run_load_benchmark

    result = run_load_benchmark(n_slices=60 if quick else 300, repeats=1 if quick else 3)
    others = run_generator_benchmark(
        n_slices=20 if quick else 100, matrix=256 if quick else 512, repeats=1 if quick else 3
    )
    from viewer.bench.decoders import as_dict, bench_decoders

    # Whole-series loads per compressed syntax; the per-decoder table: python -m viewer.bench.decoders.
    compressed = as_dict(*bench_decoders(n_slices=10 if quick else 40, matrix=256 if quick else 512))["loads"]
    return {
        **result.as_dict(),
        "other_generators": {r.key: r.as_dict() for r in others},
        "compressed": compressed,
    }


def _gui(quick: bool) -> dict[str, Any]:
    from pydicom.uid import JPEG2000Lossless

    from viewer.bench.gui import (
        bench_analysis_frames,
        bench_first_slice,
        bench_large_series,
        bench_memory,
        bench_slice_change,
    )

    if quick:
        return {
            "slice_change": bench_slice_change(repeats=50),
            "first_slice": bench_first_slice(n_slices=60),
            "analysis_frames": bench_analysis_frames(matrix=256, idle_frames=50),
        }
    return {
        "slice_change": bench_slice_change(),
        "first_slice": bench_first_slice(),
        "first_slice_jpeg2000": bench_first_slice(transfer_syntax=JPEG2000Lossless),
        "memory": bench_memory(),
        "large_series": bench_large_series(),
        "analysis_frames": bench_analysis_frames(),
    }


def _model(quick: bool) -> dict[str, Any]:
    from viewer.bench.model import run_all

    return run_all(quick=quick)


def _analysis(quick: bool) -> dict[str, Any]:
    from viewer.bench.analysis import bench_analysis, bench_analysis_under_load

    if quick:
        return {
            **bench_analysis(matrix=128, repeats=1, series={"32x5mm": (32, 5.0)}),
            "under_load": bench_analysis_under_load(matrix=128, repeats=1),
        }
    return {**bench_analysis(), "under_load": bench_analysis_under_load()}


def _mpr(quick: bool) -> dict[str, Any]:
    from viewer.bench.mpr import run_mpr_benchmark

    if quick:
        return run_mpr_benchmark(n_slices=60, matrix=256, repeats=3, frames=10)
    return run_mpr_benchmark()


def _pacs(quick: bool) -> dict[str, Any]:
    from viewer.bench.pacs import run_pacs_benchmark

    if quick:
        return run_pacs_benchmark(n_slices=20, matrix=256, repeats=1)
    return run_pacs_benchmark()


SUITES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "index": _index,
    "load": _load,
    "gui": _gui,
    "model": _model,
    "analysis": _analysis,
    "mpr": _mpr,
    "pacs": _pacs,
}


def flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif (
        isinstance(data, (list, tuple)) and len(data) <= 8 and all(isinstance(v, (int, float)) for v in data)
    ):
        yield prefix, list(data)
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            yield from flatten(value, f"{prefix}[{i}]")
    else:
        yield prefix, data


def format_table(results: dict[str, Any]) -> str:
    rows = list(flatten(results))
    width = max((len(k) for k, _ in rows), default=10)
    lines = []
    for key, value in rows:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def run(suites: list[str], quick: bool, json_path: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in suites:
        results[name] = SUITES[name](quick)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return results
