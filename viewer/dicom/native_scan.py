"""Find an uncompressed file's pixel data without pydicom, for the slices after the first of a stack.

pydicom's parse of a CT header (50–100 elements, each turned into a ``DataElement``) took about 1 ms per file
here, 10 × the time to read a 512² int16 slice from the page cache, so it was most of an uncompressed load
(300 × 512²: 0.3 s of parse against 0.04 s of memcpy floor). The indexed header (:class:`InstanceHeader`) already
holds what the pixels need except three things: where the pixel data starts, *Bits Stored*, and whether a
transform other than the plain rescale applies. :func:`scan_native` walks the top-level elements of the first
block of the file (tag, VR and length only; values skipped, sequences skipped by their lengths or delimiters) to
find those, and gives up (returns None) on anything it does not expect, so the caller parses the file with
pydicom as before. It never decides what a value means on its own: the rescale is the indexed header's.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import numpy as np

from viewer.dicom.file_stamp import FileStamp
from viewer.dicom.headers import LEAVE_TO_PYDICOM, InstanceHeader, NativeLayout
from viewer.dicom.pixels import (
    DECODERS,
    NATIVE_DIRECT,
    DecodeError,
    ModalityParams,
    SourceFile,
    apply_modality_lut,
    mask_unused_bits,
)

NATIVE_OTHER = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflated

ENCAPSULATED = frozenset(ts for ts in DECODERS if ts not in NATIVE_DIRECT and ts not in NATIVE_OTHER)
"""The compressed syntaxes of :data:`viewer.dicom.pixels.DECODERS` (every one encapsulates its frames)."""
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
SCAN_BYTES = 1 << 14
MAX_DEPTH = 16
"""How much of a file's start is scanned: a CT header is a few kB; a larger one goes to pydicom."""

_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_BITS_STORED = 0x00280101
_RESCALE_INTERCEPT, _RESCALE_SLOPE, _RESCALE_TYPE = 0x00281052, 0x00281053, 0x00281054
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
"""The VRs of PS3.5 table 7.1-1 with a 2-byte length; any other two letters are left to pydicom."""
_FIRST_GROUP_WATCHED = 0x0028
"""Every element the scan looks at (Bits Stored, rescale, what it leaves to pydicom, Pixel Data) is in group
0028 or later; the elements before it are only stepped over."""
_IMPLICIT = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")
_EXPLICIT = struct.Struct("<HH2sH")


class _GiveUp(Exception):
    pass


def scan_native(
    path: str, header: InstanceHeader, st: os.stat_result | None = None, encapsulated: bool = False
) -> NativeLayout | None:
    """The pixel data's place in an implicit or explicit VR little-endian file (with ``encapsulated``: in a file
    of a compressed syntax, whose dataset is explicit VR little endian; the layout then runs to the end of the
    file), or None when the file should be parsed by pydicom (another syntax, no preamble, a stale header, an
    element the scan does not expect, the pixel data past :data:`SCAN_BYTES`, or a transform other than the
    indexed rescale)."""
    syntax = header.transfer_syntax_uid
    if (syntax in ENCAPSULATED) != encapsulated or (
        not encapsulated and syntax not in (IMPLICIT_LE, EXPLICIT_LE)
    ):
        return None
    try:
        with open(path, "rb", buffering=0) as fh:
            st = st or os.fstat(fh.fileno())
            if FileStamp.of(st) != header.stamp:
                return None
            head = fh.read(SCAN_BYTES)
    except OSError:
        return None
    try:
        return _scan(head, encapsulated or syntax == EXPLICIT_LE, st.st_size, encapsulated)
    except (_GiveUp, struct.error, IndexError, ValueError):
        return None


