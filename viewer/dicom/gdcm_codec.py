"""GDCM's JPEG codec called on one greyscale frame's bytes, the output copied straight into a numpy array.

pydicom's ``gdcm`` plugin decodes through ``gdcm.Image.GetBuffer()``, which the Python wrapper returns as a
``str`` (the bytes decoded as UTF-8 with surrogate escapes), turned back into bytes by ``str.encode``: two passes
over the frame in Python's codec machinery (a 512² 16-bit lossless frame: 3.8 ms through the plugin, 2.2 ms
here, ``python -m viewer.bench.decoders``). Here the codec writes its output into a GDCM ``DataElement`` and the
array is copied from that element's buffer with one ``memmove``. It is the same codec (``gdcm::JPEGCodec``) set up
as ``gdcm::Bitmap`` sets it up for ``GetBuffer``, except that it is told the codestream's sample precision
(:func:`decode_jpeg_frame` says why) and the caller masks the bits above *Bits Stored*; the tests compare the
values with the plugin's. Callers check a frame with
:meth:`viewer.dicom.pixels.SourceFile._check_safe_for_gdcm` first, as for any GDCM decode.

JPEG 12-bit (Extended, process 2 & 4), which pydicom's plugin refuses, goes through GDCM's 12-bit codec here.
"""

from __future__ import annotations

import ctypes

import numpy as np

JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # baseline
        "1.2.840.10008.1.2.4.51",  # extended (12-bit)
        "1.2.840.10008.1.2.4.57",  # lossless
        "1.2.840.10008.1.2.4.70",  # lossless, first-order prediction (SV1)
    }
)


_BUILDS = (8, 12, 16)
"""The sample precisions of GDCM's libjpeg builds. Only these are given to the codec: with another (10 or 14-bit
lossless JPEG) it would pick the next larger build and, if that failed, enter the retry that can abort; such
frames go to the next decoder of the list, as before this module."""


class CodecError(Exception):
    """The codec refused the frame or gave something other than the frame the header describes."""


def available() -> bool:
    """Whether GDCM's Python wrapper is installed."""
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return True


def decode_jpeg_frame(
    stream: bytes,
    transfer_syntax: str,
    rows: int,
    columns: int,
    bits_allocated: int,
    precision: int,
    signed: bool,
    photometric: str,
) -> np.ndarray:
    """One greyscale JPEG frame's samples (rows × columns, little-endian ``bits_allocated`` integers), decoded by
    GDCM's codec for ``precision`` (the frame header's sample precision, not *Bits Stored*).

    GDCM picks its 8, 12 or 16-bit libjpeg build from the precision it is given. Given *Bits Stored* (as
    pydicom's plugin does) where the codestream says otherwise (12 against 16 is common), it fails, then retries
    with the codestream's precision, and aborts the process if that retry fails too (a damaged frame); given the
    codestream's own precision (one of :data:`_BUILDS`) it only ever fails with an error. Bits above *Bits Stored*
    are the caller's to mask.

    Raises
    ------
    CodecError
        For a syntax, sample size or photometric interpretation this path does not take, a frame the codec
        cannot decode, or an output of another size than the header's frame.
    """
    import gdcm

    if transfer_syntax not in JPEG_SYNTAXES:
        raise CodecError(f"not a JPEG syntax GDCM's JPEG codec takes: {transfer_syntax}")
    if bits_allocated not in (8, 16) or precision not in _BUILDS or precision > bits_allocated:
        raise CodecError(f"{precision}-bit samples in {bits_allocated} bits")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise CodecError(f"not greyscale: {photometric}")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(stream)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())

    codec = gdcm.JPEGCodec()
    if not codec.CanDecode(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(transfer_syntax))):
        raise CodecError(f"GDCM's JPEG codec does not decode {transfer_syntax}")
    # As gdcm::Bitmap::TryJPEGCodec, in the order SetPixelFormat needs: it creates the 8/12/16-bit codec
    # from the dimensions and photometric interpretation already set.
    codec.SetNumberOfDimensions(2)
    codec.SetDimensions((columns, rows, 1))
    codec.SetPlanarConfiguration(0)
    codec.SetPhotometricInterpretation(
        gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.GetPIType(photometric))
    )
    codec.SetNeedOverlayCleanup(False)
    codec.SetPixelFormat(gdcm.PixelFormat(1, bits_allocated, precision, precision - 1, int(signed)))
    decoded = gdcm.DataElement()
    if not codec.Decode(element, decoded):
        raise CodecError("GDCM's JPEG codec cannot decode the frame")
    value = decoded.GetByteValue()
    if value is None:
        raise CodecError("GDCM's JPEG codec returned no pixels")
    size = int(str(value.GetLength()))
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    out = np.empty((rows, columns), dtype=dtype)
    if size != out.nbytes:
        raise CodecError(f"GDCM's JPEG codec returned {size} bytes for a {out.nbytes}-byte frame")
    pointer = value.GetVoidPointer()
    if pointer is None:
        raise CodecError("GDCM's JPEG codec returned no pixels")
    ctypes.memmove(out.ctypes.data, int(pointer), size)  # ``decoded`` owns the buffer until this returns
    return out
