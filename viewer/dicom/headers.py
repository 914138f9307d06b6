"""Header-only reading of one DICOM file into a plain, cacheable record.

The index, the stack splitter and the volume loader all work from :class:`InstanceHeader`, so a folder can be
listed and split into stacks without decoding a single pixel. Multi-frame (enhanced) objects carry one
:class:`FrameGeometry` per frame, taken from the per-frame or shared functional groups.

Reading is tuned for indexing thousands of files: pydicom parses up to the pixel data and stops there (the
pixel data's own header is then checked by hand, so a truncated file is still recognised), and the values
needed are taken straight from the raw element bytes when they are plain ASCII or binary numbers; anything
else goes through pydicom's own conversion. Converting every element the pydicom way costs more than parsing
the file.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble

from viewer.dicom.file_stamp import FileStamp
from viewer.dicom.inflate import InflateLimitError, InflatingReader, mb_text
from viewer.errors import ViewerError

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
HEADER_FORMAT_VERSION = 7
"""Bump whenever :func:`read_header` gives a different header or skip reason for the same file: persistent
caches of headers key on it and re-read everything when it changes."""

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
_DEFLATED = "1.2.840.10008.1.2.1.99"
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", _DEFLATED})
#: The most a deflated file may inflate to, in MB (``GRU_VIEWER_INFLATE_LIMIT_MB`` overrides it): a few kB of
#: deflate can stand for gigabytes of zeros, and nothing is read of a file past this. Each file is held to less
#: when its header says so (:func:`read_deflated`).
INFLATE_LIMIT_MB = 512
INFLATE_LIMIT_ENV = "GRU_VIEWER_INFLATE_LIMIT_MB"
INFLATE_MARGIN = 1 << 20
"""Bytes a deflated dataset may hold beyond its header and the pixel data its header describes: the elements
after the pixel data (padding, a digital signature, an odd byte) are small; 1 MB is far more than they need and
far less than a deflate bomb."""
MAX_HEADER_ELEMENTS = 500_000
"""The most data elements (sequence items included) a file may hold before its pixel data
(``GRU_VIEWER_MAX_HEADER_ELEMENTS`` overrides it). Parsing costs about 0.4 kB of memory per element, and a few
bytes on disk can stand for one: a file past this is skipped, not parsed to the end. Counted as the 8-byte
reads the parser makes, which every element and item header is (an element whose value is 8 bytes long counts
twice), so a real header of a few thousand elements, or an enhanced multi-frame file of thousands of frames,
stays well within it."""
MAX_HEADER_ELEMENTS_ENV = "GRU_VIEWER_MAX_HEADER_ELEMENTS"
MAX_HEADER_MB = 64
"""The most bytes of element values, in MB, parsed before the pixel data (``GRU_VIEWER_MAX_HEADER_MB``
overrides it). Values longer than 4096 bytes stay on disk and do not count; everything shorter is held in
memory while the header is read."""
MAX_HEADER_MB_ENV = "GRU_VIEWER_MAX_HEADER_MB"
_DEFER_SIZE = 4096  # values larger than this stay on disk; every value the index needs is far smaller
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM_TAG = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
)
# The groups a dataset without preamble and file meta can start with.
_FIRST_GROUPS = frozenset({0x0000, 0x0002, 0x0004, 0x0008})
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
)
_BINARY_INTS = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}
_BINARY_FLOATS = {"FL": "f", "FD": "d"}


class SkippedFile(ViewerError):
    """A file that is not a displayable DICOM image; ``why`` says which of the known reasons applies."""


class HeaderLimitError(Exception):
    """A header past :data:`MAX_HEADER_ELEMENTS` or :data:`MAX_HEADER_MB`; the message names the limit."""


def _positive_env(name: str, default: int) -> int:
    """``$name`` as a positive integer, else ``default``."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def inflate_limit_mb() -> int:
    """The most a deflated file may inflate to, in MB: ``$GRU_VIEWER_INFLATE_LIMIT_MB``, else
    :data:`INFLATE_LIMIT_MB`."""
    return _positive_env(INFLATE_LIMIT_ENV, INFLATE_LIMIT_MB)


def max_header_elements() -> int:
    """The most data elements parsed before the pixel data: ``$GRU_VIEWER_MAX_HEADER_ELEMENTS``, else
    :data:`MAX_HEADER_ELEMENTS`."""
    return _positive_env(MAX_HEADER_ELEMENTS_ENV, MAX_HEADER_ELEMENTS)