def _scan(buf: bytes, explicit: bool, file_size: int, encapsulated: bool = False) -> NativeLayout | None:
    if buf[128:132] != b"DICM":
        return None
    pos = _skip_meta(buf, 132)
    bits_stored: int | None = None
    has_rescale = False
    rescale_type = ""
    end = len(buf)
    while pos + 8 <= end:
        if explicit:  # the common case inline: one unpack per element
            group, element, vr, length = _EXPLICIT.unpack_from(buf, pos)
            if group < _FIRST_GROUP_WATCHED and vr in _SHORT_VRS:
                pos += 8 + length  # most of a header; a value past the block ends the loop (None)
                continue
            if vr in _LONG_VRS:
                length, value_at = _U32.unpack_from(buf, pos + 8)[0], pos + 12
            elif vr in _SHORT_VRS:
                value_at = pos + 8
            else:
                return None  # an unknown VR, or an item tag among the dataset's elements
        else:
            group, element, length = _IMPLICIT.unpack_from(buf, pos)
            vr, value_at = b"", pos + 8
        if group < _FIRST_GROUP_WATCHED:
            # Most of a header: nothing the pixels need, only the element's extent (a sequence is skipped).
            pos = value_at + length
            if pos > end:
                if length != _UNDEFINED:
                    return None  # the value runs past the scanned block: not a header this scan expects
                # a sequence (UN of undefined length holds implicit VR items: PS3.5 6.2.2)
                pos = _skip_undefined(buf, value_at, explicit and vr != b"UN")
            continue
        tag = (group << 16) | element
        if tag in LEAVE_TO_PYDICOM:
            return None
        if tag == _PIXEL_DATA:
            if encapsulated:
                if length != _UNDEFINED or vr != b"OB":
                    return None
                return NativeLayout(value_at, file_size - value_at, bits_stored, has_rescale, rescale_type)
            if length == _UNDEFINED or (explicit and vr not in (b"OB", b"OW")):
                return None  # encapsulated, or a VR pydicom would have to judge
            if value_at + length > file_size:
                return None
            return NativeLayout(value_at, length, bits_stored, has_rescale, rescale_type)
        if tag > _PIXEL_DATA:
            return None
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, value_at, explicit and vr != b"UN")
            continue
        if value_at + length > end:
            return None
        if tag == _BITS_STORED:
            if length != 2:
                return None
            bits_stored = _U16.unpack_from(buf, value_at)[0]
        elif tag in (_RESCALE_SLOPE, _RESCALE_INTERCEPT):
            has_rescale = True
        elif tag == _RESCALE_TYPE:
            rescale_type = buf[value_at : value_at + length].decode("ascii", "replace").strip(" \0").upper()
        pos = value_at + length
    return None


def _skip_meta(buf: bytes, pos: int) -> int:
    """The offset after the file meta group (0002,xxxx), always explicit VR little endian."""
    end = len(buf)
    while pos + 8 <= end:
        group, _, vr, length = _EXPLICIT.unpack_from(buf, pos)
        if group != 0x0002:
            return pos
        if vr in _LONG_VRS:
            length, pos = _U32.unpack_from(buf, pos + 8)[0], pos + 12
        elif vr in _SHORT_VRS:
            pos += 8
        else:
            raise _GiveUp
        if length == _UNDEFINED:
            raise _GiveUp
        pos += length
    raise _GiveUp


