"""Benchmark of series loading: our reader against SimpleITK, plain pydicom and a memcpy floor, in one run.

Library code: it returns numbers and prints nothing (:func:`format_load_report` and
:func:`format_generator_report` make the text). :func:`run_load_benchmark` writes our own phantom with
:mod:`viewer.synth.simple`; :func:`run_generator_benchmark` writes series of other generators
(:mod:`viewer.bench.other_series`: SimpleITK's writer, pydicom datasets built apart; int16 and uint16; identity,
integer and fractional rescales), so the reader is not measured only on the files it was tuned on. Files are
read from the page cache (they were just written), which is also the case a viewer meets when a radiologist
reopens a series.

Peak memory is the highest resident set size (psutil, sampled every millisecond on a thread) above the level
before the load, divided by the bytes of our volume (int16 for the phantom): a loader that allocates its output
once and nothing else scores 1.0; one that returns float32 scores at least 2.0.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

from viewer.dicom.headers import read_header
from viewer.dicom.stacks import Stack, split_series
from viewer.synth.simple import write_bench_series

GOAL_RATIO_VS_SIMPLEITK = 1.0
GOAL_PEAK_RATIO = 1.5
GOAL_RATIO_VS_MEMCPY = 3.0
"""Issue #17: an uncompressed load within 3 × the memcpy floor (a copy of the volume into fresh memory)."""


def stack_of(paths: list[Path]) -> Stack:
    return split_series([read_header(p) for p in paths])[0]


# ---------------------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------------------


class PeakRSS:
    """Highest resident set size while the block runs, sampled on a thread (psutil)."""

    def __init__(self, interval_s: float = 0.001) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.baseline = 0
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def above_baseline(self) -> int:
        return self.peak - self.baseline


@dataclass(slots=True)
class Measured:
    """Timings (s) of repeated runs of one loader and its worst peak memory above the starting RSS."""

    name: str
    seconds: list[float] = field(default_factory=list)
    peak_bytes: int = 0

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def best_s(self) -> float:
        return min(self.seconds) if self.seconds else float("nan")


def _measure(fn: Callable[[], Any], into: Measured) -> Any:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
        into.seconds.append(time.perf_counter() - t0)
    into.peak_bytes = max(into.peak_bytes, mem.above_baseline)
    return out


def load_ours(stack: Stack, workers: int | None = None) -> np.ndarray:
    from viewer.dicom.readers import load_stack

    return load_stack(stack, reader="pydicom", workers=workers).array


def load_simpleitk(files: list[str]) -> np.ndarray:
    """``ImageSeriesReader`` on our file order, output in its native pixel type (HU, int32 here)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return sitk.GetArrayFromImage(reader.Execute())


def load_simpleitk_float32(files: list[str]) -> np.ndarray:
    """``ImageSeriesReader`` asked for float32 output (the type ours gives only for non-integer values)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(reader.Execute())


def load_plain_pydicom(files: list[str]) -> np.ndarray:
    """What most scripts do: ``dcmread`` + ``pixel_array`` per file, rescale, then ``np.stack``."""
    import pydicom

    slices = []
    for f in files:
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array.astype(np.float32)
        arr *= float(ds.get("RescaleSlope", 1) or 1)
        arr += float(ds.get("RescaleIntercept", 0) or 0)
        slices.append(arr)
    return np.stack(slices)


def memcpy_floor(source: np.ndarray) -> np.ndarray:
    """Copy the volume's bytes into a fresh array: the least any loader must do (page faults included)."""
    out = np.empty_like(source)
    np.copyto(out, source)
    return out


@dataclass(slots=True)
class LoadBenchResult:
    n_slices: int
    matrix: int
    transfer_syntax: str
    volume_bytes: int
    repeats: int
    results: dict[str, Measured]
    identical: dict[str, bool]

    def ratio(self, name: str, baseline: str = "simpleitk") -> float:
        return self.results[name].median_s / self.results[baseline].median_s

    def peak_ratio(self, name: str) -> float:
        return self.results[name].peak_bytes / self.volume_bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_slices": self.n_slices,
            "matrix": self.matrix,
            "transfer_syntax": self.transfer_syntax,
            "volume_bytes": self.volume_bytes,
            "repeats": self.repeats,
            "loaders": {
                name: {
                    "median_s": m.median_s,
                    "best_s": m.best_s,
                    "runs_s": m.seconds,
                    "ratio_vs_simpleitk": self.ratio(name),
                    "peak_bytes": m.peak_bytes,
                    "peak_ratio": self.peak_ratio(name),
                    "same_values_as_ours": self.identical.get(name),
                }
                for name, m in self.results.items()
            },
            "ratio_vs_memcpy": self.ratio("ours", "memcpy"),
            "goal": {
                "ratio_vs_simpleitk": GOAL_RATIO_VS_SIMPLEITK,
                "peak_ratio": GOAL_PEAK_RATIO,
                "ratio_vs_memcpy": GOAL_RATIO_VS_MEMCPY,
            },
            "met": {
                "ratio": self.ratio("ours") <= GOAL_RATIO_VS_SIMPLEITK,
                "peak": self.peak_ratio("ours") <= GOAL_PEAK_RATIO,
                "memcpy": self.ratio("ours", "memcpy") <= GOAL_RATIO_VS_MEMCPY,
            },
        }