def max_header_mb() -> int:
    """The most MB of element values parsed before the pixel data: ``$GRU_VIEWER_MAX_HEADER_MB``, else
    :data:`MAX_HEADER_MB`."""
    return _positive_env(MAX_HEADER_MB_ENV, MAX_HEADER_MB)


class _Bounded:
    """A file as the parser sees it: every read counted, and :class:`HeaderLimitError` once a limit is passed.

    Reads of 8 bytes count as elements (each element and item header is one); reads of at most
    :data:`_DEFER_SIZE` bytes count as value bytes. Longer reads (deflated chunks, values the caller chose to
    read whole) are the caller's to bound.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._elements_left = max_header_elements()
        self._bytes_left = max_header_mb() << 20
        self.seek = fh.seek
        self.tell = fh.tell

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        n = len(data)
        if n == 8:
            self._elements_left -= 1
            if self._elements_left < 0:
                raise HeaderLimitError(
                    f"more than {max_header_elements()} data elements before the pixel data, the limit for a "
                    f"header ({MAX_HEADER_ELEMENTS_ENV})"
                )
        if n <= _DEFER_SIZE:
            self._bytes_left -= n
            if self._bytes_left < 0:
                raise HeaderLimitError(
                    f"more than {max_header_mb()} MB of values before the pixel data, the limit for a header "
                    f"({MAX_HEADER_MB_ENV})"
                )
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _deflated_meta(fh: BinaryIO) -> FileMetaDataset | None:
    """The file meta of a Deflated Explicit VR Little Endian file, with ``fh`` at its deflated dataset; None
    (and ``fh`` where it was) for any other file, or a meta that does not parse."""
    start = fh.tell()
    try:
        read_preamble(fh, True)
        meta = read_dataset(fh, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
        if str(meta.get("TransferSyntaxUID", "")).strip() == _DEFLATED:
            return FileMetaDataset(meta)
    except HeaderLimitError:
        raise
    except Exception:  # a damaged meta: the ordinary reader says what is wrong with it
        pass
    fh.seek(start)
    return None


def _image_bytes(ds: Dataset) -> tuple[int, str]:
    """The most bytes a dataset's pixel data can hold by its header, and the product that gives them.

    Rows × Columns × SamplesPerPixel × BitsAllocated / 8 × NumberOfFrames; a missing or unreadable factor counts
    as 0 for an image size (no image) and 1 for the others.
    """
    v = _Values(ds)

    def factor(keyword: str, default: int) -> int:
        try:
            value = v.integer(keyword)
        except Exception:  # a damaged value: the header reader says what is wrong with it
            value = None
        return value if value is not None and value > 0 else default

    rows, cols = factor("Rows", 0), factor("Columns", 0)
    samples, bits, frames = (
        factor("SamplesPerPixel", 1),
        factor("BitsAllocated", 1),
        factor("NumberOfFrames", 1),
    )
    n_bytes = (rows * cols * samples * bits * frames + 7) // 8
    product = f"{rows} × {cols} × {samples} sample(s) × {bits} bits × {frames} frame(s)"
    return n_bytes, product


def read_deflated(
    fh: BinaryIO, *, stop_before_pixels: bool = False, limit_mb: int | None = None, bounded: bool = False
) -> tuple[Dataset, InflatingReader] | None:
    """Read a Deflated Explicit VR Little Endian file, inflating it once; None, with ``fh`` unmoved, for a file
    in any other transfer syntax.

    The dataset is inflated as it is parsed, up to its pixel data, within the overall cap ``limit_mb`` MB
    (default :func:`inflate_limit_mb`). The rest may then inflate only to what the header says the pixel data
    can be (:func:`_image_bytes`) plus :data:`INFLATE_MARGIN` for the elements after it, and never past the cap:
    a header that describes more pixel data than the cap is refused before the pixel data is inflated.

    Returns the dataset (every value in memory, ``file_meta`` set) and the inflated dataset as a reader, left
    where parsing stopped (at the pixel data with ``stop_before_pixels``, the pixel data itself then counted,
    not kept: the reader's ``size`` is the whole dataset's). With ``bounded``, the file meta and the dataset
    are parsed within :data:`MAX_HEADER_ELEMENTS` and :data:`MAX_HEADER_MB`.

    Raises
    ------
    InflateLimitError
        The dataset inflates past its limit, or its header describes more pixel data than the cap.
    HeaderLimitError
        With ``bounded``: the header is past a header limit.
    zlib.error, EOFError
        The deflated stream or the dataset in it is damaged.
    """
    meta = _deflated_meta(_Bounded(fh) if bounded else fh)
    if meta is None:
        return None
    cap = (limit_mb if limit_mb is not None else inflate_limit_mb()) << 20
    cap_why = f"the limit for a deflated file ({INFLATE_LIMIT_ENV})"
    reader = InflatingReader(fh, cap, cap_why)
    at_pixels = lambda tag, vr, length: tag in PIXEL_DATA_TAGS  # noqa: E731
    ds = read_dataset(_Bounded(reader) if bounded else reader, False, True, stop_when=at_pixels)
    stop = reader.tell()
    image, product = _image_bytes(ds)
    if stop + image > cap:
        raise InflateLimitError(
            f"its header describes {mb_text(image)} of pixel data ({product}), more than {mb_text(cap)}, {cap_why}"
        )
    if image + INFLATE_MARGIN < cap - stop:
        reader.set_limit(
            stop + image + INFLATE_MARGIN,
            f"the most its header allows: {mb_text(image)} of pixel data ({product}) and "
            f"{mb_text(stop + INFLATE_MARGIN)} for the rest of the dataset",
        )
    if stop_before_pixels:
        reader.fill(stop + 12)  # the pixel data element's own header, which the header reader checks
        reader.finish(keep=False)
        reader.seek(stop)
    else:
        reader.finish()
        reader.seek(0)
        ds = read_dataset(reader, False, True)
    ds.file_meta = meta
    return ds, reader


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """Where one frame sits in patient space (LPS, mm); any part may be missing (e.g. CR/DX/US)."""

    position: tuple[float, float, float] | None = None
    orientation: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing: tuple[float, float] | None = None  # (row spacing, column spacing)
    slice_thickness: float | None = None
    stack_id: str | None = None
    in_stack_position: int | None = None
    temporal_position: int | None = None


@dataclass(frozen=True, slots=True)
class NativeLayout:
    """Where an uncompressed little-endian file's pixel data lies, and what beside it decides how its stored values
    become modality values. The index records it (:func:`read_header`) so that a load reads the pixels at once;
    :func:`viewer.dicom.native_scan.scan_native` finds it for headers that lack it."""

    pixel_offset: int
    pixel_length: int
    bits_stored: int | None
    has_rescale: bool
    rescale_type: str


LEAVE_TO_PYDICOM = frozenset({0x00283000, 0x52009229, 0x52009230, 0x3004000E})
"""Elements that change the stored → modality transform, or say the pixels are not plain Pixel Data: Modality LUT,
the functional groups of enhanced objects, RT Dose's grid scaling. A file holding one is read through pydicom."""
_BITS_STORED, _RESCALE_INTERCEPT, _RESCALE_SLOPE = 0x00280101, 0x00281052, 0x00281053
_PLAIN_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


