"""The pixel pipeline, one small step at a time, and the decoding of one frame of one file.

Pipeline (highdicom's ``get_volume_from_series`` and PS3.3 C.11 in the same order):

1. decode the stored values (:class:`SourceFile`: a direct read for uncompressed little endian, otherwise the
   decoder chosen per transfer syntax in :data:`DECODERS`);
2. :func:`apply_modality_lut`: stored values → modality values (HU for CT), stored in the volume (the narrowest
   integer type that holds them exactly, float32 only where they are not integers:
   :mod:`viewer.dicom.modality_dtype`);
3. :func:`apply_voi_window`: modality values → display values in [0, 1] (done at display time);
4. :func:`invert`: MONOCHROME1 is shown inverted (done at display time).

Colour images leave step 2 for :func:`to_rgb8`, which turns YBR, palette and 16-bit RGB into 8-bit RGB.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pydicom
from pydicom import uid as tsuids
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame

from viewer.dicom import gdcm_codec
from viewer.dicom.codec_guard import Captured, native_stderr_captured
from viewer.dicom.file_stamp import FileStamp
from viewer.dicom.headers import (
    InflateLimitError,
    InstanceHeader,
    SkippedFile,
    read_deflated,
    read_header,
    transfer_syntax_of,
)
from viewer.dicom.j2k_check import J2K_CHECKED, codestream_problem

PIXEL_DATA = 0x7FE00010
GDCM_READER = "gdcm-reader"  # GDCM's own whole-file reader, the decoder SimpleITK uses
GDCM_CODEC = "gdcm-codec"  # GDCM's JPEG codec on one frame's bytes (viewer.dicom.gdcm_codec)

# ---------------------------------------------------------------------------------------------------------------
# Pipeline steps (pure numpy)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LUT:
    """A DICOM lookup table: input ``first_mapped`` gives ``table[0]``; inputs outside the table clamp to its ends."""

    first_mapped: int
    table: np.ndarray

    def __call__(self, values: np.ndarray) -> np.ndarray:
        idx = np.asarray(values, dtype=np.int64) - self.first_mapped
        np.clip(idx, 0, len(self.table) - 1, out=idx)
        return self.table[idx]

    @property
    def n_entries(self) -> int:
        """Number of entries in the table."""
        return len(self.table)


def lut_from_item(item: Dataset) -> LUT:
    """Read a Modality or VOI LUT Sequence item (LUTDescriptor + LUTData).

    The descriptor's first value 0 means 65536 entries (PS3.3 C.11.1.1.1); OW data is 16-bit words.
    """
    desc = [int(v) for v in item.LUTDescriptor]
    n_entries = desc[0] or 65536
    first = desc[1]
    bits = desc[2]
    data = item.LUTData
    if isinstance(data, bytes | bytearray):
        table = np.frombuffer(data, dtype="<u2")
    else:
        table = np.asarray(data if isinstance(data, Sequence) else [data], dtype=np.int64)
    table = table[:n_entries]
    if bits <= 8:
        table = table & 0xFF
    return LUT(first, table.astype(np.float32))


def apply_modality_lut(
    stored: np.ndarray,
    slope: float = 1.0,
    intercept: float = 0.0,
    lut: LUT | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Stored values → modality values (HU for CT), as float32 or in ``out``'s type.

    A Modality LUT, when present, replaces the linear rescale (PS3.3 C.11.1). ``out`` (same shape) lets the
    loader write straight into the volume's slice; when it is an integer array the slope and intercept must be
    integers, and the result is exact whenever every value fits ``out``'s type (the arithmetic runs in that type,
    modulo its size, as :mod:`viewer.dicom.modality_dtype` arranges).
    """
    if out is None:
        out = np.empty(stored.shape, dtype=np.float32)
    if lut is not None:
        out[...] = lut(stored)
        return out
    if out.dtype.kind in "iu":
        return _integer_rescale(stored, slope, intercept, out)
    if slope != 1.0:
        np.multiply(stored, np.float32(slope), out=out, dtype=np.float32, casting="unsafe")
        if intercept != 0.0:
            out += np.float32(intercept)
    elif intercept != 0.0:
        np.add(stored, np.float32(intercept), out=out, dtype=np.float32, casting="unsafe")
    else:
        np.copyto(out, stored, casting="unsafe")
    return out


@lru_cache(maxsize=64)
def _wrapped(value: float, dtype: np.dtype) -> np.generic:
    """An integer ``value`` as a scalar of ``dtype``, modulo its size (made once per series, not per slice)."""
    return np.asarray(int(value), dtype=np.int64).astype(dtype)[()]


def _integer_rescale(stored: np.ndarray, slope: float, intercept: float, out: np.ndarray) -> np.ndarray:
    """``stored × slope + intercept`` in ``out``'s integer type (wrapping, so exact for results that fit)."""
    if not (float(slope).is_integer() and float(intercept).is_integer()):
        raise ValueError(
            f"an integer volume needs an integer rescale, not slope {slope}, intercept {intercept}"
        )

    if stored.dtype.kind in "iu" and stored.dtype.itemsize == out.dtype.itemsize and stored.dtype.isnative:
        # Same width: the bits reinterpreted in ``out``'s type give the same results modulo its size, without a
        # cast in the loop (uint16 → int16 with an intercept ran 2-3× slower through numpy's casting path).
        stored = stored.view(out.dtype)

    if slope != 1.0:
        np.multiply(stored, _wrapped(slope, out.dtype), out=out, dtype=out.dtype, casting="unsafe")
        if intercept != 0.0:
            np.add(out, _wrapped(intercept, out.dtype), out=out)
    elif intercept != 0.0:
        np.add(stored, _wrapped(intercept, out.dtype), out=out, dtype=out.dtype, casting="unsafe")
    else:
        np.copyto(out, stored, casting="unsafe")
    return out


