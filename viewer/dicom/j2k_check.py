"""A structural check of a JPEG 2000 codestream (ISO/IEC 15444-1 Annex A), run before it is decoded.

OpenJPEG decodes many damaged codestreams without an error, into an image that is wrong: a bit flipped in a
marker segment or a tile-part length shifts or drops whole tiles and resolution levels. This module walks the
markers, which costs a fraction of a decode (no entropy decoding, one ``bytes.find`` pass over the tile data),
and names the first inconsistency:

- SOC then SIZ, with a length that matches its component count, an image of the DICOM header's rows, columns
  and samples per pixel, sane tile sizes and offsets;
- every main and tile-part header marker one that may stand there, with a length inside the stream; COD and
  QCD present, with lengths that agree with their own fields and with each other (decomposition levels);
- tile-parts (SOT) of length 10, a tile index inside the tile grid, tile-part numbers in order, a Psot that
  ends exactly where the next SOT or the EOC starts, and every tile present (TNsot, the number of tile-parts a
  tile announces, is not checked: GDCM has written one fewer than it wrote, and decoders accept that);
- no marker inside the packet data (after an 0xFF byte the coder stuffs a zero bit, so 0xFF followed by 0x90 or
  more never occurs there, except SOP and EPH where COD enables them);
- EOC at the end (then at most a few bytes of padding: DICOM pads fragments to an even length, with 0x00 or, as
  some writers do, 0xFF).

The quantisation fields must agree with the wavelet (the reversible one without quantisation, the irreversible
one with it) and, without quantisation, give exponents near the component precision (:func:`_quantisation`).

What it cannot see: a flip inside the entropy-coded data of a code-block (99.5 % of a frame's bytes, median)
keeps every marker and length intact and decodes to a locally wrong image; nothing short of a redundant copy
detects that, and GDCM decodes with the same OpenJPEG. Measured on the JPEG 2000 frames at hand (pydicom's and
pydicom-data's files, lossless JPEG 2000 head phantoms; rates in ``tests/dicom/test_j2k_check.py``): no intact
frame refused; of single flips in the structure that damage the image, 89 % refused (70 % by OpenJPEG itself,
the rest by this check); of uniformly random single flips that OpenJPEG decodes to a wrong image, 0.6 %.
"""

from __future__ import annotations

from dataclasses import dataclass

_SOC, _SIZ, _COD, _QCD, _SOT, _SOD, _EOC = 0x4F, 0x51, 0x52, 0x5C, 0x90, 0x93, 0xD9
_SOP, _EPH, _QCC = 0x91, 0x92, 0x5D
# Marker segments (with a length) allowed in the main header: CAP, COD, COC, TLM, PLM, CPF, QCD, QCC, RGN, POC,
# PPM, CRG, COM, and the Part 2 ones (DCO, VMS, DFS, ADS, ATK, CBD, MCT, MCC, MCO, NLT).
_MAIN = frozenset(
    {0x50, 0x52, 0x53, 0x55, 0x57, 0x59, 0x5C, 0x5D, 0x5E, 0x5F, 0x60, 0x63, 0x64}
    | {0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79}
)
# In a tile-part header: COD, COC, QCD, QCC, RGN, POC, PPT, PLT, COM, and the Part 2 ones.
_TILE = frozenset({0x52, 0x53, 0x5C, 0x5D, 0x5E, 0x5F, 0x61, 0x58, 0x64} | {0x70, 0x74, 0x75, 0x77, 0x78})
#: The transfer syntaxes whose frames are checked: JPEG 2000 Part 1 (HTJ2K's Part 15 codestreams differ in COD).
J2K_CHECKED = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
MAX_DECOMPOSITIONS = 32
EXPONENT_MARGIN = 5
"""How far above the component precision a reversible stream's subband exponent may lie (see
:func:`_quantisation`): gain (2) and colour transform (1) and one more than the most seen, 4."""


def _u16(b: bytes, i: int) -> int:
    return int.from_bytes(b[i : i + 2], "big")


