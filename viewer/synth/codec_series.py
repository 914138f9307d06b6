"""The bench phantom written in the lossy (and near-lossless) transfer syntaxes, beside the uncompressed series it
was encoded from, and how far each codec may move a value.

Each series is written as what another generator would produce, with the encoder that exists here:

- JPEG-LS near-lossless: CharLS (pyjpegls, through pydicom's encoder), NEAR = :data:`JLS_NEAR`;
- JPEG 2000 lossy: OpenJPEG (pylibjpeg-openjpeg, through pydicom's encoder) to a PSNR of :data:`J2K_PSNR` dB
  (an RMS error of about 2 of 4095 grey levels at any matrix; 21:1 on the 512² phantom, a clinical lossy ratio);
- JPEG Extended (Process 2 and 4), 12-bit: GDCM's JPEG codec; GDCM chooses its 8-, 12- or 16-bit libjpeg by
  *Bits Allocated*, so the image is labelled 12-bit allocated while it encodes (a 16-bit lossy JPEG, which GDCM
  writes for 16-bit allocated data, is not standard JPEG and libjpeg refuses it) and 16-bit again afterwards;
- JPEG Baseline 8-bit: Pillow (libjpeg-turbo) on an 8-bit copy of the phantom (stored = (HU + 1024) / 16,
  rescale slope 16, intercept −1024), quality :data:`JPEG_QUALITY`.

- High-Throughput JPEG 2000, lossless (reversible 5/3) and lossy (quantisation step :data:`HTJ2K_QSTEP`):
  OpenJPH's ``ojph_compress`` (Debian ``openjph-tools``) on each slice's stored values; OpenJPEG 2.5 decodes HTJ2K
  but does not encode it, and pydicom 3.0 has no HTJ2K encoder, so without that tool :func:`write_codec_series`
  refuses the HTJ2K syntaxes, saying so.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

from viewer.synth.simple import head_phantom, write_bench_series

JLS_NEAR = 2
J2K_PSNR = 66.0
JPEG_QUALITY = 90
BASELINE_SLOPE = 16

HTJ2K_QSTEP = 0.001
HTJ2K_SYNTAXES = frozenset({HTJ2K, HTJ2KLossless, HTJ2KLosslessRPCL})
HTJ2K_ENCODER = "ojph_compress"
NO_ENCODER = (
    "no HTJ2K encoder is installed here (apt-get install openjph-tools gives OpenJPH's ojph_compress): OpenJPEG "
    "2.5 (pylibjpeg-openjpeg) decodes High-Throughput JPEG 2000 but does not encode it, and pydicom 3.0 has no "
    "HTJ2K encoder"
)


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far a decoded stored value may be from the source: at most ``max_abs``, ``rms`` on average (RMS)."""

    max_abs: float
    rms: float

    def accepts(self, decoded: np.ndarray, source: np.ndarray) -> bool:
        """True when ``decoded`` is within this tolerance of ``source`` (same shape, any numeric type)."""
        diff = np.asarray(decoded, dtype=np.float64) - np.asarray(source, dtype=np.float64)
        return bool(np.abs(diff).max() <= self.max_abs and np.sqrt(np.mean(diff**2)) <= self.rms)


# In stored units, about twice what these encoders gave on the phantom at 64² to 512² (JPEG 12-bit q90: max 2,
# RMS 0.3; JPEG 2000 at 66 dB: max 11-16, RMS 2.1; JPEG 8-bit q90: max 15-19 at the skull's edge, RMS 1.0-2.1),
# so a decoder that mis-decodes (an offset, a swapped byte, a lost bit plane) fails them while a correct one passes.
TOLERANCE: dict[str, Tolerance] = {
    JPEGLSNearLossless: Tolerance(JLS_NEAR, JLS_NEAR),
    JPEG2000: Tolerance(32.0, 4.0),
    JPEGExtended12Bit: Tolerance(8.0, 1.0),
    JPEGBaseline8Bit: Tolerance(40.0, 4.0),
    HTJ2KLossless: Tolerance(0.0, 0.0),
    HTJ2K: Tolerance(32.0, 4.0),  # OpenJPH at step 0.001 on 12 bits: max 6, RMS 1.1 on the 128² phantom
}
CODEC_SYNTAXES = tuple(TOLERANCE)
LOSSLESS_CODEC_SYNTAXES = frozenset({HTJ2KLossless})


@dataclass(frozen=True, slots=True)
class CodecSeries:
    """A compressed series (``paths``) and the uncompressed series it was encoded from (``source_paths``), in
    slice order, with the tolerance of its codec in stored units (exact for lossless syntaxes)."""

    transfer_syntax: str
    paths: list[Path]
    source_paths: list[Path]
    tolerance: Tolerance


def can_write(transfer_syntax: str) -> str:
    """Why :func:`write_codec_series` cannot write ``transfer_syntax`` here ("" when it can)."""
    if transfer_syntax in HTJ2K_SYNTAXES and shutil.which(HTJ2K_ENCODER) is None:
        return NO_ENCODER
    if transfer_syntax not in TOLERANCE:
        return f"{UID(transfer_syntax).name} is not one of the syntaxes written here"
    return ""