def apply_voi_window(
    values: np.ndarray, center: float, width: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Modality values → display values in [0, 1] with the DICOM LINEAR window (PS3.3 C.11.2.1.2.1).

    Values at or below ``center - 0.5 - (width - 1) / 2`` give 0, values above ``center - 0.5 + (width - 1) / 2``
    give 1, linear in between. LINEAR needs ``width ≥ 1``; narrower windows, which only make sense for
    real-valued data (dose in Gy, parametric maps), use LINEAR_EXACT (C.11.2.1.3.2): 0 at ``center - width / 2``,
    1 at ``center + width / 2``.
    """
    if not width > 0:
        raise ValueError(f"window width must be > 0, got {width}")
    if out is None:
        out = np.empty(np.shape(values), dtype=np.float32)
    if width >= 1:
        if width == 1:
            np.greater(values, center - 0.5, out=out, casting="unsafe")
            return out
        scale = 1.0 / (width - 1)
        offset = 0.5 - (center - 0.5) / (width - 1)
    else:
        scale = 1.0 / width
        offset = 0.5 - center / width
    np.multiply(values, np.float32(scale), out=out, dtype=np.float32, casting="unsafe")
    out += np.float32(offset)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def invert(display: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """MONOCHROME1: the lowest value is shown white. ``display`` is in [0, 1]."""
    return np.subtract(np.float32(1.0), display, out=out, dtype=np.float32)


def to_display(values: np.ndarray, center: float, width: float, inverted: bool = False) -> np.ndarray:
    """The two display steps together: VOI window, then the MONOCHROME1 inversion."""
    shown = apply_voi_window(values, center, width)
    return invert(shown, out=shown) if inverted else shown


def window_from_lut(lut: LUT) -> tuple[float, float]:
    """The linear window that spans a VOI LUT's input range (used as the default window)."""
    return lut.first_mapped + lut.n_entries / 2.0, float(max(lut.n_entries, 1))


def robust_window(
    values: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0, max_samples: int = 2_000_000
) -> tuple[float, float]:
    """A default (center, width) from the data when the files give none: the 1st–99th percentile range.

    Percentiles ignore the few extreme voxels (padding, metal) that a min–max window would stretch to.
    Large volumes are sampled with a regular stride, which keeps this well under 50 ms. The width may be below
    1 for real-valued data (dose in Gy); :func:`apply_voi_window` then uses LINEAR_EXACT.
    """
    array = np.asarray(values)
    if array.size == 0:
        return 0.0, 1.0
    if array.dtype.kind in "iu" and array.dtype.itemsize <= 2:
        return _histogram_window(
            _slice_rows(array, min(max_samples, _WINDOW_INTEGER_SAMPLES)), low_pct, high_pct
        )
    flat = array.reshape(-1)
    step = max(1, flat.size // max_samples)
    sample = flat[::step]
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, [low_pct, high_pct]))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    width = hi - lo if hi > lo else 1.0
    return (lo + hi) / 2.0, width


def _slice_rows(array: np.ndarray, max_samples: int) -> list[np.ndarray]:
    """Whole rows of evenly spaced slices (at most :data:`_WINDOW_SLICES`, every k-th row), about
    ``max_samples`` values in all; the whole array when it is smaller. Rows are contiguous, so counting them is
    far faster than counting a strided sample of the same size."""
    if array.ndim < 3 or array.size <= max_samples:
        return [array]
    count = min(array.shape[0], _WINDOW_SLICES)
    picks = np.unique(np.linspace(0, array.shape[0] - 1, count).round().astype(int))
    step = max(1, int(np.ceil(len(picks) * array[0].size / max_samples)))
    return [array[k, ::step] for k in picks]


_WINDOW_SLICES = 32
_WINDOW_INTEGER_SAMPLES = 500_000


def _histogram_window(parts: list[np.ndarray], low_pct: float, high_pct: float) -> tuple[float, float]:
    """:func:`robust_window` for 8- and 16-bit integers: percentiles from a histogram of the values (counting,
    no sort), interpolated as ``np.percentile`` does. ``parts`` are contiguous samples (whole slices), which a
    counting pass reads far faster than a strided sample (300 × 512² int16: 4 ms against 58 ms).
    """
    lo_v = min(int(p.min()) for p in parts)
    hi_v = max(int(p.max()) for p in parts)
    if hi_v == lo_v:
        return float(lo_v), 1.0
    counts = np.zeros(hi_v - lo_v + 1, dtype=np.int64)
    for p in parts:
        counts += np.bincount(np.subtract(p, lo_v, dtype=np.int32).reshape(-1), minlength=counts.size)
    cdf = np.cumsum(counts)
    n = int(cdf[-1])

    def ordered(i: int) -> float:  # the i-th smallest value (0-based)
        return float(np.searchsorted(cdf, i, side="right") + lo_v)

    def percentile(pct: float) -> float:  # numpy's default ("linear") interpolation between order statistics
        at = pct / 100.0 * (n - 1)
        below = int(np.floor(at))
        low = ordered(below)
        return low if below + 1 >= n else low + (at - below) * (ordered(below + 1) - low)

    lo, hi = percentile(low_pct), percentile(high_pct)
    if hi <= lo:
        lo, hi = float(lo_v), float(hi_v)
    return (lo + hi) / 2.0, hi - lo


def mask_unused_bits(stored: np.ndarray, bits_stored: int, bits_allocated: int) -> np.ndarray:
    """Ignore bits above *Bits Stored* (PS3.5 8.1.1): unsigned data is masked, signed data sign-extended.

    Works in place on integer arrays; old scanners leave overlay bits or garbage in the unused high bits.
    """
    shift = bits_allocated - bits_stored
    if shift <= 0 or stored.dtype.kind not in "iu":
        return stored
    if stored.dtype.kind == "u":  # one pass instead of two shifts
        np.bitwise_and(stored, stored.dtype.type((1 << bits_stored) - 1), out=stored)
        return stored
    np.left_shift(stored, shift, out=stored)
    np.right_shift(stored, shift, out=stored)
    return stored


