"""Series written by other generators than :mod:`viewer.synth`, for benchmarks that must not flatter our reader.

Our phantom writer stores uint16 with BitsStored 12 and an intercept, and a loader tuned on it alone can be slow
elsewhere (the issue that started this: other series loaded 3× slower than SimpleITK). These series differ in
what a reader meets: the writing library (SimpleITK's GDCM writer; pydicom datasets built here field by field),
the transfer syntax (implicit or explicit VR), the stored type (int16, uint16), BitsStored and the rescale
(identity, an integer intercept, a fractional slope). Pixel values come from a smooth random field plus noise,
not from our head phantom.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

UID_ROOT = "1.2.826.0.1.3680043.10.1000."  # an example root: these files are benchmark scratch
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True, slots=True)
class OtherSeries:
    """One kind of series: how it is written and what its stored values and rescale are."""

    key: str
    generator: str  # "simpleitk" or "pydicom"
    stored: str  # "int16" or "uint16"
    bits_stored: int
    slope: float
    intercept: float

    @property
    def description(self) -> str:
        """e.g. "simpleitk, int16 (16 bits), rescale 1 × stored − 1024"."""
        if (self.slope, self.intercept) == (1.0, 0.0):
            rescale = "identity"
        else:
            sign = "−" if self.intercept < 0 else "+"
            rescale = f"{self.slope:g} × stored {sign} {abs(self.intercept):g}"
        return f"{self.generator}, {self.stored} ({self.bits_stored} bits), rescale {rescale}"


KINDS: tuple[OtherSeries, ...] = (
    OtherSeries("sitk_int16", "simpleitk", "int16", 16, 1.0, 0.0),
    OtherSeries("sitk_uint16", "simpleitk", "uint16", 16, 1.0, 0.0),
    OtherSeries("sitk_int16_intercept", "simpleitk", "int16", 16, 1.0, -1024.0),
    OtherSeries("sitk_uint16_intercept", "simpleitk", "uint16", 16, 1.0, -1024.0),
    OtherSeries("pydicom_uint16_12bit_intercept", "pydicom", "uint16", 12, 1.0, -1024.0),
    OtherSeries("pydicom_uint16_slope_half", "pydicom", "uint16", 16, 0.5, -1024.0),
)


def modality_values(n_slices: int, matrix: int, seed: int = 0) -> np.ndarray:
    """``(n, matrix, matrix)`` int32 values in about -1000..2000: a smooth field (a few random cosines) plus noise.

    Built per slice, so a 100 × 512² series takes well under a second.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:matrix, 0:matrix].astype(np.float32) / np.float32(matrix)
    waves = [(rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 6.3)) for _ in range(4)]
    base = sum(np.cos(np.float32(2 * np.pi) * (fx * x + fy * y) + ph) for fx, fy, ph in waves)
    out = np.empty((n_slices, matrix, matrix), dtype=np.int32)
    for k in range(n_slices):
        noise = rng.normal(0.0, 20.0, (matrix, matrix)).astype(np.float32)
        out[k] = np.rint(base * np.float32(350.0 + 5.0 * k) + np.float32(300.0) + noise)
    return np.clip(out, -1000, 2000)


def stored_values(values: np.ndarray, kind: OtherSeries) -> np.ndarray:
    """Stored values whose rescale gives ``values`` (rounded for a fractional slope), in ``kind``'s type."""
    stored = np.rint((values.astype(np.float64) - kind.intercept) / kind.slope)
    info = np.iinfo(kind.stored)
    top = min(info.max, (1 << kind.bits_stored) - 1) if kind.stored == "uint16" else info.max
    return np.clip(stored, info.min if kind.stored == "int16" else 0, top).astype(kind.stored)


def write_other_series(folder: str | os.PathLike[str], kind: OtherSeries, values: np.ndarray) -> list[Path]:
    """Write ``values`` (modality values, ``(z, y, x)``) as a CT series of ``kind`` into ``folder``; returns the
    files in slice order (slice 0 lowest)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    writer: Callable[[Path, OtherSeries, np.ndarray], list[Path]] = (
        _write_simpleitk if kind.generator == "simpleitk" else _write_pydicom
    )
    return writer(out, kind, values)


@contextmanager
def _locale_kept() -> Iterator[None]:
    """Restore the process's locale after ITK's GDCM writer, which leaves LC_CTYPE at "C": Python's default text
    encoding then turns ASCII for the rest of the process (seen: every later ``read_text`` of a model card failed)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_simpleitk(out: Path, kind: OtherSeries, values: np.ndarray) -> list[Path]:
    """SimpleITK's ``ImageFileWriter`` per slice (its DICOM series example): GDCM writes implicit VR files.

    With a rescale in the metadata GDCM stores ``(value − intercept) / slope`` itself. A uint16 image holds
    non-negative values, so those series hold ``values − values.min()``.
    """
    import SimpleITK as sitk

    source = values - values.min() if kind.stored == "uint16" else values
    image = sitk.GetImageFromArray(source.astype(kind.stored))
    image.SetSpacing((0.5, 0.5, 1.0))
    study, series = _uid(kind.key, 1), _uid(kind.key, 2)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(values.shape[0]):
        one = image[:, :, k]
        tags = {
            "0008|0016": CT_IMAGE_STORAGE,
            "0008|0018": _uid(kind.key, 3, k + 1),
            "0008|0060": "CT",
            "0010|0010": "OTHER^GENERATOR",
            "0010|0020": "BENCH-OTHER",
            "0020|000d": study,
            "0020|000e": series,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": "1",
        }
        if kind.intercept != 0.0:
            tags["0028|1052"] = f"{kind.intercept:g}"
            tags["0028|1053"] = f"{kind.slope:g}"
        for tag, value in tags.items():
            one.SetMetaData(tag, value)
        path = out / f"slice{k:04d}.dcm"
        writer.SetFileName(str(path))
        with _locale_kept():
            writer.Execute(one)
        paths.append(path)
    return paths


def _write_pydicom(out: Path, kind: OtherSeries, values: np.ndarray) -> list[Path]:
    """pydicom datasets built field by field, explicit VR little endian, files named by SOP Instance UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    stored = stored_values(values, kind)
    study, series = _uid(kind.key, 1), _uid(kind.key, 2)
    signed = kind.stored == "int16"
    paths = []
    for k in range(values.shape[0]):
        sop = _uid(kind.key, 3, k + 1)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop
        ds.Modality = "CT"
        ds.PatientName = "OTHER^GENERATOR"
        ds.PatientID = "BENCH-OTHER"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = values.shape[0] - k  # written top down, numbered from the top
        ds.ImagePositionPatient = [-128.0, -128.0, float(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(values.shape[1]), int(values.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = kind.bits_stored
        ds.HighBit = kind.bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleIntercept = f"{kind.intercept:g}"
        ds.RescaleSlope = f"{kind.slope:g}"
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<" + stored.dtype.str[1:]).tobytes()
        path = out / f"{sop}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _uid(key: str, *parts: int) -> str:
    digits = "".join(str(ord(c) % 10) for c in key)[:16].lstrip("0") or "1"
    return UID_ROOT + digits + "." + ".".join(str(p) for p in parts)
