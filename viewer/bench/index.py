"""Benchmark of the header index: a synthetic folder of small CT slices, scanned cold and warm.

Library code: it returns numbers and prints nothing; ``gru-viewer bench`` (or a test marked slow) shows them.
The folder and the cache live in temporary directories, never in the repository or the user's cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from viewer.dicom.cache import CACHE_DIR_ENV
from viewer.dicom.headers import SkippedFile, read_header
from viewer.synth.folders import make_synthetic_folder


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@contextmanager
def _cache_dir(path: Path) -> Iterator[None]:
    """Point the persistent index at ``path`` for the duration (the documented override)."""
    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CACHE_DIR_ENV, None)
        else:
            os.environ[CACHE_DIR_ENV] = previous


def _read_with_threads(paths: list[Path], n_threads: int) -> int:
    """Header reads in a thread pool, for comparison only: pydicom's parsing holds the GIL."""

    def read(chunk: list[Path]) -> int:
        ok = 0
        for p in chunk:
            try:
                read_header(p)
                ok += 1
            except SkippedFile:
                pass
        return ok

    chunks = [paths[i : i + 32] for i in range(0, len(paths), 32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ThreadPoolExecutor(n_threads) as pool:
            return sum(pool.map(read, chunks))


def run_index_benchmark(
    n_files: int = 3000,
    n_series: int = 20,
    size: int = 64,
    workdir: str | os.PathLike[str] | None = None,
    compare: bool = True,
) -> dict[str, Any]:
    """Time indexing a synthetic folder: cold (empty cache), warm (everything cached) and one changed file.

    The folder and the cache go to a temporary directory (or ``workdir``), removed afterwards. "Cold" means
    an empty header cache; the files themselves are in the OS page cache, having just been written. With
    ``compare``, the cold scan is also timed reading in this process only and with a thread pool, the
    alternatives to worker processes.

    Returns
    -------
    dict
        ``n_files``, ``generate_s``, ``cold_s``, ``cold_files_per_s``, ``cold_workers``, ``warm_s``,
        ``warm_files_per_s``, ``rescan_one_changed_s``, ``n_series``, ``cpus``; with ``compare`` also
        ``serial_cold_s``/``serial_files_per_s`` and ``threads_s``/``threads_files_per_s``.
    """
    from viewer.dicom.index import planned_workers, scan

    own_tmp = workdir is None
    base = Path(tempfile.mkdtemp(prefix="gru-viewer-bench-")) if own_tmp else Path(workdir)
    try:
        data = base / "data"
        paths, generate_s = _timed(lambda: make_synthetic_folder(data, n_files, n_series, size))
        result: dict[str, Any] = {"n_files": len(paths), "generate_s": round(generate_s, 3)}
        result["cpus"] = os.cpu_count()
        result["cold_workers"] = planned_workers(len(paths))

        with _cache_dir(base / "cache"):
            cold, cold_s = _timed(lambda: scan(data))
            warm, warm_s = _timed(lambda: scan(data))
            os.utime(paths[0], ns=(time.time_ns(), time.time_ns()))
            rescan, rescan_s = _timed(lambda: scan(data))
        if warm.n_cached != len(paths) or rescan.n_read != 1:
            raise RuntimeError(f"cache did not work: {warm.n_cached} cached, {rescan.n_read} re-read")
        result.update(
            n_series=sum(1 for _ in cold.series()),
            cold_s=round(cold_s, 3),
            cold_files_per_s=round(len(paths) / cold_s),
            warm_s=round(warm_s, 3),
            warm_files_per_s=round(len(paths) / warm_s),
            rescan_one_changed_s=round(rescan_s, 3),
        )
        if compare:
            serial, serial_s = _timed(lambda: scan(data, use_cache=False, workers=1))
            n_ok, threads_s = _timed(lambda: _read_with_threads(paths, 2))
            result.update(
                serial_cold_s=round(serial_s, 3),
                serial_files_per_s=round(len(paths) / serial_s),
                threads_s=round(threads_s, 3),
                threads_files_per_s=round(len(paths) / threads_s),
            )
            if serial.n_files != len(paths) or n_ok != len(paths):
                raise RuntimeError("comparison runs did not read every file")
        return result
    finally:
        if own_tmp:
            shutil.rmtree(base, ignore_errors=True)