def _element(buf: bytes, pos: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """``(tag, vr, length, value offset)`` of the element at ``pos``."""
    group, element = _TAG.unpack_from(buf, pos)
    tag = (group << 16) | element
    if group == 0xFFFE:  # item and delimiters have no VR in either encoding
        return tag, b"", _U32.unpack_from(buf, pos + 4)[0], pos + 8
    if not explicit:
        return tag, b"", _U32.unpack_from(buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        return tag, vr, _U32.unpack_from(buf, pos + 8)[0], pos + 12
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise _GiveUp
    return tag, vr, _U16.unpack_from(buf, pos + 6)[0], pos + 8


def _skip_undefined(buf: bytes, pos: int, explicit: bool, depth: int = 0) -> int:
    """Skip the items of a sequence of undefined length starting at ``pos``; the offset after its delimiter.
    Sequences nested deeper than :data:`MAX_DEPTH` are left to pydicom."""
    if depth > MAX_DEPTH:
        raise _GiveUp
    end = len(buf)
    while pos + 8 <= end:
        tag, _, length, value_at = _element(buf, pos, explicit)
        if tag == _SEQ_END:
            return value_at
        if tag != _ITEM:
            raise _GiveUp
        if length != _UNDEFINED:
            pos = value_at + length
            continue
        pos = _skip_item(buf, value_at, explicit, depth)
    raise _GiveUp


def _skip_item(buf: bytes, pos: int, explicit: bool, depth: int) -> int:
    """Skip the elements of an item of undefined length; the offset after its delimiter."""
    end = len(buf)
    while pos + 8 <= end:
        tag, vr, length, value_at = _element(buf, pos, explicit)
        if tag == _ITEM_END:
            return value_at
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, value_at, explicit and vr != b"UN", depth + 1)
        else:
            pos = value_at + length
    raise _GiveUp


class DirectSource:
    """One uncompressed greyscale file read by its indexed header and :func:`scan_native`'s layout: the part of
    :class:`~viewer.dicom.pixels.SourceFile` that the slices after a stack's first need, without a pydicom parse.

    Made by :func:`direct_source`, which returns None for any file that needs more (colour, a LUT, functional
    groups, a header the scan gave up on).
    """

    direct = True

    def __init__(self, header: InstanceHeader, layout: NativeLayout) -> None:
        self.path = header.path
        self.header = header
        self.transfer_syntax = header.transfer_syntax_uid
        self.rows, self.columns = header.rows, header.columns
        self.bits_allocated = header.bits_allocated
        self.bits_stored = layout.bits_stored or header.bits_allocated
        self.signed = header.pixel_representation == 1
        self.n_frames = header.number_of_frames
        self.pixel_offset = layout.pixel_offset
        self.pixel_length = layout.pixel_length
        self.file_size = header.size
        kind = "i" if self.signed else "u"
        self.stored_dtype = np.dtype(f"<{kind}{self.bits_allocated // 8}")
        self._filled: np.ndarray | None = None
        if layout.has_rescale:
            assert header.rescale_slope is not None and header.rescale_intercept is not None
            self._params = ModalityParams(
                header.rescale_slope, header.rescale_intercept, None, layout.rescale_type, True
            )
        else:
            self._params = ModalityParams()

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame."""
        return self.rows * self.columns * self.bits_allocated // 8

    def modality_params(self, frame: int = 0) -> ModalityParams:
        """The plain rescale of the indexed header (every frame alike: no functional groups here)."""
        return self._params

    def read_direct(self, frame: int, out: np.ndarray) -> np.ndarray:
        """Read one frame's stored values into ``out`` (rows × columns, :attr:`stored_dtype`)."""
        size = self.frame_bytes
        if (frame + 1) * size > self.pixel_length:
            raise DecodeError(f"pixel data holds fewer than {frame + 1} frame(s)")
        try:
            with open(self.path, "rb", buffering=0) as fh:
                fh.seek(self.pixel_offset + frame * size)
                got = fh.readinto(memoryview(out).cast("B"))
        except FileNotFoundError:
            raise DecodeError("the file has disappeared") from None
        except OSError as exc:
            raise DecodeError(f"cannot be read ({exc})") from None
        if got != size:
            raise DecodeError("truncated: the file ends inside its pixel data")
        return mask_unused_bits(out, self.bits_stored, self.bits_allocated)

    def grey_into(
        self,
        frame: int,
        out: np.ndarray,
        plugins: object = (),
        scratch: np.ndarray | None = None,
        accept: Callable[..., None] | None = None,
    ) -> str:
        """As :meth:`viewer.dicom.pixels.SourceFile.grey_into` on its direct path; returns "direct".

        ``accept`` is :func:`viewer.dicom.modality_dtype.check_frame` bound to the plan: it is told the values
        are masked to *Bits Stored*, which spares it their minimum and maximum when that range fits the plan.
        """
        if out.shape != (self.rows, self.columns):
            raise DecodeError(f"image is {self.rows}×{self.columns}, the stack's slices are {out.shape}")
        filled, self._filled = self._filled, None
        if (
            filled is not None
            and frame == 0
            and filled.shape == out.shape
            and (filled is scratch or np.may_share_memory(filled, out))
        ):
            # Read with the header by :func:`direct_source` into the buffer this call uses (``out``'s own memory
            # or the scratch it was given), so it is rescaled from there as a read below would be.
            stored = mask_unused_bits(filled, self.bits_stored, self.bits_allocated)
        elif (
            out.dtype.kind in "iu" and out.dtype.itemsize == self.stored_dtype.itemsize and out.dtype.isnative
        ):
            # Read straight into the volume's slice and rescale it there: one pass over the slice fewer.
            stored = self.read_direct(frame, out.view(self.stored_dtype))
        else:
            if scratch is None or scratch.dtype != self.stored_dtype or scratch.shape != out.shape:
                scratch = np.empty(out.shape, dtype=self.stored_dtype)
            stored = self.read_direct(frame, scratch)
        if accept is not None:
            accept(self._params, stored, (self.bits_stored, self.signed))
        apply_modality_lut(stored, self._params.slope, self._params.intercept, None, out=out)
        return "direct"


def direct_source(header: InstanceHeader, dest: np.ndarray | None = None) -> DirectSource | None:
    """A :class:`DirectSource` for a greyscale uncompressed file whose indexed header is current, else None.

    ``dest`` (the buffer the file's single frame will be read into: rows × columns of its stored type, C order)
    lets the header and the pixels be read in one system call (:func:`_read_with_header`), where the pixel data
    is where a file that ends with it would have it; the source then hands that frame over without reading it
    again. Where it is not, the file is scanned and read as without ``dest``.
    """
    if (
        header.samples_per_pixel != 1
        or header.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2")
        or header.bits_allocated not in (8, 16, 32)
        or header.rows <= 0
        or header.columns <= 0
    ):
        return None
    if header.native is not None:
        return _indexed_source(header, header.native, dest)
    if dest is not None and header.number_of_frames == 1 and _PREADV:
        source = _read_with_header(header, dest)
        if source is not None:
            return source
    layout = scan_native(header.path, header)
    return _source_for(header, layout)


def _indexed_source(
    header: InstanceHeader, layout: NativeLayout, dest: np.ndarray | None
) -> DirectSource | None:
    """A :class:`DirectSource` by the layout the index recorded, for a file unchanged since (the same
    :class:`~viewer.dicom.file_stamp.FileStamp`); with ``dest``, the first frame is read into it at once (one
    ``pread``, no header read or scan: :func:`_read_with_header` and :func:`scan_native` were most of an
    uncompressed load's own time)."""
    source = _source_for(header, layout)
    if source is None:
        return None
    fill = (
        dest is not None
        and dest.nbytes == source.frame_bytes <= layout.pixel_length
        and dest.flags.c_contiguous
    )
    buffers = [memoryview(dest).cast("B")] if fill and _PREADV and dest is not None else []
    got = _read_indexed(header, buffers, layout.pixel_offset)
    if got is None:
        return None
    if buffers and got == dest.nbytes:
        source._filled = dest
    return source


def _read_indexed(header: InstanceHeader, buffers: list, offset: int) -> int | None:
    """Read ``buffers`` from ``offset`` of the header's file with one ``preadv`` (nothing when empty); the bytes
    read, or None when the file is not the one indexed (another size, modification or status-change time) or
    cannot be read."""
    try:
        fd = os.open(header.path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if FileStamp.of(st) != header.stamp:
                return None
            return os.preadv(fd, buffers, offset) if buffers else 0
        finally:
            os.close(fd)
    except OSError:
        return None


def _source_for(header: InstanceHeader, layout: NativeLayout | None) -> DirectSource | None:
    if layout is None:
        return None
    if layout.has_rescale and (header.rescale_slope is None or header.rescale_intercept is None):
        return None
    if layout.bits_stored is not None and not 1 <= layout.bits_stored <= header.bits_allocated:
        return None
    return DirectSource(header, layout)


_PREADV = hasattr(os, "preadv")


def _read_with_header(header: InstanceHeader, dest: np.ndarray) -> DirectSource | None:
    """Read a single-frame file's header block and its pixels into ``dest`` with one ``preadv``, guessing that
    the pixel data is the file's last element and exactly one frame long (as most writers leave it); the scan of
    the header block then says whether the guess was right. None when it was not, or the file is not one this
    path reads (the caller then scans and reads as usual; ``dest`` may hold anything meanwhile)."""
    syntax = header.transfer_syntax_uid
    size = header.rows * header.columns * header.bits_allocated // 8
    offset = header.size - size
    if (
        syntax not in (IMPLICIT_LE, EXPLICIT_LE)
        or not 132 < offset <= SCAN_BYTES
        or dest.nbytes != size
        or dest.shape != (header.rows, header.columns)
        or not dest.flags.c_contiguous
    ):
        return None
    head = bytearray(offset)
    if _read_indexed(header, [head, memoryview(dest).cast("B")], 0) != header.size:
        return None
    try:
        layout = _scan(bytes(head), syntax == EXPLICIT_LE, header.size)
    except (_GiveUp, struct.error, IndexError, ValueError):
        return None
    if layout is None or (layout.pixel_offset, layout.pixel_length) != (offset, size):
        return None
    source = _source_for(header, layout)
    if source is not None:
        source._filled = dest
    return source


_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def compressed_source(header: InstanceHeader) -> SourceFile | None:
    """A :class:`~viewer.dicom.pixels.SourceFile` for a single-frame greyscale file of a compressed syntax, made
    from its indexed header and its encapsulated pixel data found by :func:`scan_native` (a dataset of the few
    elements the decoders read, no pydicom parse of the file); None for anything else.

    The decoders and GDCM's safety checks see the file's own values: the indexed header's, taken from this very
    file (the same stamp), and *Bits Stored* from the scan.
    """
    if (
        header.number_of_frames != 1
        or header.samples_per_pixel != 1
        or header.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2")
        or header.bits_allocated not in (8, 16)
        or header.rows <= 0
        or header.columns <= 0
    ):
        return None
    layout = scan_native(header.path, header, encapsulated=True)
    if layout is None or (
        layout.has_rescale and (header.rescale_slope is None or header.rescale_intercept is None)
    ):
        return None
    bits_stored = layout.bits_stored or header.bits_allocated
    if not 1 <= bits_stored <= header.bits_allocated:
        return None
    try:
        with open(header.path, "rb", buffering=0) as fh:
            fh.seek(layout.pixel_offset)
            data = fh.read()
    except OSError:
        return None
    end = _fragments_end(data)
    if end is None:
        return None
    return SourceFile.from_header(header, data[:end], bits_stored, layout.has_rescale, layout.rescale_type)


def _fragments_end(data: bytes) -> int | None:
    """Where the items of encapsulated pixel data end (at the sequence delimiter), or None when they do not
    parse: a Basic Offset Table item, then one or more fragments, then the delimiter."""
    pos, items = 0, 0
    while pos + 8 <= len(data):
        tag = data[pos : pos + 4]
        if tag == _SEQ_DELIMITER[:4]:
            return pos if items >= 2 else None
        if tag != b"\xfe\xff\x00\xe0":
            return None
        length = _U32.unpack_from(data, pos + 4)[0]
        if length == _UNDEFINED or pos + 8 + length > len(data):
            return None
        pos += 8 + length
        items += 1
    return None