def to_rgb8(rgb: np.ndarray, bits_stored: int) -> np.ndarray:
    """RGB samples of any depth → 8-bit RGB (keeps the top 8 significant bits)."""
    if rgb.dtype == np.uint8:
        return rgb
    shift = max(int(bits_stored) - 8, 0)
    if rgb.dtype.kind == "f":
        return np.clip(rgb, 0, 255).astype(np.uint8)
    return (np.asarray(rgb, dtype=np.uint32) >> shift).astype(np.uint8)


def palette_to_rgb8(indices: np.ndarray, ds: Dataset) -> np.ndarray:
    """PALETTE COLOR indices → 8-bit RGB with the dataset's (possibly segmented) palette tables."""
    from pydicom.pixels.processing import apply_color_lut

    rgb = apply_color_lut(indices, ds)
    if rgb.shape[-1] == 4:
        rgb = rgb[..., :3]
    if rgb.dtype == np.uint8:
        return rgb
    return (rgb >> 8).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Decoder choice per transfer syntax
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecoderChoice:
    """How one transfer syntax is decoded.

    ``plugins`` are pydicom ``decoding_plugin`` names, tried in order; ``threads`` says whether decoding slices
    on several threads pays (only when the work releases the GIL); ``processes`` whether decoding processes
    (:mod:`viewer.dicom.decode_pool`) may take the series (not where a frame decodes faster than it is handed
    over).
    """

    plugins: tuple[str, ...]
    threads: bool
    why: str
    processes: bool = True


NATIVE_DIRECT = frozenset({tsuids.ImplicitVRLittleEndian, tsuids.ExplicitVRLittleEndian})

# Chosen by measurement (viewer.bench.decoders; 30 slices of the 512² bench phantom, best of 5 rounds alternated,
# one thread, a shared 2-core machine), ms per slice:
#   JPEG Lossless SV1     gdcm 4.5 · pylibjpeg 11.1                         identical pixels
#                         gdcm-codec 2.2 · gdcm 3.8 · GDCM reader 4.1 · pylibjpeg 11.0 (30 × 512², #17's third part)
#   JPEG-LS lossless      pyjpegls 2.8 · gdcm 3.8                           identical pixels
#   JPEG-LS near-lossless pyjpegls 3.2 · gdcm 4.0                           identical pixels
#   JPEG baseline 8-bit   pillow 0.49 · gdcm 1.05 · pylibjpeg 1.85          within q90's error of the source
#   JPEG extended 12-bit  pylibjpeg 4.8 · GDCM reader 4.2 (pydicom's gdcm and pillow plugins refuse 12-bit)
#                         gdcm-codec 2.2 · GDCM reader 3.7 · pylibjpeg 4.7 (30 × 512², #17's third part; each
#                         within 2 of the source, the codec's values the reader's, pylibjpeg's up to 2 apart)
#   JPEG 2000 lossless    pylibjpeg 15.6 · pillow 18.9 (gdcm 12.4 in an earlier run: not used, below)
#   JPEG 2000 lossy       pylibjpeg 9.4 · pillow 10.4
#   RLE                   pylibjpeg-rle 0.45 · pydicom 1.7 · GDCM reader 11.4
#   HTJ2K lossless/lossy  pylibjpeg 2.8 / 3.7 · GDCM reader 12.1 / 8.5 (100 × 512² written by OpenJPH's
#                         ojph_compress, session 7, with a test suite running beside it)
# gdcm-codec (viewer.dicom.gdcm_codec) is GDCM's JPEG codec called on the frame's bytes: pydicom's gdcm plugin
# spends about half its time turning GDCM's output into a str and back into bytes.
# JPEG baseline and extended are lossy: decoders differ by a grey level here and there, so a series keeps the
# decoder that did its first slice (the fallback that worked is promoted, never mixed back).
# Threads: only GDCM's JPEG 2000 path releases the GIL (2 threads 1.3-1.46x); every other decoder holds it, so
# two threads were no faster. GDCM throws a C++ exception through pydicom on a corrupt JPEG 2000 codestream, which
# terminates the whole process ("terminate called after throwing std::string"): a bad file must never crash the
# app, so GDCM is not used for JPEG 2000 at all (in a decoding process it would be safe, but it was no faster
# there: 19 ms a frame against pylibjpeg's 17-19). Compressed stacks decode in worker processes instead
# (viewer.dicom.decode_pool: a fork server started once, about 0.6 s, pools after it in 15 ms), or on one thread
# where processes cannot be used.
GDCM_UNSAFE = frozenset(
    {tsuids.JPEG2000Lossless, tsuids.JPEG2000, tsuids.HTJ2KLossless, tsuids.HTJ2KLosslessRPCL, tsuids.HTJ2K}
)  # HTJ2K: GDCM's JPEG 2000 path (OpenJPEG) again, with the same exceptions