@dataclass(frozen=True, slots=True)
class InstanceHeader:
    """Everything about one file that indexing, stack splitting and loading need, without its pixels."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    # Patient
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    # Study
    study_instance_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    # Series
    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    frame_of_reference_uid: str = ""
    # Image
    instance_number: int | None = None
    acquisition_number: int | None = None
    echo_number: float | None = None
    image_type: tuple[str, ...] = ()
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    photometric_interpretation: str = ""
    bits_allocated: int = 0
    pixel_representation: int = 0
    window_center: float | None = None
    window_width: float | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    frames: tuple[FrameGeometry, ...] = field(default_factory=tuple)
    series_date: str = ""  # after the others, so that positional construction by older code keeps working
    native: NativeLayout | None = None

    @property
    def is_colour(self) -> bool:
        """RGB-like (three samples per pixel) or PALETTE COLOR."""
        return self.samples_per_pixel == 3 or self.photometric_interpretation == "PALETTE COLOR"

    @property
    def is_localizer(self) -> bool:
        """Whether ImageType says LOCALIZER (a scout beside the axial slices)."""
        return "LOCALIZER" in self.image_type

    @property
    def stamp(self) -> FileStamp:
        """The file's stamp when this header was read: a file with another stamp may hold something else."""
        return FileStamp(self.size, self.mtime_ns, self.ctime_ns)

    def to_json(self) -> str:
        # What dataclasses.asdict gives, built directly: asdict deep-copies and costs more than the rest of it.
        """The header as compact JSON, for the header cache."""
        data = {name: getattr(self, name) for name in _HEADER_FIELDS}
        data["frames"] = [{name: getattr(f, name) for name in _FRAME_FIELDS} for f in self.frames]
        if self.native is not None:
            data["native"] = [getattr(self.native, name) for name in _LAYOUT_FIELDS]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> InstanceHeader:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["image_type"] = tuple(data.get("image_type") or ())
        data["frames"] = tuple(_frame_from_dict(f) for f in data.get("frames") or ())
        if data.get("native") is not None:
            data["native"] = NativeLayout(*data["native"])
        return cls(**data)


