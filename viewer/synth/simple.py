"""The simple head phantom of the benchmarks, and CT series written from it.

A skull ellipse around textured brain with noise, slice by slice: not anatomy, but structure enough that
compressors and decoders behave as on real CT (white noise would not). Faster to make than the full phantom
(:mod:`viewer.synth.dataset`), so benchmarks can write 300-slice 512² series; tests use it for compressed
series too (:func:`transcode_with_gdcm` writes the syntaxes no pydicom encoder here writes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series


def head_phantom(n_slices: int, matrix: int, seed: int = 0) -> np.ndarray:
    """A (z, y, x) float32 HU volume shaped like a head: air, a skull ellipse, brain with texture and noise.

    Compressors see realistic structure (not white noise), so decoder timings resemble those of real CT.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : matrix * 1j, -1 : 1 : matrix * 1j].astype(np.float32)
    hu = np.empty((n_slices, matrix, matrix), dtype=np.float32)
    for k in range(n_slices):
        t = k / max(n_slices - 1, 1)
        scale = 0.55 + 0.4 * np.sin(np.pi * (0.15 + 0.7 * t))
        r = (x / (0.8 * scale)) ** 2 + (y / (0.95 * scale)) ** 2
        brain = 32 + 6 * np.sin(9 * x + 4 * t) * np.cos(7 * y)
        sl = np.where(r < 1.0, 900.0, -1000.0).astype(np.float32)
        sl = np.where(r < 0.82, brain, sl)
        sl += rng.normal(0, 5, sl.shape).astype(np.float32) * (r < 1.0)
        hu[k] = sl
    return hu


def bench_meta(description: str = "BENCH HEAD") -> SeriesMeta:
    """Invented patient, study and series identity of the benchmark series, with ``description``."""
    return SeriesMeta.invented(
        "Bench^Load",
        "BENCH-LOAD",
        description,
        series_number=2,
        study_description="CT HEAD WO",
        accession_number="BENCH0002",
    )


def write_bench_series(
    out_dir: str | os.PathLike[str],
    n_slices: int = 300,
    matrix: int = 512,
    transfer_syntax: str = ExplicitVRLittleEndian,
    hu: np.ndarray | None = None,
) -> list[Path]:
    """Write a head phantom as a CT series (0.5 mm slices, 0.5 mm pixels) and return its files in slice order.

    JPEG Lossless and JPEG-LS, which no pydicom encoder here writes, are transcoded with GDCM.
    """
    hu = head_phantom(n_slices, matrix) if hu is None else hu
    positions, orientation = axial_geometry(n_slices, 0.5, (0.5, 0.5), matrix)
    via_gdcm = transfer_syntax in (JPEGLosslessSV1, JPEGLSLossless)
    paths = write_ct_series(
        hu,
        Path(out_dir),
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.5, 0.5),
        slice_thickness=0.5,
        meta=bench_meta(),
        transfer_syntax=ExplicitVRLittleEndian if via_gdcm else transfer_syntax,
    )
    if via_gdcm:
        for p in paths:
            transcode_with_gdcm(p, p, transfer_syntax)
    return paths


def transcode_with_gdcm(src: Path, dst: Path, transfer_syntax: str) -> None:
    """Re-encode one file with GDCM (JPEG Lossless SV1, JPEG-LS lossless, JPEG 2000 lossless or RLE)."""
    import gdcm

    kinds = {
        JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        JPEGLSLossless: gdcm.TransferSyntax.JPEGLSLossless,
        JPEG2000Lossless: gdcm.TransferSyntax.JPEG2000Lossless,
        RLELossless: gdcm.TransferSyntax.RLELossless,
    }
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise RuntimeError(f"GDCM cannot read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(kinds[transfer_syntax]))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM cannot encode {src} as {transfer_syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"GDCM cannot write {dst}")