DECODERS: dict[str, DecoderChoice] = {
    tsuids.ImplicitVRLittleEndian: DecoderChoice((), True, "direct read at the pixel data offset"),
    tsuids.ExplicitVRLittleEndian: DecoderChoice((), True, "direct read at the pixel data offset"),
    tsuids.ExplicitVRBigEndian: DecoderChoice((), False, "pydicom native decoder (byte swap)"),
    tsuids.DeflatedExplicitVRLittleEndian: DecoderChoice((), False, "pydicom inflates the whole dataset"),
    tsuids.JPEGBaseline8Bit: DecoderChoice(
        ("pillow", "gdcm", "pylibjpeg"),
        False,
        "Pillow (libjpeg-turbo) 2× faster than GDCM, 4× than pylibjpeg; in this process: a 0.5 ms frame gains "
        "nothing in a worker (40 × 512²: 0.052 s against 0.057 s quiet) and loses beside a busy program (0.068 s "
        "against 0.036 s)",
        processes=False,
    ),
    tsuids.JPEGExtended12Bit: DecoderChoice(
        (GDCM_CODEC, "pylibjpeg", "pillow", "gdcm"),
        False,
        "GDCM's 12-bit codec on the frame 2× faster than pylibjpeg (pydicom's gdcm plugin refuses 12-bit)",
    ),
    tsuids.JPEGLossless: DecoderChoice(
        (GDCM_CODEC, "gdcm", "pylibjpeg"),
        False,
        "GDCM's codec on the frame, output copied once; pylibjpeg-libjpeg has mis-decoded lossless JPEG",
    ),
    tsuids.JPEGLosslessSV1: DecoderChoice(
        (GDCM_CODEC, "gdcm", "pylibjpeg"),
        False,
        "GDCM's codec on the frame, output copied once; pylibjpeg-libjpeg has mis-decoded lossless JPEG",
    ),
    tsuids.JPEGLSLossless: DecoderChoice(
        ("pyjpegls", "gdcm", "pylibjpeg"), False, "CharLS 1.3× faster than GDCM"
    ),
    tsuids.JPEGLSNearLossless: DecoderChoice(
        ("pyjpegls", "gdcm", "pylibjpeg"), False, "CharLS 1.3× faster than GDCM"
    ),
    tsuids.JPEG2000Lossless: DecoderChoice(
        ("pylibjpeg", "pillow"), False, "GDCM aborts on corrupt codestreams"
    ),
    tsuids.JPEG2000: DecoderChoice(("pylibjpeg", "pillow"), False, "GDCM aborts on corrupt codestreams"),
    tsuids.HTJ2KLossless: DecoderChoice(
        ("pylibjpeg",), False, "pylibjpeg-openjpeg 3-4× faster than GDCM, which aborts on corrupt codestreams"
    ),
    tsuids.HTJ2KLosslessRPCL: DecoderChoice(
        ("pylibjpeg",), False, "pylibjpeg-openjpeg 3-4× faster than GDCM, which aborts on corrupt codestreams"
    ),
    tsuids.HTJ2K: DecoderChoice(
        ("pylibjpeg",), False, "pylibjpeg-openjpeg 3-4× faster than GDCM, which aborts on corrupt codestreams"
    ),
    tsuids.RLELossless: DecoderChoice(
        ("pylibjpeg", "pydicom"), False, "pylibjpeg-rle 4× faster than pydicom's, 25× faster than GDCM"
    ),
}


def decoder_choice(transfer_syntax: str) -> DecoderChoice:
    """The decoding plan for a transfer syntax; unknown syntaxes get pydicom's defaults then GDCM."""
    return DECODERS.get(str(transfer_syntax), DecoderChoice(("",), False, "pydicom default"))


def decoder_order(transfer_syntax: str) -> tuple[str, ...]:
    """Decoders to try for a syntax, best first: the installed preferred plugins, then GDCM's reader.

    Uncompressed syntaxes give ``("",)`` (pydicom's native decoder); the direct read needs no decoder.
    """
    from pydicom.pixels import get_decoder

    ts = str(transfer_syntax)
    choice = decoder_choice(ts)
    if not choice.plugins:
        return ("",)
    try:
        installed = set(get_decoder(ts).available_plugins)
    except (NotImplementedError, ValueError, KeyError):
        installed = set()
    plugins = tuple(
        p for p in choice.plugins if p == "" or p in installed or (p == GDCM_CODEC and gdcm_codec.available())
    )
    if ts in GDCM_UNSAFE:
        return plugins
    return plugins + (GDCM_READER,)


# ---------------------------------------------------------------------------------------------------------------
# One file: parse once, decode any frame
# ---------------------------------------------------------------------------------------------------------------


class DecodeError(Exception):
    """A frame that cannot be decoded; the message says why in plain words."""


@dataclass(frozen=True, slots=True)
class ModalityParams:
    """The modality transform of one frame."""

    slope: float = 1.0
    intercept: float = 0.0
    lut: LUT | None = None
    rescale_type: str = ""
    has_rescale: bool = False