_HEADER_FIELDS = tuple(f.name for f in fields(InstanceHeader))
_FRAME_FIELDS = tuple(f.name for f in fields(FrameGeometry))
_LAYOUT_FIELDS = tuple(f.name for f in fields(NativeLayout))


def _frame_from_dict(d: dict[str, Any]) -> FrameGeometry:
    def tup(v: Any) -> tuple | None:
        return tuple(v) if v is not None else None

    return FrameGeometry(
        position=tup(d.get("position")),
        orientation=tup(d.get("orientation")),
        pixel_spacing=tup(d.get("pixel_spacing")),
        slice_thickness=d.get("slice_thickness"),
        stack_id=d.get("stack_id"),
        in_stack_position=d.get("in_stack_position"),
        temporal_position=d.get("temporal_position"),
    )


_MISSING = object()


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


@cache
def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _is_plain_ascii(value: bytes) -> bool:
    # ESC starts an ISO 2022 code extension: ASCII bytes that are not ASCII text.
    return value.isascii() and b"\x1b" not in value


def _finite(value: float) -> float | None:
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def _first(value: Any) -> Any:
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _int_of(value: Any) -> int | None:
    value = _first(value)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        value = _first(value)
        if value in (None, ""):
            return None
        return _finite(float(value))
    except (TypeError, ValueError):
        return None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        if value is None or isinstance(value, str | bytes):
            return None
        out = tuple(float(v) for v in value)
        return out if len(out) == n and all(_finite(v) is not None for v in out) else None
    except (TypeError, ValueError):
        return None


class _Values:
    """The values of one dataset (or sequence item) that a header needs, read cheaply.

    Plain ASCII text and binary numbers are decoded straight from the raw element bytes. Text with other
    characters (whose meaning depends on Specific Character Set), values pydicom has already converted and
    elements with an unexpected VR go through pydicom's conversion, so both paths give the same values.
    """

    __slots__ = ("ds",)

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def _raw(self, keyword: str) -> Any:
        """``(vr, bytes, little_endian)``; ``_MISSING`` when absent; ``None`` when pydicom must convert it."""
        tag = _tag(keyword)
        elem = self.ds.get_item(tag, keep_deferred=True)
        if elem is None:
            return _MISSING
        if not isinstance(elem, RawDataElement) or elem.value is None:
            return None
        return elem.VR or _vr(tag), elem.value, elem.is_little_endian

    def _converted(self, keyword: str) -> Any:
        return self.ds.get(keyword)

    def text(self, keyword: str) -> str:
        raw = self._raw(keyword)
        if raw is _MISSING:
            return ""
        if raw is not None:
            vr, value, _ = raw
            if vr in _TEXT_VRS and _is_plain_ascii(value):
                return value.decode("ascii").strip(" \t\r\n\x00")
        return _as_text(self._converted(keyword))

    def strings(self, keyword: str) -> tuple[str, ...]:
        raw = self._raw(keyword)
        if raw is _MISSING:
            return ()
        if raw is not None:
            vr, value, _ = raw
            if vr in _TEXT_VRS and _is_plain_ascii(value):
                text = value.decode("ascii").strip(" \t\r\n\x00")
                return tuple(v.strip() for v in text.split("\\")) if text else ()
        value = self._converted(keyword)
        if value in (None, ""):
            return ()
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split("\\"))
        if isinstance(value, pydicom.multival.MultiValue | list | tuple):
            return tuple(str(v).strip() for v in value)
        return (str(value).strip(),)

    def integer(self, keyword: str) -> int | None:
        raw = self._raw(keyword)
        if raw is _MISSING:
            return None
        if raw is not None:
            vr, value, little = raw
            fmt = _BINARY_INTS.get(vr)
            if fmt is not None and len(value) >= struct.calcsize(fmt):
                return int(struct.unpack_from(("<" if little else ">") + fmt, value)[0])
            if vr == "IS" and value.isascii():
                first = value.split(b"\\", 1)[0].strip(b" \x00")
                if not first:
                    return None
                try:
                    return int(first)
                except ValueError:
                    pass
        return _int_of(self._converted(keyword))

    def number(self, keyword: str) -> float | None:
        """The first value as a float (DS, IS, FL, FD or a binary integer)."""
        raw = self._raw(keyword)
        if raw is _MISSING:
            return None
        if raw is not None:
            vr, value, little = raw
            if vr in ("DS", "IS") and value.isascii():
                first = value.split(b"\\", 1)[0].strip(b" \x00")
                if not first:
                    return None
                try:
                    return _finite(float(first))
                except ValueError:
                    pass
            fmt = _BINARY_FLOATS.get(vr) or _BINARY_INTS.get(vr)
            if fmt is not None and len(value) >= struct.calcsize(fmt):
                return _finite(float(struct.unpack_from(("<" if little else ">") + fmt, value)[0]))
        return _float(self._converted(keyword))

    def floats(self, keyword: str, n: int) -> tuple[float, ...] | None:
        """All ``n`` values as floats, or ``None`` when absent, malformed or of another multiplicity."""
        raw = self._raw(keyword)
        if raw is _MISSING:
            return None
        if raw is not None:
            vr, value, little = raw
            if vr in ("DS", "IS") and value.isascii():
                try:
                    out = tuple(float(v) for v in value.strip(b" \x00").split(b"\\"))
                except ValueError:
                    out = None
                if out is not None:
                    return out if len(out) == n and all(_finite(v) is not None for v in out) else None
            fmt = _BINARY_FLOATS.get(vr)
            if fmt is not None and len(value) == n * struct.calcsize(fmt):
                out = struct.unpack(("<" if little else ">") + fmt * n, value)
                return out if all(_finite(v) is not None for v in out) else None
        return _floats(self._converted(keyword), n)

    def first_item(self, keyword: str) -> Dataset | None:
        seq = self.ds.get(keyword) if keyword in self.ds else None
        return seq[0] if seq else None


