"""Benchmark of the decoders per transfer syntax, and of whole-series loads of compressed series: ours against
SimpleITK and plain pydicom in the same run.

Every installed pydicom decoding plugin, GDCM's JPEG codec on the frame (:mod:`viewer.dicom.gdcm_codec`, JPEG
syntaxes) and GDCM's own whole-file reader decode the same slices, one thread and
two threads (a decoder that releases the GIL gets faster with two), and each result is checked against the
uncompressed stored values it was encoded from: equal for the lossless syntaxes, within the codec's tolerance
(:data:`viewer.synth.codec_series.TOLERANCE`) for the lossy ones. The table in
:data:`viewer.dicom.pixels.DECODERS` is chosen from this bench.

``python -m viewer.bench.decoders [--slices N] [--matrix M]`` prints both tables.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from viewer.bench.load import load_ours, load_plain_pydicom, load_simpleitk, stack_of
from viewer.synth.codec_series import CODEC_SYNTAXES, Tolerance, can_write, write_codec_series
from viewer.synth.simple import head_phantom, write_bench_series

LOSSLESS_SYNTAXES = (JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless)
ALL_SYNTAXES = LOSSLESS_SYNTAXES + CODEC_SYNTAXES
EXACT = Tolerance(0.0, 0.0)


@dataclass(slots=True)
class DecoderTiming:
    """One decoder on one syntax: ms per slice (one and two threads), and whether its values were right."""

    transfer_syntax: str
    decoder: str
    ms_per_slice: float
    ms_per_slice_2_threads: float | None
    within_tolerance: bool | None
    max_error: float | None = None
    error: str = ""


@dataclass(slots=True)
class SeriesLoad:
    """Whole-series load times (s, best of the repeats; NaN where a reader cannot read the syntax) and whether
    each reader's modality values were within the codec's tolerance of the uncompressed source."""

    transfer_syntax: str
    ours_s: float
    simpleitk_s: float
    pydicom_s: float
    ours_ok: bool
    simpleitk_ok: bool | None
    pydicom_ok: bool | None
    note: str = ""
    ours_one_process_s: float = float("nan")

    @property
    def ratio(self) -> float:
        """Ours against the faster of SimpleITK and plain pydicom (the goal is ≤ 1.0)."""
        others = [t for t in (self.simpleitk_s, self.pydicom_s) if math.isfinite(t)]
        return self.ours_s / min(others) if others else float("nan")


def bench_decoders(
    n_slices: int = 40,
    matrix: int = 512,
    syntaxes: tuple[str, ...] = ALL_SYNTAXES,
    work_dir: str | os.PathLike[str] | None = None,
    load_level: bool = True,
    repeats: int = 3,
) -> tuple[list[DecoderTiming], list[SeriesLoad]]:
    """Time every installed decoder on the same slices of each syntax, and (``load_level``) whole-series loads
    (best of ``repeats``, each reader in turn). "ours" loads as the viewer does once its decoding processes are
    up (:mod:`viewer.dicom.decode_pool`; they are started before the timings), "ours, 1 process" decodes on one
    thread of this process, as where processes cannot be used.

    A syntax no encoder here can write (HTJ2K) gives one row with the reason and no timings.
    """
    from viewer.dicom import decode_pool

    if load_level:
        decode_pool.running_pool()
    hu = head_phantom(n_slices, matrix)
    timings: list[DecoderTiming] = []
    loads: list[SeriesLoad] = []
    with tempfile.TemporaryDirectory(prefix="gru-bench-dec-", dir=work_dir) as tmp:
        raw = write_bench_series(Path(tmp) / "raw", n_slices, matrix, ExplicitVRLittleEndian, hu=hu)
        for ts in syntaxes:
            why = "" if ts in LOSSLESS_SYNTAXES else can_write(ts)
            if why:
                timings.append(DecoderTiming(str(ts), "-", float("nan"), None, None, error=why))
                continue
            if ts in LOSSLESS_SYNTAXES:
                paths = write_bench_series(Path(tmp) / str(ts), n_slices, matrix, ts, hu=hu)
                source, tolerance = raw, EXACT
            else:
                series = write_codec_series(Path(tmp) / str(ts), n_slices, matrix, ts, hu=hu)
                paths, source, tolerance = series.paths, series.source_paths, series.tolerance
            timings.extend(_time_decoders(paths, source, str(ts), tolerance))
            if load_level:
                loads.append(_time_loads(paths, source, str(ts), tolerance, repeats))
    return timings, loads


def _stored(paths: list[Path]) -> list[np.ndarray]:
    import pydicom

    return [pydicom.dcmread(p).pixel_array for p in paths]


def _time_decoders(
    paths: list[Path], source: list[Path], ts: str, tolerance: Tolerance
) -> list[DecoderTiming]:
    import pydicom
    from pydicom.pixels import get_decoder

    from viewer.dicom import gdcm_codec
    from viewer.dicom.pixels import GDCM_CODEC, GDCM_READER

    reference = _stored(source)
    datasets = [pydicom.dcmread(p) for p in paths]
    for d in datasets:
        _ = d.PixelData
    out: list[DecoderTiming] = []
    ours = [GDCM_CODEC] if ts in gdcm_codec.JPEG_SYNTAXES and gdcm_codec.available() else []
    for plugin in [*get_decoder(ts).available_plugins, *ours, GDCM_READER]:
        decode = _decoder(paths, datasets, ts, plugin)
        try:
            t0 = time.perf_counter()
            got = [decode(i) for i in range(len(paths))]
            one = (time.perf_counter() - t0) / len(paths) * 1e3
            error = max(
                float(np.abs(a.astype(np.float64) - b).max()) for a, b in zip(got, reference, strict=True)
            )
            ok = all(tolerance.accepts(a, b) for a, b in zip(got, reference, strict=True))
            with ThreadPoolExecutor(2) as pool:
                t0 = time.perf_counter()
                list(pool.map(decode, range(len(paths))))
                two = (time.perf_counter() - t0) / len(paths) * 1e3
            out.append(DecoderTiming(ts, plugin, one, two, ok, error))
        except Exception as exc:  # a decoder that cannot handle this syntax is a result too
            text = str(exc).strip().splitlines()
            out.append(
                DecoderTiming(ts, plugin, float("nan"), None, None, error=(text[-1] if text else "")[:120])
            )
    return out


def _decoder(paths: list[Path], datasets: list[Any], ts: str, plugin: str) -> Callable[[int], np.ndarray]:
    from pydicom.pixels import pixel_array

    from viewer.dicom.codec_guard import native_stderr_captured
    from viewer.dicom.pixels import GDCM_CODEC, GDCM_READER, SourceFile

    # GDCM's codec decodes a parsed file's frame: the parse is not timed (as pydicom's plugins get datasets).
    parsed = [SourceFile(str(p), ts) for p in paths] if plugin == GDCM_CODEC else []

    def decode(i: int) -> np.ndarray:
        with native_stderr_captured(plugin, ()):
            if plugin == GDCM_CODEC:
                return parsed[i]._gdcm_codec(0)
            if plugin == GDCM_READER:
                return SourceFile(str(paths[i]), ts)._gdcm_reader(0)
            return pixel_array(datasets[i], decoding_plugin=plugin)

    return decode


def _modality(paths: list[Path]) -> np.ndarray:
    import pydicom

    out = []
    for p in paths:
        ds = pydicom.dcmread(p)
        out.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.stack(out)


def _time_loads(
    paths: list[Path], source: list[Path], ts: str, tolerance: Tolerance, repeats: int
) -> SeriesLoad:
    import pydicom

    slope = float(pydicom.dcmread(source[0], stop_before_pixels=True).RescaleSlope)
    in_units = Tolerance(tolerance.max_abs * slope, tolerance.rms * slope)
    reference = _modality(source)
    stack = stack_of(paths)
    files = [str(p) for p in stack.files]
    results: dict[str, tuple[float, bool | None]] = {}
    notes = []
    from viewer.dicom.readers import PydicomReader

    loaders = {
        "ours": lambda: load_ours(stack),
        "ours_one_process": lambda: PydicomReader(processes=False).read(stack).array,
        "simpleitk": lambda: load_simpleitk(files),
        "pydicom": lambda: load_plain_pydicom(files),
    }
    for r in range(
        repeats
    ):  # alternated, the order rotated, the best kept: a shared machine's noise is one-sided
        names = list(loaders)[r % len(loaders) :] + list(loaders)[: r % len(loaders)]
        for name in names:
            if name in results and math.isnan(results[name][0]):
                continue
            try:
                t0 = time.perf_counter()
                got = loaders[name]()
                seconds = time.perf_counter() - t0
                best = min(seconds, results[name][0]) if name in results else seconds
                results[name] = (best, in_units.accepts(got, reference))
            except Exception as exc:  # a reader that cannot read this syntax is a result too
                results[name] = (float("nan"), None)
                notes.append(f"{name}: {type(exc).__name__}")
    return SeriesLoad(
        ts,
        results["ours"][0],
        results["simpleitk"][0],
        results["pydicom"][0],
        bool(results["ours"][1]) and bool(results["ours_one_process"][1]),
        results["simpleitk"][1],
        results["pydicom"][1],
        "; ".join(notes),
        results["ours_one_process"][0],
    )


def format_decoder_report(timings: list[DecoderTiming], loads: list[SeriesLoad]) -> str:
    """Plain-text tables: decoders per syntax, then whole-series loads."""
    lines = [f"{'transfer syntax':<44}{'decoder':<14}{'ms/slice':>9}{'2 threads':>10}{'max err':>9}  within"]
    for d in timings:
        two = f"{d.ms_per_slice_2_threads:>10.2f}" if d.ms_per_slice_2_threads is not None else f"{'':>10}"
        err = f"{d.max_error:>9.1f}" if d.max_error is not None else f"{'':>9}"
        text = d.error or str(d.within_tolerance)
        lines.append(
            f"{UID(d.transfer_syntax).name[:43]:<44}{d.decoder:<14}{d.ms_per_slice:>9.2f}{two}{err}  {text}"
        )
    if loads:
        lines += [
            "",
            f"{'load (best of repeats)':<44}{'ours':>7}{'1 proc':>7}{'SITK':>7}{'pydicom':>8}{'/faster':>8}"
            "  values ok",
        ]
        for r in loads:
            ok = f"ours {r.ours_ok}, SITK {r.simpleitk_ok}, pydicom {r.pydicom_ok}"
            lines.append(
                f"{UID(r.transfer_syntax).name[:43]:<44}{r.ours_s:>7.2f}{r.ours_one_process_s:>7.2f}"
                f"{r.simpleitk_s:>7.2f}{r.pydicom_s:>8.2f}"
                f"{r.ratio:>8.2f}  {ok}{'  ' + r.note if r.note else ''}"
            )
    return "\n".join(lines)


def as_dict(timings: list[DecoderTiming], loads: list[SeriesLoad]) -> dict[str, Any]:
    """Both tables as plain data (for ``bench/results.json``)."""
    return {
        "decoders": [asdict(t) for t in timings],
        "loads": {r.transfer_syntax: {**asdict(r), "ratio_vs_faster": r.ratio} for r in loads},
    }


def main(argv: list[str] | None = None) -> None:
    """Print both tables for ``--slices`` × ``--matrix``² series."""
    parser = argparse.ArgumentParser(prog="python -m viewer.bench.decoders", description=__doc__)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="whole-series loads per reader (best kept)")
    args = parser.parse_args(argv)
    print(format_decoder_report(*bench_decoders(args.slices, args.matrix, repeats=args.repeats)))


if __name__ == "__main__":
    main()