def run_load_benchmark(
    n_slices: int = 300,
    matrix: int = 512,
    repeats: int = 3,
    transfer_syntax: str = ExplicitVRLittleEndian,
    work_dir: str | os.PathLike[str] | None = None,
    plain_pydicom: bool = True,
) -> LoadBenchResult:
    """Write one series, then load it ``repeats`` times with each loader (order rotated between rounds).

    Loaders: ``ours`` (:func:`viewer.dicom.readers.load_stack`, default threads), ``ours_1_thread``,
    ``simpleitk`` (native output type),
    ``simpleitk_float32``, ``pydicom_plain`` and ``memcpy`` (the floor: a copy of our volume). Before the first
    round a volume-sized buffer is touched once, so the first loader does not pay for the process's first contact
    with that memory.
    """
    with tempfile.TemporaryDirectory(prefix="gru-bench-load-", dir=work_dir) as tmp:
        paths = write_bench_series(tmp, n_slices, matrix, transfer_syntax)
        stack = stack_of(paths)
        files = [str(p) for p in stack.files]
        reference = load_ours(stack)
        volume_bytes = int(reference.nbytes)
        warm = np.ones(reference.shape, dtype=reference.dtype)
        loaders: dict[str, Callable[[], np.ndarray]] = {
            "ours": lambda: load_ours(stack),
            "ours_1_thread": lambda: load_ours(stack, workers=1),
            "simpleitk": lambda: load_simpleitk(files),
            "simpleitk_float32": lambda: load_simpleitk_float32(files),
            "memcpy": lambda: memcpy_floor(warm),
        }
        if plain_pydicom:
            loaders["pydicom_plain"] = lambda: load_plain_pydicom(files)
        results = {name: Measured(name) for name in loaders}
        identical: dict[str, bool] = {}
        names = list(loaders)
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out = _measure(loaders[name], results[name])
                if name not in identical and name != "memcpy":
                    identical[name] = bool(np.array_equal(np.asarray(out, dtype=np.float32), reference))
                del out
    return LoadBenchResult(n_slices, matrix, str(transfer_syntax), volume_bytes, repeats, results, identical)


def format_load_report(result: LoadBenchResult) -> str:
    """Plain-text table of a benchmark run."""
    from pydicom.uid import UID

    mb = result.volume_bytes / 2**20
    lines = [
        f"Load {result.n_slices} × {result.matrix}² CT ({UID(result.transfer_syntax).name}), "
        f"volume {mb:.0f} MiB as ours holds it, median of {result.repeats}",
        f"{'loader':<20}{'median s':>10}{'best s':>10}{'vs SimpleITK':>14}{'peak/volume':>13}  same values",
    ]
    for name, m in result.results.items():
        same = result.identical.get(name)
        lines.append(
            f"{name:<20}{m.median_s:>10.3f}{m.best_s:>10.3f}{result.ratio(name):>14.2f}"
            f"{result.peak_ratio(name):>13.2f}  {'' if same is None else same}"
        )
    lines.append(f"ours: {result.ratio('ours', 'memcpy'):.2f} × the memcpy floor")
    lines.append(
        f"goal: ours ≤ {GOAL_RATIO_VS_SIMPLEITK:.1f}× SimpleITK time, peak ≤ {GOAL_PEAK_RATIO:.1f}× volume bytes, "
        f"≤ {GOAL_RATIO_VS_MEMCPY:.0f}× the memcpy floor"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Series written by other generators
# ---------------------------------------------------------------------------------------------------------------


def pixel_spans(files: list[str]) -> list[tuple[int, int]]:
    """``(offset, length)`` of each uncompressed file's pixel data (parsed once, before any timing)."""
    import pydicom

    from viewer.dicom.pixels import PIXEL_DATA

    spans = []
    for f in files:
        ds = pydicom.dcmread(f, defer_size=1024)
        elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
        spans.append((int(elem.value_tell), int(elem.length)))
    return spans


def read_floor(
    files: list[str], spans: list[tuple[int, int]], shape: tuple[int, ...], dtype: Any
) -> np.ndarray:
    """The file-reading floor: each file's pixel bytes read at their known offset into one preallocated array.

    What any loader of uncompressed files must at least do (open, read from the page cache, fault in the
    output's pages), without parsing a header or converting a value.
    """
    out = np.empty(shape, dtype=dtype)
    for k, (f, (offset, length)) in enumerate(zip(files, spans, strict=True)):
        view = memoryview(out[k]).cast("B")
        with open(f, "rb", buffering=0) as fh:
            fh.seek(offset)
            fh.readinto(view[:length])
    return out


@dataclass(slots=True)
class GeneratorBenchResult:
    """Load times of one other-generator series: ours, SimpleITK, plain pydicom and the file-reading floor."""

    key: str
    description: str
    n_slices: int
    matrix: int
    repeats: int
    results: dict[str, Measured]
    dtypes: dict[str, str]
    same_values: dict[str, bool]

    def ratio(self, name: str, baseline: str) -> float:
        return self.results[name].median_s / self.results[baseline].median_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "series": self.description,
            "n_slices": self.n_slices,
            "matrix": self.matrix,
            "repeats": self.repeats,
            "median_s": {name: m.median_s for name, m in self.results.items()},
            "ours_vs_simpleitk": self.ratio("ours", "simpleitk"),
            "ours_vs_pydicom_plain": self.ratio("ours", "pydicom_plain"),
            "ours_vs_floor": self.ratio("ours", "floor"),
            "dtype": self.dtypes,
            "same_values_as_ours": self.same_values,
        }