def _frame_from_groups(groups: list[Dataset | None]) -> FrameGeometry:
    """Merge per-frame and shared functional groups (per-frame listed first wins)."""
    position = orientation = spacing = None
    thickness: float | None = None
    stack_id: str | None = None
    in_stack: int | None = None
    temporal: int | None = None
    for group in groups:
        if group is None:
            continue
        g = _Values(group)
        if position is None and (item := g.first_item("PlanePositionSequence")) is not None:
            position = _Values(item).floats("ImagePositionPatient", 3)
        if orientation is None and (item := g.first_item("PlaneOrientationSequence")) is not None:
            orientation = _Values(item).floats("ImageOrientationPatient", 6)
        if (item := g.first_item("PixelMeasuresSequence")) is not None:
            pm = _Values(item)
            if spacing is None:
                spacing = pm.floats("PixelSpacing", 2)
            if thickness is None:
                thickness = pm.number("SliceThickness")
        if (item := g.first_item("FrameContentSequence")) is not None:
            fc = _Values(item)
            if stack_id is None:
                stack_id = fc.text("StackID") or None
            if in_stack is None:
                in_stack = fc.integer("InStackPositionNumber")
            if temporal is None:
                temporal = fc.integer("TemporalPositionIndex")
    return FrameGeometry(position, orientation, spacing, thickness, stack_id, in_stack, temporal)


def _frames(v: _Values, n_frames: int) -> tuple[FrameGeometry, ...]:
    ds = v.ds
    per_frame = (
        ds.get("PerFrameFunctionalGroupsSequence") if "PerFrameFunctionalGroupsSequence" in ds else None
    )
    if per_frame is not None and len(per_frame) == n_frames:
        shared_group = v.first_item("SharedFunctionalGroupsSequence")
        return tuple(_frame_from_groups([pf, shared_group]) for pf in per_frame)
    top = FrameGeometry(
        position=v.floats("ImagePositionPatient", 3),
        orientation=v.floats("ImageOrientationPatient", 6),
        pixel_spacing=v.floats("PixelSpacing", 2) or v.floats("ImagerPixelSpacing", 2),
        slice_thickness=v.number("SliceThickness"),
    )
    if n_frames == 1:
        return (top,)
    # Classic multi-frame without functional groups: frames stacked along the normal by SpacingBetweenSlices
    # or an explicit frame increment; positions are derived by the loader, not guessed here.
    return tuple(
        FrameGeometry(None, top.orientation, top.pixel_spacing, top.slice_thickness) for _ in range(n_frames)
    )


def transfer_syntax_of(ds: Dataset) -> str:
    """The transfer syntax a dataset is in: its file meta's, or for a file without one, the syntax it was read
    in ("" when unknown)."""
    return _transfer_syntax(ds)


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    tsyntax = _Values(meta).text("TransferSyntaxUID") if meta is not None else ""
    if tsyntax:
        return tsyntax
    # No file meta: name the syntax the dataset was actually read in, so a loader can decode it.
    implicit, little = ds.original_encoding
    if implicit is None:
        return ""
    if implicit:
        return "1.2.840.10008.1.2"
    return "1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2"