def _first(seq: Any) -> Dataset | None:
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _num(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if len(value) else default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


_GDCM_LOCK = threading.Lock()
_BITS_STORED = 0x00280101
_RESCALE_INTERCEPT = 0x00281052
_RESCALE_SLOPE = 0x00281053
_RESCALE_TYPE = 0x00281054
_MODALITY_LUT = 0x00283000
_SHARED_GROUPS = 0x52009229
_DOSE_GRID_SCALING = 0x3004000E
_PER_FRAME_GROUPS = 0x52009230


def _reread(path: str) -> InstanceHeader:
    """The header of a file that changed since it was indexed, read again as the index reads it, so that a file
    now damaged says how (pydicom reads an encapsulated file cut short as an empty dataset: "image is 0×0")."""
    try:
        return read_header(path)
    except SkippedFile as exc:
        raise DecodeError(f"changed since it was indexed: {exc.why}") from None


class SourceFile:
    """One parsed DICOM file whose frames can be decoded one at a time.

    The header is parsed once with the pixel data left on disk (``defer_size``), recording the offset of the
    pixel data so that uncompressed little-endian frames are read straight into a caller's buffer.
    """

    DEFER_SIZE = 16384

    def __init__(self, path: str, transfer_syntax: str = "", header: InstanceHeader | None = None) -> None:
        self.path = path
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                stamp = FileStamp.of(st)
                if header is not None and header.stamp != stamp:
                    header = _reread(path)
                # Deflated data is inflated in memory, once and within the limit the index applies. A file whose
                # current indexed header names another syntax is not deflated: its meta is not read twice.
                known = (
                    header is not None
                    and header.stamp == stamp
                    and header.transfer_syntax_uid not in ("", tsuids.DeflatedExplicitVRLittleEndian)
                )
                deflated = None if known else read_deflated(fh)
                if deflated is not None:
                    self.ds = deflated[0]
                else:
                    # A dataset without preamble and file meta is read as the header reader read it, and only
                    # when the header reader accepted this very file (unchanged since) as DICOM.
                    accepted = header is not None and header.stamp == stamp
                    self.ds = pydicom.dcmread(fh, defer_size=self.DEFER_SIZE, force=accepted)
        except InflateLimitError as exc:
            raise DecodeError(str(exc)) from None
        except DecodeError:
            raise
        except FileNotFoundError:
            raise DecodeError("the file has disappeared") from None
        except (OSError, EOFError) as exc:
            raise DecodeError(f"cannot be read ({exc})") from None
        except Exception as exc:  # pydicom raises many types for damaged headers
            raise DecodeError(f"damaged header ({type(exc).__name__}: {exc})") from None
        self.file_size = st.st_size
        ds = self.ds
        # The indexed header saves converting the same values again, as long as the file is the one indexed.
        fresh = header is not None and header.stamp == stamp
        self.header = header if fresh else None
        if header is not None and fresh:
            self.transfer_syntax = header.transfer_syntax_uid or str(transfer_syntax)
            self.rows, self.columns = header.rows, header.columns
            self.samples = header.samples_per_pixel
            self.bits_allocated = header.bits_allocated
            self.signed = header.pixel_representation == 1
            self.photometric = header.photometric_interpretation or "MONOCHROME2"
            self.n_frames = header.number_of_frames
        else:
            meta = getattr(ds, "file_meta", None)
            ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
            self.transfer_syntax = ts or str(transfer_syntax) or transfer_syntax_of(ds)
            self.rows = int(ds.get("Rows", 0) or 0)
            self.columns = int(ds.get("Columns", 0) or 0)
            self.samples = int(ds.get("SamplesPerPixel", 1) or 1)
            self.bits_allocated = int(ds.get("BitsAllocated", 0) or 0)
            self.signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
            self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
            self.n_frames = int(_num(ds.get("NumberOfFrames"), 1)) or 1
        if self.transfer_syntax and "TransferSyntaxUID" not in (getattr(ds, "file_meta", None) or ()):
            # A dataset without file meta (no preamble either): pydicom's decoders need the syntax it was read in.
            ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = self.transfer_syntax
        stored = ds[_BITS_STORED].value if _BITS_STORED in ds else None
        self.bits_stored = int(stored) if stored else self.bits_allocated
        self.planar = int(ds.get("PlanarConfiguration", 0) or 0) if self.samples > 1 else 0
        self._shared = _first(ds.get("SharedFunctionalGroupsSequence")) if _SHARED_GROUPS in ds else None
        self._per_frame = ds.get("PerFrameFunctionalGroupsSequence") if _PER_FRAME_GROUPS in ds else None
        self._modality: dict[int, ModalityParams] = {}
        self.pixel_offset: int | None = None
        self.pixel_length: int | None = None
        self._pixel_bytes: bytes | None = None  # small pixel data pydicom already read
        self.minimal = False  # True for :meth:`from_header`: the dataset is not the file's whole header
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in ds else None
        if isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF:
            self.pixel_offset = raw.value_tell
            self.pixel_length = raw.length
            if isinstance(raw.value, bytes):
                self._pixel_bytes = raw.value

    @classmethod
    def from_header(
        cls, header: InstanceHeader, pixel_data: bytes, bits_stored: int, has_rescale: bool, rescale_type: str
    ) -> SourceFile:
        """A single-frame greyscale file of a compressed syntax from its current indexed header and its
        encapsulated *Pixel Data* (items up to the sequence delimiter), without parsing the file: the dataset
        holds only what the decoders and :func:`gdcm_unsafe_description` read (see
        :func:`viewer.dicom.native_scan.compressed_source`)."""
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = header.transfer_syntax_uid
        ds.Rows, ds.Columns = header.rows, header.columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = header.photometric_interpretation
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = header.bits_allocated, bits_stored, bits_stored - 1
        ds.PixelRepresentation = header.pixel_representation
        if has_rescale:
            ds.RescaleSlope, ds.RescaleIntercept = header.rescale_slope, header.rescale_intercept
            if rescale_type:
                ds.RescaleType = rescale_type
        ds.PixelData = pixel_data
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        self = cls.__new__(cls)
        self.path, self.ds, self.file_size, self.header = header.path, ds, header.size, header
        self.transfer_syntax = header.transfer_syntax_uid
        self.rows, self.columns, self.samples = header.rows, header.columns, 1
        self.bits_allocated, self.bits_stored = header.bits_allocated, bits_stored
        self.signed = header.pixel_representation == 1
        self.photometric = header.photometric_interpretation
        self.n_frames, self.planar = 1, 0
        self._shared = self._per_frame = None
        self._modality = {}
        self.pixel_offset = self.pixel_length = None
        self._pixel_bytes = None
        self.minimal = True
        return self

    # -- per-frame attributes ---------------------------------------------------------------------------------

    def _groups(self, frame: int) -> list[Dataset]:
        groups = []
        if self._per_frame is not None and frame < len(self._per_frame):
            groups.append(self._per_frame[frame])
        if self._shared is not None:
            groups.append(self._shared)
        return groups

    def modality_params(self, frame: int = 0) -> ModalityParams:
        """Rescale or Modality LUT of a frame: per-frame functional group, shared group, then the top level."""
        found = self._modality.get(frame)
        if found is None:
            found = self._modality[frame] = self._find_modality(frame)
        return found

    def _find_modality(self, frame: int) -> ModalityParams:
        for group in self._groups(frame):
            item = _first(group.get("PixelValueTransformationSequence"))
            if item is not None and "RescaleSlope" in item:
                return ModalityParams(
                    _num(item.get("RescaleSlope"), 1.0),
                    _num(item.get("RescaleIntercept"), 0.0),
                    None,
                    str(item.get("RescaleType", "") or "").upper(),
                    True,
                )
        ds = self.ds
        if _MODALITY_LUT in ds:
            lut_item = _first(ds.get("ModalityLUTSequence"))
            if lut_item is not None and "LUTData" in lut_item:
                return ModalityParams(
                    lut=lut_from_item(lut_item),
                    rescale_type=str(lut_item.get("ModalityLUTType", "") or "").upper(),
                    has_rescale=True,
                )
        if _RESCALE_SLOPE in ds or _RESCALE_INTERCEPT in ds:
            h = self.header
            if h is not None and h.rescale_slope is not None and h.rescale_intercept is not None:
                slope, intercept = h.rescale_slope, h.rescale_intercept
            else:
                slope, intercept = _num(ds.get("RescaleSlope"), 1.0), _num(ds.get("RescaleIntercept"), 0.0)
            rescale_type = str(ds[_RESCALE_TYPE].value or "").upper() if _RESCALE_TYPE in ds else ""
            return ModalityParams(slope, intercept, None, rescale_type, True)
        if _DOSE_GRID_SCALING in ds:  # RT Dose: stored values × DoseGridScaling = dose in DoseUnits
            units = str(ds.get("DoseUnits", "") or "").upper()
            return ModalityParams(_num(ds.get("DoseGridScaling"), 1.0), 0.0, None, units, True)
        return ModalityParams()

    def voi(self, frame: int = 0) -> tuple[float, float] | None:
        """The first VOI window of a frame (functional groups, then top level, then a VOI LUT's range)."""
        for group in self._groups(frame):
            item = _first(group.get("FrameVOILUTSequence"))
            if item is not None:
                center, width = _num(item.get("WindowCenter"), np.nan), _num(item.get("WindowWidth"), np.nan)
                if np.isfinite(center) and np.isfinite(width) and width > 0:
                    return center, width
        center, width = _num(self.ds.get("WindowCenter"), np.nan), _num(self.ds.get("WindowWidth"), np.nan)
        if np.isfinite(center) and np.isfinite(width) and width > 0:
            return center, width
        lut_item = _first(self.ds.get("VOILUTSequence"))
        if lut_item is not None and "LUTDescriptor" in lut_item and "LUTData" in lut_item:
            return window_from_lut(lut_from_item(lut_item))
        return None

    # -- decoding ---------------------------------------------------------------------------------------------

    @property
    def is_colour(self) -> bool:
        """RGB-like (three samples per pixel) or PALETTE COLOR."""
        return self.samples == 3 or self.photometric == "PALETTE COLOR"

    @property
    def frame_bytes(self) -> int:
        """Bytes of one uncompressed frame."""
        return self.rows * self.columns * self.samples * self.bits_allocated // 8

    @property
    def stored_dtype(self) -> np.dtype:
        """Little-endian numpy type of the stored values (signed per PixelRepresentation)."""
        kind = "i" if self.signed else "u"
        return np.dtype(f"<{kind}{self.bits_allocated // 8}")

    @property
    def direct(self) -> bool:
        """True when a frame can be read straight from disk (uncompressed little endian, whole bytes)."""
        return (
            self.transfer_syntax in NATIVE_DIRECT
            and self.pixel_offset is not None
            and self.samples == 1
            and self.bits_allocated in (8, 16, 32)
            and self.photometric in ("MONOCHROME1", "MONOCHROME2")
        )

    def read_direct(self, frame: int, out: np.ndarray) -> np.ndarray:
        """Read one uncompressed frame's stored values into ``out`` (rows × columns, :attr:`stored_dtype`)."""
        assert self.pixel_offset is not None and self.pixel_length is not None
        size = self.frame_bytes
        start = self.pixel_offset + frame * size
        if start + size > self.file_size or (
            self._pixel_bytes is not None and len(self._pixel_bytes) < (frame + 1) * size
        ):
            raise DecodeError("truncated: the file ends inside its pixel data")
        if (frame + 1) * size > self.pixel_length:
            raise DecodeError(f"pixel data holds fewer than {frame + 1} frame(s)")
        if self._pixel_bytes is not None:
            memoryview(out).cast("B")[:] = self._pixel_bytes[frame * size : (frame + 1) * size]
        else:
            with open(self.path, "rb", buffering=0) as fh:
                fh.seek(start)
                got = fh.readinto(memoryview(out).cast("B"))
            if got != size:
                raise DecodeError("truncated: the file ends inside its pixel data")
        return mask_unused_bits(out, self.bits_stored, self.bits_allocated)

    def decode(self, frame: int, plugins: Sequence[str]) -> tuple[np.ndarray, str]:
        """Decode one frame with the first decoder in ``plugins`` that succeeds.

        ``plugins`` holds pydicom ``decoding_plugin`` names ("" lets pydicom choose) and :data:`GDCM_READER`,
        GDCM's whole-file reader. Returns the array (stored values for greyscale, RGB or palette indices for
        colour) and the decoder that produced it; raises :class:`DecodeError` naming each decoder's failure.
        """
        from pydicom.pixels import pixel_array

        if self.transfer_syntax in J2K_CHECKED:
            self._check_codestream(frame)
        errors: list[str] = []
        redact = (self.path, os.path.basename(self.path))
        for plugin in plugins or ("",):
            if plugin == GDCM_READER and self.minimal:
                # GDCM's reader parses the file itself: only a full header may be checked for what it asserts on.
                errors.append(f"{GDCM_READER}: not tried without the file's full header")
                continue
            said = Captured()
            try:
                if plugin in ("gdcm", GDCM_READER, GDCM_CODEC):
                    self._check_safe_for_gdcm(frame)
                # What a native codec prints goes to the debug log (and the reason below), not to stderr.
                with native_stderr_captured(plugin or "pydicom", redact) as said:
                    if plugin == GDCM_READER:
                        return self._gdcm_reader(frame), plugin
                    if plugin == GDCM_CODEC:
                        return self._gdcm_codec(frame), plugin
                    return pixel_array(self.ds, index=frame, decoding_plugin=plugin), plugin or "pydicom"
            except (KeyboardInterrupt, SystemExit):
                raise
            # Each decoder fails in its own way; a Rust one (pylibjpeg-rle) panics on a corrupt stream with
            # pyo3's PanicException, which derives from BaseException.
            except BaseException as exc:
                printed = f" (it printed: {said.text})" if said.text else ""
                errors.append(f"{plugin or 'pydicom'}: {_short(exc)}{printed}")
        raise DecodeError("cannot decode the pixel data (" + "; ".join(errors) + ")")

    def _check_codestream(self, frame: int) -> None:
        """Raise :class:`DecodeError` when a JPEG 2000 frame's markers are inconsistent: OpenJPEG would decode
        many such frames without an error, into a wrong image (:mod:`viewer.dicom.j2k_check`)."""
        try:
            stream = get_frame(self.ds.PixelData, frame, number_of_frames=max(1, self.n_frames))
        except Exception as exc:  # malformed fragments or offset table
            raise DecodeError(f"unreadable compressed frame ({_short(exc)})") from None
        problem = codestream_problem(stream, self.rows, self.columns, self.samples, self.bits_allocated)
        if problem:
            raise DecodeError(f"cannot decode the pixel data: damaged JPEG 2000 codestream ({problem})")

    def _check_safe_for_gdcm(self, frame: int) -> None:
        """Raise :class:`DecodeError` unless GDCM (pydicom's plugin or its own reader) may see this frame.

        GDCM throws C++ exceptions that terminate the whole process ("terminate called after throwing
        gdcm::Exception") on values it asserts against, and its own parser allocates gigabytes for a damaged
        element length. Each case checked was found by ``tests/test_fuzz.py``: SamplesPerPixel 0, BitsAllocated 64,
        PlanarConfiguration 5, RescaleSlope 0, Rows that disagree with the JPEG-LS codestream, Pixel Data
        re-labelled with a text VR.
        """
        problem = gdcm_unsafe_description(self.ds)
        if not problem and self.transfer_syntax in JPEG_FAMILY:
            try:
                data = self.ds.PixelData
                n_frames = max(1, self.n_frames)
                stream = get_frame(data, frame, number_of_frames=n_frames)[:_SOF_SEARCH]
            except Exception as exc:  # malformed fragments or offset table
                raise DecodeError(f"unreadable compressed frame ({_short(exc)})") from None
            problem = jpeg_header_mismatch(stream, self.rows, self.columns, self.samples, self.bits_allocated)
        if problem:
            raise DecodeError(f"not given to GDCM: {problem}")

    def _gdcm_codec(self, frame: int) -> np.ndarray:
        """One greyscale JPEG frame through GDCM's codec on its bytes (:mod:`viewer.dicom.gdcm_codec`)."""
        if self.samples != 1:
            raise DecodeError("GDCM's codec path takes greyscale frames only")
        stream = get_frame(self.ds.PixelData, frame, number_of_frames=max(1, self.n_frames))
        found = jpeg_frame_header(stream[:_SOF_SEARCH])
        if found is None:
            raise DecodeError("no JPEG frame header in the compressed frame")
        arr = gdcm_codec.decode_jpeg_frame(
            stream,
            self.transfer_syntax,
            self.rows,
            self.columns,
            self.bits_allocated,
            found[0],
            self.signed,
            self.photometric,
        )
        # As GDCM's overlay clean-up does for pydicom's plugin: only *Bits Stored* bits count (PS3.5 8.1.1).
        return mask_unused_bits(arr, self.bits_stored, self.bits_allocated)

    def _gdcm_reader(self, frame: int) -> np.ndarray:
        """Whole-file decode with GDCM's ImageReader (as SimpleITK does): handles 12-bit JPEG Extended."""
        import gdcm

        self._check_safe_for_gdcm(frame)
        with _GDCM_LOCK:
            gdcm.Trace.WarningOff()
            gdcm.Trace.ErrorOff()
            reader = gdcm.ImageReader()
            reader.SetFileName(self.path)
            if not reader.Read():
                raise DecodeError("GDCM cannot read the file")
            image = reader.GetImage()
            fmt = image.GetPixelFormat()
            dtype = {
                "UINT8": np.uint8,
                "INT8": np.int8,
                "UINT16": np.uint16,
                "INT16": np.int16,
                "UINT32": np.uint32,
                "INT32": np.int32,
            }.get(fmt.GetScalarTypeAsString())
            if dtype is None:
                raise DecodeError(f"GDCM pixel format {fmt.GetScalarTypeAsString()} not supported")
            buf = image.GetBuffer()
            if buf is None:
                raise DecodeError("GDCM returned no pixels")
            data = np.frombuffer(buf.encode("utf-8", "surrogateescape"), dtype=dtype)
        spp = fmt.GetSamplesPerPixel()
        per_frame = self.rows * self.columns * spp
        if data.size < (frame + 1) * per_frame:
            raise DecodeError("GDCM returned fewer pixels than the header announces")
        arr = data[frame * per_frame : (frame + 1) * per_frame]
        shape = (self.rows, self.columns, spp) if spp > 1 else (self.rows, self.columns)
        arr = arr.reshape(shape).copy()
        if spp == 1 and arr.dtype.kind in "iu":
            # GDCM returns a JPEG 2000 codestream's own signedness (pydicom's j2k sign correction does this too).
            if self.signed and arr.dtype.kind == "u":
                arr = arr.view(arr.dtype.str.replace("u", "i"))
            mask_unused_bits(arr, self.bits_stored, arr.dtype.itemsize * 8)
        return arr

    # -- into the volume --------------------------------------------------------------------------------------

    def grey_into(
        self,
        frame: int,
        out: np.ndarray,
        plugins: Sequence[str],
        scratch: np.ndarray | None = None,
        accept: Callable[[ModalityParams, np.ndarray], None] | None = None,
    ) -> str:
        """Decode one greyscale frame and write its modality values into ``out`` (float32 or an integer type).

        ``scratch`` (rows × columns, :attr:`stored_dtype`) is reused between frames on the direct path, so the
        only allocation per slice is none at all. ``accept(params, stored)`` sees the frame's transform and
        stored values before they are written and raises to refuse them (an integer ``out`` they do not fit).
        Returns the decoder used.
        """
        if out.shape != (self.rows, self.columns):
            raise DecodeError(f"image is {self.rows}×{self.columns}, the stack's slices are {out.shape}")
        if self.direct:
            if scratch is None or scratch.dtype != self.stored_dtype or scratch.shape != out.shape:
                scratch = np.empty(out.shape, dtype=self.stored_dtype)
            stored = self.read_direct(frame, scratch)
            used = "direct"
        else:
            stored, used = self.decode(frame, plugins)
            if stored.ndim != 2:
                raise DecodeError(f"expected a greyscale frame, decoder gave shape {stored.shape}")
        params = self.modality_params(frame)
        if accept is not None:
            accept(params, stored)
        apply_modality_lut(stored, params.slope, params.intercept, params.lut, out=out)
        return used

    def colour_into(self, frame: int, out: np.ndarray, plugins: Sequence[str]) -> str:
        """Decode one colour frame (RGB, YBR or palette) as 8-bit RGB into ``out`` (rows × columns × 3)."""
        arr, used = self.decode(frame, plugins)
        if self.photometric == "PALETTE COLOR":
            try:
                arr = palette_to_rgb8(arr, self.ds)
            except Exception as exc:  # pydicom raises ValueError, KeyError, ... for missing or bad palettes
                raise DecodeError(f"cannot apply the palette ({_short(exc)})") from None
        elif arr.ndim == 2:  # a greyscale frame inside a colour stack
            arr = np.repeat(to_rgb8(arr, self.bits_stored)[..., None], 3, axis=2)
        else:
            arr = to_rgb8(arr, self.bits_stored)
        if arr.shape != out.shape:
            raise DecodeError(f"decoded colour frame has shape {arr.shape}, expected {out.shape}")
        out[...] = arr
        return used


JPEG_FAMILY = frozenset(
    {
        tsuids.JPEGBaseline8Bit,
        tsuids.JPEGExtended12Bit,
        tsuids.JPEGLossless,
        tsuids.JPEGLosslessSV1,
        tsuids.JPEGLSLossless,
        tsuids.JPEGLSNearLossless,
    }
)
_SOF_SEARCH = 1 << 16  # the frame header follows the tables, well inside the first 64 KiB
_PIXEL_VRS = frozenset({"OB", "OW", "OB or OW", "UN"})


def jpeg_frame_header(stream: bytes) -> tuple[int, int, int, int] | None:
    """``(precision, rows, columns, components)`` from a JPEG or JPEG-LS start-of-frame marker, or ``None``."""
    if stream[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(stream):
        if stream[i] != 0xFF:
            return None
        marker = stream[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:  # SOFn, SOF55
            if i + 10 > len(stream):
                return None
            rows = int.from_bytes(stream[i + 5 : i + 7], "big")
            columns = int.from_bytes(stream[i + 7 : i + 9], "big")
            return stream[i + 4], rows, columns, stream[i + 9]
        if marker == 0xDA:  # a scan before any frame header
            return None
        i += 2 + int.from_bytes(stream[i + 2 : i + 4], "big")
    return None


def jpeg_header_mismatch(stream: bytes, rows: int, columns: int, samples: int, bits_allocated: int) -> str:
    """How a JPEG codestream's frame header disagrees with the DICOM header ("" when it agrees)."""
    found = jpeg_frame_header(stream)
    if found is None:
        return "no JPEG frame header in the compressed frame"
    precision, jpeg_rows, jpeg_columns, components = found
    if (jpeg_rows, jpeg_columns) != (rows, columns):
        return f"the JPEG frame is {jpeg_rows}×{jpeg_columns}, the header says {rows}×{columns}"
    if components != samples:
        return f"the JPEG frame has {components} components, the header {samples} samples per pixel"
    if precision > max(bits_allocated, 8):
        return f"the JPEG frame has {precision}-bit samples, the header allocates {bits_allocated} bits"
    return ""


def gdcm_unsafe_description(ds: Dataset) -> str:
    """Why GDCM must not be handed this dataset's pixels ("" when it may): values it asserts on."""
    elem = ds.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in ds else None
    if elem is None or elem.VR not in _PIXEL_VRS:
        return f"Pixel Data has VR {getattr(elem, 'VR', None)}" if elem is not None else "no Pixel Data"
    checks = (
        ("SamplesPerPixel", (1, 3)),
        ("BitsAllocated", (8, 16, 32)),  # GDCM only decodes compressed syntaxes here; its codecs assert these
        ("PixelRepresentation", (0, 1)),
        ("PlanarConfiguration", (0, 1)),
    )
    for keyword, allowed in checks:
        try:
            value = int(ds.get(keyword, allowed[0]))
        except Exception:  # not a number, several values, or bytes pydicom cannot convert
            return f"{keyword} is unreadable"
        if value not in allowed:
            return f"{keyword} is {value}"
    try:
        bits_stored = int(ds.get("BitsStored", 1))
        bits_allocated = int(ds.get("BitsAllocated", 16))
    except Exception:
        return "BitsStored is unreadable"
    if not 1 <= bits_stored <= bits_allocated:
        return f"BitsStored is {bits_stored} with BitsAllocated {bits_allocated}"
    for keyword in ("RescaleSlope", "RescaleIntercept"):  # GDCM's reader asserts a finite, non-zero slope
        if keyword in ds:
            try:
                value = float(ds.get(keyword))
            except Exception:
                return f"{keyword} is unreadable"
            if not np.isfinite(value) or (keyword == "RescaleSlope" and value == 0):
                return f"{keyword} is {value}"
    return ""


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    detail = text[-1].strip() if text else ""
    return f"{type(exc).__name__}: {detail}"[:200]