def write_codec_series(
    out_dir: str | Path,
    n_slices: int,
    matrix: int,
    transfer_syntax: str,
    hu: np.ndarray | None = None,
) -> CodecSeries:
    """Write the phantom uncompressed under ``out_dir/source`` and encoded in ``transfer_syntax`` under
    ``out_dir/coded``.

    Raises
    ------
    ValueError
        For a syntax :func:`can_write` refuses, with its reason.
    """
    why = can_write(transfer_syntax)
    if why:
        raise ValueError(why)
    out = Path(out_dir)
    hu = head_phantom(n_slices, matrix) if hu is None else hu
    source = write_bench_series(out / "source", n_slices, matrix, ExplicitVRLittleEndian, hu=hu)
    if transfer_syntax == JPEGBaseline8Bit:
        source = [_to_8bit(p) for p in source]
    coded_dir = out / "coded"
    coded_dir.mkdir(parents=True, exist_ok=True)
    coded = []
    for p in source:
        dst = coded_dir / p.name
        _ENCODERS[transfer_syntax](p, dst)
        coded.append(dst)
    return CodecSeries(str(transfer_syntax), coded, source, TOLERANCE[transfer_syntax])


def _to_8bit(path: Path) -> Path:
    """Rewrite a 12-bit CT file in place as 8-bit: stored = (HU + 1024) / 16, so HU = stored × 16 − 1024."""
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    stored = np.clip(np.round((hu + 1024.0) / BASELINE_SLOPE), 0, 255).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.RescaleSlope, ds.RescaleIntercept = BASELINE_SLOPE, -1024
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _lossy_marks(ds: pydicom.Dataset, method: str, ratio: float) -> None:
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = method
    ds.LossyImageCompressionRatio = f"{ratio:.2f}"[:16]


def _with_pydicom(transfer_syntax: str, method: str, **kwargs: object):  # noqa: ANN202 (a small factory)
    def encode(src: Path, dst: Path) -> None:
        ds = pydicom.dcmread(src)
        raw = len(ds.PixelData)
        ds.compress(transfer_syntax, **kwargs)
        _lossy_marks(ds, method, raw / max(len(ds.PixelData), 1))
        ds.save_as(dst, enforce_file_format=True)

    return encode


def _jpeg_extended_gdcm(src: Path, dst: Path) -> None:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise RuntimeError(f"GDCM cannot read {src}")
    image = reader.GetImage()
    image.SetPixelFormat(gdcm.PixelFormat(1, 12, 12, 11, 0))
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    change.SetInput(image)
    if not change.Change():
        raise RuntimeError(f"GDCM cannot encode {src} as JPEG Extended")
    coded = change.GetOutput()
    coded.SetPixelFormat(gdcm.PixelFormat(1, 16, 12, 11, 0))
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(coded)
    if not writer.Write():
        raise RuntimeError(f"GDCM cannot write {dst}")
    ds = pydicom.dcmread(dst)
    _lossy_marks(ds, "ISO_10918_1", src.stat().st_size / max(dst.stat().st_size, 1))
    ds.save_as(dst, enforce_file_format=True)


def _jpeg_baseline_pillow(src: Path, dst: Path) -> None:
    from PIL import Image

    ds = pydicom.dcmread(src)
    buf = io.BytesIO()
    Image.fromarray(ds.pixel_array).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    raw = len(ds.PixelData)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    _lossy_marks(ds, "ISO_10918_1", raw / len(buf.getvalue()))
    ds.save_as(dst, enforce_file_format=True)


def _htj2k(transfer_syntax: str, reversible: bool):  # noqa: ANN202 (a small factory)
    """An encoder writing ``transfer_syntax`` with OpenJPH's ``ojph_compress``, lossless when ``reversible``."""

    def encode(src: Path, dst: Path) -> None:
        ds = pydicom.dcmread(src)
        stored = ds.pixel_array
        signed = int(ds.PixelRepresentation) == 1
        with tempfile.TemporaryDirectory(prefix="gru-htj2k-") as tmp:
            raw, coded = Path(tmp) / "slice.rawl", Path(tmp) / "slice.j2c"
            stored.astype("<i2" if signed else "<u2").tofile(raw)
            quality = ["-reversible", "true"] if reversible else ["-qstep", str(HTJ2K_QSTEP)]
            # Five wavelet levels (the default) leave a 32² image a single pixel at the coarsest, where lossy
            # steps go wrong by a thousand grey levels: at most as many levels as keep 8 pixels there.
            levels = max(1, min(5, int(np.log2(min(stored.shape))) - 3))
            command = [
                HTJ2K_ENCODER,
                *("-i", str(raw), "-o", str(coded), "-num_comps", "1", "-downsamp", "{1,1}"),
                *("-dims", f"{{{stored.shape[1]},{stored.shape[0]}}}", "-signed", str(signed).lower()),
                *("-bit_depth", str(int(ds.BitsStored)), "-num_decomps", str(levels)),
                *quality,
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0 or not coded.is_file():
                raise RuntimeError(f"{HTJ2K_ENCODER} failed on {src.name}: {done.stderr.strip()[-200:]}")
            codestream = coded.read_bytes()
        raw_size = len(ds.PixelData)
        ds.PixelData = encapsulate([codestream])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        if not reversible:
            _lossy_marks(ds, "ISO_15444_15", raw_size / len(codestream))
        ds.save_as(dst, enforce_file_format=True)

    return encode


_ENCODERS = {
    JPEGLSNearLossless: _with_pydicom(JPEGLSNearLossless, "ISO_14495_1", jls_error=JLS_NEAR),
    JPEG2000: _with_pydicom(JPEG2000, "ISO_15444_1", j2k_psnr=[J2K_PSNR]),
    JPEGExtended12Bit: _jpeg_extended_gdcm,
    JPEGBaseline8Bit: _jpeg_baseline_pillow,
    HTJ2KLossless: _htj2k(HTJ2KLossless, reversible=True),
    HTJ2K: _htj2k(HTJ2K, reversible=False),
}