def _most_frames(transfer_syntax: str, size: int, samples: int, v: _Values) -> int:
    """The most frames a file of ``size`` bytes can hold: a bound, the pixel data check is exact."""
    if transfer_syntax in _NATIVE_SYNTAXES:
        frame_bits = max(1, samples) * max(1, v.integer("BitsAllocated") or 1)
        ratio = 1032 if transfer_syntax == _DEFLATED else 1  # deflate compresses at most about 1032:1
        return max(1, size * 8 * ratio // frame_bits)
    return max(1, size // 8)  # each compressed frame takes at least one 8-byte item header


def header_from_dataset(ds: Dataset, path: str, stamp: FileStamp) -> InstanceHeader:
    """Build an :class:`InstanceHeader` from a parsed dataset (its pixel data may be deferred or absent), read
    from the file at ``path`` as ``stamp`` found it."""
    v = _Values(ds)
    meta = getattr(ds, "file_meta", None)
    m = _Values(meta) if meta is not None else None
    sop_class = v.text("SOPClassUID") or (m.text("MediaStorageSOPClassUID") if m else "")
    sop_uid = v.text("SOPInstanceUID") or (m.text("MediaStorageSOPInstanceUID") if m else "")
    n_frames = max(1, v.integer("NumberOfFrames") or 1)
    rows, cols = v.integer("Rows") or 0, v.integer("Columns") or 0
    if rows <= 0 or cols <= 0:
        raise SkippedFile("Skipped file", "image has no rows/columns", path)
    size = stamp.size
    most = _most_frames(_transfer_syntax(ds), size, rows * cols * (v.integer("SamplesPerPixel") or 1), v)
    if n_frames > most:
        # Checked before anything is built per frame: a damaged NumberOfFrames (2³¹ − 1 seen) would exhaust memory.
        raise SkippedFile("Skipped file", f"NumberOfFrames ({n_frames}) is more than the file can hold", path)
    return InstanceHeader(
        path=path,
        size=size,
        mtime_ns=stamp.mtime_ns,
        ctime_ns=stamp.ctime_ns,
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax_uid=_transfer_syntax(ds),
        patient_name=v.text("PatientName"),
        patient_id=v.text("PatientID"),
        patient_birth_date=v.text("PatientBirthDate"),
        patient_sex=v.text("PatientSex"),
        study_instance_uid=v.text("StudyInstanceUID"),
        study_date=v.text("StudyDate"),
        study_time=v.text("StudyTime"),
        study_description=v.text("StudyDescription"),
        accession_number=v.text("AccessionNumber"),
        series_instance_uid=v.text("SeriesInstanceUID"),
        series_number=v.integer("SeriesNumber"),
        series_description=v.text("SeriesDescription"),
        modality=v.text("Modality"),
        frame_of_reference_uid=v.text("FrameOfReferenceUID"),
        instance_number=v.integer("InstanceNumber"),
        acquisition_number=v.integer("AcquisitionNumber"),
        echo_number=v.number("EchoNumbers"),
        image_type=tuple(s.upper() for s in v.strings("ImageType")),
        rows=rows,
        columns=cols,
        number_of_frames=n_frames,
        samples_per_pixel=v.integer("SamplesPerPixel") or 1,
        photometric_interpretation=v.text("PhotometricInterpretation").upper(),
        bits_allocated=v.integer("BitsAllocated") or 0,
        pixel_representation=v.integer("PixelRepresentation") or 0,
        window_center=v.number("WindowCenter"),
        window_width=v.number("WindowWidth"),
        rescale_slope=v.number("RescaleSlope"),
        rescale_intercept=v.number("RescaleIntercept"),
        frames=_frames(v, n_frames),
        series_date=v.text("SeriesDate"),
    )


def _skip(why: str, path: str) -> SkippedFile:
    return SkippedFile("Skipped file", why, path)


def _starts_like_dataset(head: bytes) -> bool:
    """Whether a file without the 128-byte preamble and ``DICM`` begins with a plausible first element."""
    if len(head) < 8:
        return False
    for order in "<>":
        group = struct.unpack_from(order + "H", head)[0]
        if group not in _FIRST_GROUPS:
            continue
        vr = head[4:6]
        if vr.isalpha() and vr.isupper():  # explicit VR
            return True
        if struct.unpack_from(order + "I", head, 4)[0] < 0x10000:  # implicit VR: a short first value
            return True
    return False


def _last_element_end(ds: Dataset) -> int | None:
    """File offset where the last parsed element's value ends, when pydicom kept its raw length."""
    if not len(ds):
        return None
    elem = ds.get_item(next(reversed(ds.keys())), keep_deferred=True)
    if isinstance(elem, RawDataElement) and elem.length != _UNDEFINED_LENGTH:
        return elem.value_tell + elem.length
    return None


def _check_fragments(fh: BinaryIO, pos: int, size: int, path: str) -> int:
    """Walk the items of encapsulated (compressed) pixel data by their headers, up to the delimiter.

    Returns the number of fragments after the Basic Offset Table item.
    """
    items = 0
    while True:
        fh.seek(pos)
        item = fh.read(8)
        if len(item) < 8:
            raise _skip("truncated: the file ends inside its compressed pixel data", path)
        group, element, length = struct.unpack("<HHI", item)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            return max(0, items - 1)
        items += 1
        if tag != _ITEM_TAG or length == _UNDEFINED_LENGTH:
            raise _skip("unreadable pixel data (malformed compressed fragments)", path)
        pos += 8 + length
        if pos > size:
            raise _skip("truncated: the file ends inside its compressed pixel data", path)


def _check_pixel_data(
    fh: BinaryIO, ds: Dataset, header: InstanceHeader, stop: int, size: int
) -> tuple[int, int] | None:
    """Check the Pixel Data element that parsing stopped at: present, complete, and as long as the image.

    pydicom was told to stop before the pixel data, leaving the file at its tag: its header is read here, and
    its declared extent (or for compressed data, the extent of each fragment) is compared with the file size.
    Returns the value's ``(offset, length)`` where it is plain little-endian Pixel Data (OB/OW or implicit VR)
    of a defined length, else None.
    """
    path = header.path
    implicit, little = ds.original_encoding
    order = "<" if little is not False else ">"
    fh.seek(stop)
    head = fh.read(12)
    tag = None
    if len(head) >= 8:
        group, element = struct.unpack_from(order + "HH", head)
        tag = group << 16 | element
    if tag not in PIXEL_DATA_TAGS:
        raise _skip("no pixel data although the header describes an image (truncated?)", path)
    plain = tag == 0x7FE00010 and little is not False
    if implicit:
        length, start = struct.unpack_from(order + "I", head, 4)[0], stop + 8
    elif not (head[4:6].isalpha() and head[4:6].isupper()):
        # Some writers encode Pixel Data in implicit VR inside an explicit VR dataset; pydicom reads them.
        length, start = struct.unpack_from(order + "I", head, 4)[0], stop + 8
        plain = False
    elif head[4:6] in _LONG_LENGTH_VRS:
        if len(head) < 12:
            raise _skip("truncated: the file ends inside its pixel data", path)
        length, start = struct.unpack_from(order + "I", head, 8)[0], stop + 12
        plain = plain and head[4:6] in (b"OB", b"OW")
    else:
        length, start = struct.unpack_from(order + "H", head, 6)[0], stop + 8
        plain = False
    if length == _UNDEFINED_LENGTH:
        fragments = _check_fragments(fh, start, size, path)
        # Each compressed frame starts a fragment of its own (PS3.5 A.4): a larger NumberOfFrames is a damaged
        # header, and believing it would list (and allocate) frames that do not exist.
        if header.number_of_frames > max(fragments, 1):
            raise _skip(
                f"NumberOfFrames ({header.number_of_frames}) is more than the {fragments} compressed "
                "fragment(s) of its pixel data",
                path,
            )
        return None
    if start + length > size:
        raise _skip("truncated: the file ends inside its pixel data", path)
    if header.transfer_syntax_uid in _NATIVE_SYNTAXES and header.bits_allocated:
        # YBR_FULL_422 stores two samples per pixel on average (chroma shared by pixel pairs).
        samples = 2 if header.photometric_interpretation == "YBR_FULL_422" else header.samples_per_pixel
        n_bits = header.rows * header.columns * header.number_of_frames * samples * header.bits_allocated
        if length < (n_bits + 7) // 8:
            raise _skip("pixel data shorter than the image its header describes", path)
    return (start, length) if plain else None


def _native_layout(ds: Dataset, header: InstanceHeader, start: int, length: int) -> NativeLayout | None:
    """The layout a load can read the pixels by without parsing the file again (see :class:`NativeLayout`), for a
    greyscale uncompressed little-endian file whose stored → modality transform is at most a plain rescale; None
    for any other file (it is then scanned or parsed when loaded)."""
    tags = ds.keys()  # the tags as ints: a membership test without a Tag conversion each
    if (
        header.transfer_syntax_uid not in _PLAIN_SYNTAXES
        or bool(ds.original_encoding[0]) != (header.transfer_syntax_uid == "1.2.840.10008.1.2")
        or header.samples_per_pixel != 1
        or header.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2")
        or header.bits_allocated not in (8, 16, 32)
        or not tags.isdisjoint(LEAVE_TO_PYDICOM)
    ):
        return None
    values = _Values(ds)
    bits_stored = values.integer("BitsStored")
    if (_BITS_STORED in tags) != (bits_stored is not None):
        return None  # present but not a number
    if bits_stored is not None and not 1 <= bits_stored <= header.bits_allocated:
        return None
    has_rescale = _RESCALE_SLOPE in tags or _RESCALE_INTERCEPT in tags
    if has_rescale and (header.rescale_slope is None or header.rescale_intercept is None):
        return None
    rescale_type = values.text("RescaleType").strip(" \0").upper()
    return NativeLayout(start, length, bits_stored, has_rescale, rescale_type)


def read_header(path: str | os.PathLike[str]) -> InstanceHeader:
    """Read one file's header without decoding (or even reading) its pixels.

    The file is only ever parsed as DICOM: the 128-byte preamble, which may hold anything (CVE-2019-11687),
    is skipped, never interpreted.

    Raises
    ------
    SkippedFile
        With the reason: not DICOM (or empty), a DICOMDIR, truncated, no pixel data, an unreadable header or a
        header past a limit (:data:`MAX_HEADER_ELEMENTS`, :data:`MAX_HEADER_MB`, :data:`INFLATE_LIMIT_MB`).
    """
    p = str(path)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise _skip("not a regular file", p)
        with open(p, "rb") as fh:
            return _read_open(fh, p, FileStamp.of(st))
    except OSError as exc:
        raise _skip(f"cannot be read ({exc.strerror or exc})", p) from None


def _read_open(fh: BinaryIO, p: str, stamp: FileStamp) -> InstanceHeader:
    size = stamp.size
    if size == 0:
        raise _skip("empty file", p)
    head = fh.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        force = False
    elif _starts_like_dataset(head):
        force = True  # a dataset without preamble and file meta (older or non-conformant writers)
    else:
        raise _skip("not DICOM", p)
    fh.seek(0)
    source, extent = fh, size  # the deflated dataset is parsed and checked in its inflated copy
    try:
        deflated = read_deflated(fh, stop_before_pixels=True, bounded=True)
        if deflated is not None:
            ds, source = deflated
            extent = source.size
        else:
            ds = pydicom.dcmread(_Bounded(fh), defer_size=_DEFER_SIZE, stop_before_pixels=True, force=force)
        stop = source.tell()
    except (InflateLimitError, HeaderLimitError) as exc:
        raise _skip(str(exc), p) from None
    except InvalidDicomError:
        raise _skip("not DICOM", p) from None
    except Exception as exc:  # pydicom raises many types for malformed headers
        if isinstance(exc, EOFError) or source.tell() >= extent:
            # The parser ran into the end of the file (the exception type depends on where it was).
            raise _skip(f"truncated: the file ends inside its header ({type(exc).__name__})", p) from None
        raise _skip(f"unreadable header ({type(exc).__name__}: {exc})", p) from None
    try:
        end = _last_element_end(ds)
        if end is not None and end > extent:
            raise _skip("truncated: the file ends inside its header", p)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and _Values(meta).text("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
            raise _skip("a DICOMDIR (the directory of a file-set), not an image", p)
        if force and "SOPClassUID" not in ds and stop >= extent:
            raise _skip("not DICOM", p)
        if stop >= extent and "Rows" not in ds:
            raise _skip("no pixel data (not an image)", p)
        header = header_from_dataset(ds, p, stamp)
        span = _check_pixel_data(source, ds, header, stop, extent)
        if span is not None and deflated is None and not force:
            try:
                layout = _native_layout(ds, header, *span)
            except Exception:  # a value that does not convert: the load will parse this file (and say why)
                layout = None
            if layout is not None:
                # Set on the header just built, before anything else sees it: ``replace`` would run the frozen
                # dataclass's __init__ again (about 30 µs, 5 % of indexing a file).
                object.__setattr__(header, "native", layout)
        return header
    except SkippedFile:
        raise
    except Exception as exc:
        raise _skip(f"unreadable header ({type(exc).__name__}: {exc})", p) from None


def is_dicomdir(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a DICOMDIR by its file name (the name the standard fixes for it)."""
    return Path(path).name.upper() == "DICOMDIR"