def _u32(b: bytes, i: int) -> int:
    return int.from_bytes(b[i : i + 4], "big")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def codestream_of(data: bytes) -> bytes | None:
    """The codestream of a frame: the frame itself, or the contiguous codestream box of a JP2 file (which some
    writers put in DICOM); None for a JP2 file without one."""
    if not data.startswith(_JP2_SIGNATURE):
        return data
    i = 0
    while i + 8 <= len(data):
        length, kind = _u32(data, i), data[i + 4 : i + 8]
        header = 8
        if length == 1 and i + 16 <= len(data):
            length, header = int.from_bytes(data[i + 8 : i + 16], "big"), 16
        elif length == 0:
            length = len(data) - i
        if kind == b"jp2c":
            return data[i + header : i + length]
        if length < header:
            return None
        i += length
    return None


class _Problem(Exception):
    pass


@dataclass(frozen=True)
class _Coding:
    """What a COD segment sets: decomposition levels, Scod (whether SOP/EPH markers may stand in packets), the
    wavelet (reversible 5/3 or irreversible 9/7); and the components' precisions in bits, from SIZ."""

    levels: int
    scod: int
    reversible: bool
    precisions: tuple[int, ...]


def _cod(b: bytes, i: int, length: int, precisions: tuple[int, ...]) -> _Coding:
    """The COD segment whose marker is at ``i``, its fields checked."""
    if length < 12:
        raise _Problem(f"COD segment of length {length}")
    scod, order, layers, mct = b[i + 4], b[i + 5], _u16(b, i + 6), b[i + 8]
    levels, xcb, ycb, style, transform = b[i + 9], b[i + 10], b[i + 11], b[i + 12], b[i + 13]
    if scod & 0xF8 or order > 4 or layers == 0 or mct > 1 or transform > 1:
        raise _Problem("COD coding style out of range")
    if levels > MAX_DECOMPOSITIONS or xcb > 8 or ycb > 8 or xcb + ycb > 8 or style & 0xC0:
        raise _Problem("COD code-block parameters out of range")
    expected = 12 + (levels + 1 if scod & 1 else 0)
    if length != expected:
        raise _Problem(f"COD segment of length {length}, its fields need {expected}")
    return _Coding(levels, scod, transform == 1, precisions)


def _quantisation(b: bytes, start: int, end: int, coding: _Coding | None, what: str) -> None:
    """Check the Sqcd and SPqcd fields in ``b[start:end]`` of a QCD or QCC segment against the COD in force.

    The reversible wavelet goes with no quantisation (style 0), the irreversible one with scalar quantisation
    (styles 1 and 2: ISO/IEC 15444-1 A.6.4, E.1). No quantisation gives one byte per subband whose low 3 bits
    are reserved (0) and whose high 5 are the subband's exponent. Encoders write the component precision plus
    the subband's gain in bits (0 to 2) plus a bit or two for a colour transform, or near that (pydicom-data's
    693_J2KR.dcm deviates by one): an exponent outside precision … precision + :data:`EXPONENT_MARGIN` is
    refused. Every intact frame at hand lies within [precision, precision + 4].
    """
    if end - start < 1:
        raise _Problem(f"{what} segment without a quantisation style")
    style = b[start] & 0x1F
    values = b[start + 1 : end]
    if style == 0:
        count = len(values)
    elif style == 1:  # derived: one value for the LL subband
        if len(values) != 2:
            raise _Problem(f"{what} segment of {len(values)} bytes for derived quantisation")
        return
    elif style == 2:  # two bytes per subband
        if len(values) % 2:
            raise _Problem(f"{what} segment of an odd length")
        count = len(values) // 2
    else:
        raise _Problem(f"{what} quantisation style {style}")
    if count == 0 or (count - 1) % 3:
        raise _Problem(f"{what} segment quantises no whole number of levels")
    if coding is not None and (count - 1) // 3 != coding.levels:
        raise _Problem(f"{what} quantises {(count - 1) // 3} levels, COD decomposes {coding.levels}")
    if coding is not None and coding.reversible != (style == 0):
        wavelet = "reversible" if coding.reversible else "irreversible"
        raise _Problem(f"{what} quantisation style {style} with the {wavelet} wavelet")
    if style == 0 and any(v & 7 for v in values):
        raise _Problem(f"{what} exponent with reserved bits set")
    if style == 0 and coding is not None:
        lowest, highest = min(coding.precisions), max(coding.precisions) + EXPONENT_MARGIN
        if not all(lowest <= v >> 3 <= highest for v in values):
            raise _Problem(f"{what} exponent outside {lowest}–{highest} for {lowest}-bit samples")