def run_generator_benchmark(
    n_slices: int = 100,
    matrix: int = 512,
    repeats: int = 3,
    kinds: tuple[str, ...] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> list[GeneratorBenchResult]:
    """Write each series of :data:`viewer.bench.other_series.KINDS` (or those named in ``kinds``) and load it
    ``repeats`` times with each loader, the order rotated between rounds; medians compared in one process.

    Loaders: ``ours`` (:func:`viewer.dicom.readers.load_stack`), ``simpleitk`` (``ImageSeriesReader``, native
    type), ``pydicom_plain`` (``dcmread`` + ``pixel_array`` + rescale per file, then ``np.stack``) and ``floor``
    (:func:`read_floor`). Files come from the page cache (they were just written).
    """
    from viewer.bench.other_series import KINDS, modality_values, write_other_series

    chosen = [k for k in KINDS if kinds is None or k.key in kinds]
    values = modality_values(n_slices, matrix)
    out: list[GeneratorBenchResult] = []
    with tempfile.TemporaryDirectory(prefix="gru-bench-other-", dir=work_dir) as tmp:
        for kind in chosen:
            paths = write_other_series(Path(tmp) / kind.key, kind, values)
            stack = stack_of(paths)
            files = [str(p) for p in stack.files]
            spans = pixel_spans(files)
            reference = load_ours(stack)
            stored = read_floor(files, spans, reference.shape, _stored_dtype(files[0]))
            loaders: dict[str, Callable[[], np.ndarray]] = {
                "ours": lambda stack=stack: load_ours(stack),
                "simpleitk": lambda files=files: load_simpleitk(files),
                "pydicom_plain": lambda files=files: load_plain_pydicom(files),
                "floor": lambda files=files, spans=spans, shape=reference.shape, dt=stored.dtype: read_floor(
                    files, spans, shape, dt
                ),
            }
            results = {name: Measured(name) for name in loaders}
            dtypes: dict[str, str] = {}
            same: dict[str, bool] = {}
            names = list(loaders)
            for r in range(repeats):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    got = _measure(loaders[name], results[name])
                    if name not in dtypes:
                        dtypes[name] = str(got.dtype)
                        if name not in ("ours", "floor"):
                            same[name] = bool(np.array_equal(got, reference))
                    del got
            out.append(
                GeneratorBenchResult(
                    kind.key, kind.description, n_slices, matrix, repeats, results, dtypes, same
                )
            )
            del reference, stored
    return out


def _stored_dtype(path: str) -> np.dtype:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return np.dtype(f"<{'i' if int(ds.PixelRepresentation) else 'u'}{int(ds.BitsAllocated) // 8}")


def format_generator_report(results: list[GeneratorBenchResult]) -> str:
    """Plain-text table: medians (s) per loader and ours' ratios to each."""
    if not results:
        return ""
    first = results[0]
    lines = [
        f"Other generators: {first.n_slices} × {first.matrix}², median of {first.repeats}, page cache warm",
        f"{'series':<32}{'ours':>7}{'SITK':>7}{'pydicom':>8}{'floor':>7}{'/SITK':>7}{'/pyd':>6}{'/floor':>7}"
        "  ours type / SITK type",
    ]
    for r in results:
        m = {name: r.results[name].median_s for name in r.results}
        lines.append(
            f"{r.key:<32}{m['ours']:>7.3f}{m['simpleitk']:>7.3f}{m['pydicom_plain']:>8.3f}{m['floor']:>7.3f}"
            f"{r.ratio('ours', 'simpleitk'):>7.2f}{r.ratio('ours', 'pydicom_plain'):>6.2f}"
            f"{r.ratio('ours', 'floor'):>7.2f}  {r.dtypes.get('ours')} / {r.dtypes.get('simpleitk')}"
        )
    return "\n".join(lines)