def _segments(
    b: bytes, i: int, end: int, allowed: frozenset[int], where: str
) -> tuple[int, list[tuple[int, int]]]:
    """Walk marker segments from ``i`` until SOT (main header) or SOD (tile-part header); returns where that
    marker stands and each segment met as (marker, position)."""
    found: list[tuple[int, int]] = []
    stop = _SOT if where == "main" else _SOD
    while True:
        if i + 2 > end:
            raise _Problem(f"the {where} header runs past its end")
        if b[i] != 0xFF:
            raise _Problem(f"no marker where the {where} header continues")
        marker = b[i + 1]
        if marker == stop:
            return i, found
        if marker not in allowed:
            raise _Problem(f"marker 0xFF{marker:02X} in the {where} header")
        length = _u16(b, i + 2)
        if length < 2 or i + 2 + length > end:
            raise _Problem(f"marker 0xFF{marker:02X} of length {length} runs past the {where} header")
        found.append((marker, i))
        i += 2 + length


def _check_coding(
    b: bytes, found: list[tuple[int, int]], precisions: tuple[int, ...], coding: _Coding | None
) -> _Coding | None:
    """Check the COD, QCD and QCC segments of one header against each other (``coding``: what the main header
    set); returns the coding in force after it."""
    for marker, i in found:
        if marker == _COD:
            coding = _cod(b, i, _u16(b, i + 2), precisions)
    for marker, i in found:
        end = i + 2 + _u16(b, i + 2)
        if marker == _QCD:
            _quantisation(b, i + 4, end, coding, "QCD")
        elif marker == _QCC:
            index_bytes = 1 if len(precisions) < 257 else 2
            if int.from_bytes(b[i + 4 : i + 4 + index_bytes], "big") >= len(precisions):
                raise _Problem("QCC for a component the image does not have")
            _quantisation(b, i + 4 + index_bytes, end, coding, "QCC")
    return coding


def _check_packets(b: bytes, start: int, end: int, scod: int) -> None:
    """No marker inside the packet data of one tile-part, save SOP/EPH where COD enables them."""
    i = b.find(b"\xff", start, end)
    while i != -1:
        nxt = b[i + 1] if i + 1 < end else 0
        if nxt >= 0x90:
            if nxt == _SOP and scod & 2 and i + 6 <= end and _u16(b, i + 2) == 4:
                i = b.find(b"\xff", i + 6, end)
                continue
            if nxt == _EPH and scod & 4:
                i = b.find(b"\xff", i + 2, end)
                continue
            raise _Problem(f"marker 0xFF{nxt:02X} inside the packet data")
        i = b.find(b"\xff", i + 1, end)


def codestream_problem(data: bytes, rows: int, columns: int, samples: int, bits_allocated: int = 0) -> str:
    """What is inconsistent in a JPEG 2000 frame ("" when nothing is), given the DICOM header's image size
    (and its BitsAllocated, which no component's precision may pass; 0: not checked)."""
    b = codestream_of(bytes(data))
    if b is None:
        return "a JP2 file without a codestream"
    try:
        _check(b, rows, columns, samples, bits_allocated)
    except _Problem as exc:
        return str(exc)
    return ""


def _check_siz(
    b: bytes, rows: int, columns: int, samples: int, bits_allocated: int
) -> tuple[int, tuple[int, ...], int]:
    """Check SIZ; returns its length, the precision of each component and the number of tiles."""
    if len(b) < 42:
        raise _Problem("the codestream ends inside SIZ")
    lsiz = _u16(b, 4)
    xsiz, ysiz, xo, yo = _u32(b, 8), _u32(b, 12), _u32(b, 16), _u32(b, 20)
    xt, yt, xto, yto = _u32(b, 24), _u32(b, 28), _u32(b, 32), _u32(b, 36)
    csiz = _u16(b, 40)
    if csiz == 0 or lsiz != 38 + 3 * csiz or 4 + lsiz > len(b):
        raise _Problem(f"SIZ of length {lsiz} for {csiz} components")
    if (
        xsiz <= xo
        or ysiz <= yo
        or xt == 0
        or yt == 0
        or xto > xo
        or yto > yo
        or xto + xt <= xo
        or yto + yt <= yo
    ):
        raise _Problem("SIZ image or tile grid out of range")
    if (xsiz - xo, ysiz - yo, csiz) != (columns, rows, samples):
        raise _Problem(
            f"the codestream holds {xsiz - xo}×{ysiz - yo}×{csiz}, the header says {columns}×{rows}×{samples}"
        )
    for c in range(csiz):
        ssiz, xr, yr = b[42 + 3 * c], b[43 + 3 * c], b[44 + 3 * c]
        precision = (ssiz & 0x7F) + 1
        if precision > 38 or (bits_allocated and precision > bits_allocated):
            raise _Problem(
                f"component {c} has {precision}-bit samples, the header allocates {bits_allocated}"
            )
        if (xr, yr) != (1, 1):  # DICOM's JPEG 2000 images hold every component at full resolution
            raise _Problem(f"component {c} is subsampled {xr}×{yr}")
    tiles = _ceil_div(xsiz - xto, xt) * _ceil_div(ysiz - yto, yt)
    if tiles > 65535:
        raise _Problem(f"{tiles} tiles")
    return lsiz, tuple((b[42 + 3 * c] & 0x7F) + 1 for c in range(csiz)), tiles


def _check(b: bytes, rows: int, columns: int, samples: int, bits_allocated: int) -> None:
    if len(b) < 4 or b[0] != 0xFF or b[1] != _SOC or b[2] != 0xFF or b[3] != _SIZ:
        raise _Problem("the codestream does not start with SOC and SIZ")
    lsiz, precisions, tiles = _check_siz(b, rows, columns, samples, bits_allocated)
    i, found = _segments(b, 4 + lsiz, len(b), _MAIN, "main")
    if not {_COD, _QCD} <= {marker for marker, _ in found}:
        raise _Problem("no COD or no QCD in the main header")
    coding = _check_coding(b, found, precisions, None)
    assert coding is not None
    eoc = _eoc(b)
    parts: dict[int, int] = {}  # tile → tile-parts met
    while i < eoc:
        if b[i] != 0xFF or b[i + 1] != _SOT or i + 12 > eoc:
            raise _Problem("no SOT where a tile-part should start")
        lsot, isot, psot, tpsot = _u16(b, i + 2), _u16(b, i + 4), _u32(b, i + 6), b[i + 10]
        if lsot != 10 or isot >= tiles:
            raise _Problem(f"SOT of length {lsot} for tile {isot} of {tiles}")
        end = eoc if psot == 0 else i + psot
        if end > eoc or psot and psot < 14:
            raise _Problem(f"tile-part length {psot} runs past the codestream")
        if tpsot != parts.get(isot, 0):
            raise _Problem(f"tile-part {tpsot} of tile {isot} out of order")
        parts[isot] = tpsot + 1
        sod, tile_found = _segments(b, i + 12, end, _TILE, "tile-part")
        tile_coding = _check_coding(b, tile_found, precisions, coding)
        _check_packets(b, sod + 2, end, tile_coding.scod if tile_coding else 0)
        i = end
    if len(parts) != tiles:
        raise _Problem(f"{tiles - len(parts)} of {tiles} tiles missing")


def _eoc(b: bytes) -> int:
    """Where EOC stands: the codestream's last two bytes but for padding (0x00, or 0xFF as some writers pad)."""
    end = len(b)
    while end > 2 and b[end - 1] in (0x00, 0xFF) and end > len(b) - 8:
        end -= 1
    if b[end - 2 : end] != b"\xff\xd9":
        raise _Problem("no EOC at the end of the codestream")
    return end - 2
