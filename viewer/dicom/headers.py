"""Header-only reading of one DICOM file into a plain, cacheable record.

The index, the stack splitter and the volume loader all work from :class:`InstanceHeader`, so a folder can be
listed and split into stacks without decoding a single pixel. Multi-frame (enhanced) objects carry one
:class:`FrameGeometry` per frame, taken from the per-frame or shared functional groups.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from viewer.errors import ViewerError

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float


class SkippedFile(ViewerError):
    """A file that is not a displayable DICOM image; ``why`` says which of the known reasons applies."""


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
class InstanceHeader:
    """Everything about one file that indexing, stack splitting and loading need, without its pixels."""

    path: str
    size: int
    mtime_ns: int
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

    @property
    def is_colour(self) -> bool:
        return self.samples_per_pixel == 3 or self.photometric_interpretation == "PALETTE COLOR"

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> InstanceHeader:
        data = json.loads(text)
        data["image_type"] = tuple(data.get("image_type") or ())
        data["frames"] = tuple(_frame_from_dict(f) for f in data.get("frames") or ())
        return cls(**data)


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


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        if value in (None, ""):
            return None
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        if value is None:
            return None
        out = tuple(float(v) for v in value)
        return out if len(out) == n else None
    except (TypeError, ValueError):
        return None


def _frame_from_groups(groups: list[Dataset]) -> FrameGeometry:
    """Merge per-frame and shared functional groups (per-frame listed first wins)."""
    position = orientation = spacing = None
    thickness: float | None = None
    stack_id: str | None = None
    in_stack: int | None = None
    temporal: int | None = None
    for group in groups:
        if group is None:
            continue
        if position is None and "PlanePositionSequence" in group and group.PlanePositionSequence:
            position = _floats(group.PlanePositionSequence[0].get("ImagePositionPatient"), 3)
        if orientation is None and "PlaneOrientationSequence" in group and group.PlaneOrientationSequence:
            orientation = _floats(group.PlaneOrientationSequence[0].get("ImageOrientationPatient"), 6)
        if "PixelMeasuresSequence" in group and group.PixelMeasuresSequence:
            pm = group.PixelMeasuresSequence[0]
            if spacing is None:
                spacing = _floats(pm.get("PixelSpacing"), 2)
            if thickness is None:
                thickness = _float(pm.get("SliceThickness"))
        if "FrameContentSequence" in group and group.FrameContentSequence:
            fc = group.FrameContentSequence[0]
            if stack_id is None and fc.get("StackID") not in (None, ""):
                stack_id = str(fc.StackID)
            if in_stack is None:
                in_stack = _int(fc, "InStackPositionNumber")
            if temporal is None:
                temporal = _int(fc, "TemporalPositionIndex")
    return FrameGeometry(position, orientation, spacing, thickness, stack_id, in_stack, temporal)


def _frames(ds: Dataset, n_frames: int) -> tuple[FrameGeometry, ...]:
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == n_frames:
        shared_group = shared[0] if shared else None
        return tuple(_frame_from_groups([pf, shared_group]) for pf in per_frame)
    top = FrameGeometry(
        position=_floats(ds.get("ImagePositionPatient"), 3),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2),
        slice_thickness=_float(ds.get("SliceThickness")),
    )
    if n_frames == 1:
        return (top,)
    # Classic multi-frame without functional groups: frames stacked along the normal by SpacingBetweenSlices
    # or an explicit frame increment; positions are derived by the loader, not guessed here.
    return tuple(
        FrameGeometry(None, top.orientation, top.pixel_spacing, top.slice_thickness) for _ in range(n_frames)
    )


def _check_truncated(ds: Dataset, path: str, size: int) -> None:
    for tag in PIXEL_DATA_TAGS:
        if tag in ds:
            raw = ds.get_item(tag)
            length = getattr(raw, "length", None)
            tell = getattr(raw, "value_tell", None)
            if length is not None and tell is not None and length != 0xFFFFFFFF and tell + length > size:
                raise SkippedFile("Skipped file", "truncated: the file ends inside its pixel data", path)
            return
    raise SkippedFile("Skipped file", "no pixel data (not an image)", path)


def header_from_dataset(ds: Dataset, path: str, size: int, mtime_ns: int) -> InstanceHeader:
    """Build an :class:`InstanceHeader` from an already parsed dataset (pixel data may be deferred)."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    sop_class = _str(ds, "SOPClassUID") or (_str(meta, "MediaStorageSOPClassUID") if meta is not None else "")
    sop_uid = _str(ds, "SOPInstanceUID") or (
        _str(meta, "MediaStorageSOPInstanceUID") if meta is not None else ""
    )
    n_frames = _int(ds, "NumberOfFrames") or 1
    rows, cols = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    if rows <= 0 or cols <= 0:
        raise SkippedFile("Skipped file", "image has no rows/columns", path)
    image_type = ds.get("ImageType") or ()
    if isinstance(image_type, str):
        image_type = image_type.split("\\")
    return InstanceHeader(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax_uid=tsyntax,
        patient_name=_str(ds, "PatientName"),
        patient_id=_str(ds, "PatientID"),
        patient_birth_date=_str(ds, "PatientBirthDate"),
        patient_sex=_str(ds, "PatientSex"),
        study_instance_uid=_str(ds, "StudyInstanceUID"),
        study_date=_str(ds, "StudyDate"),
        study_time=_str(ds, "StudyTime"),
        study_description=_str(ds, "StudyDescription"),
        accession_number=_str(ds, "AccessionNumber"),
        series_instance_uid=_str(ds, "SeriesInstanceUID"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_str(ds, "SeriesDescription"),
        modality=_str(ds, "Modality"),
        frame_of_reference_uid=_str(ds, "FrameOfReferenceUID"),
        instance_number=_int(ds, "InstanceNumber"),
        acquisition_number=_int(ds, "AcquisitionNumber"),
        echo_number=_float(ds.get("EchoNumbers")),
        image_type=tuple(str(v).strip().upper() for v in image_type),
        rows=rows,
        columns=cols,
        number_of_frames=n_frames,
        samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
        photometric_interpretation=_str(ds, "PhotometricInterpretation").upper(),
        bits_allocated=_int(ds, "BitsAllocated") or 0,
        pixel_representation=_int(ds, "PixelRepresentation") or 0,
        window_center=_float(ds.get("WindowCenter")),
        window_width=_float(ds.get("WindowWidth")),
        rescale_slope=_float(ds.get("RescaleSlope")),
        rescale_intercept=_float(ds.get("RescaleIntercept")),
        frames=_frames(ds, n_frames),
    )


def read_header(path: str | os.PathLike[str]) -> InstanceHeader:
    """Read one file's header without decoding pixels.

    Raises
    ------
    SkippedFile
        With the reason: not DICOM, truncated, no pixel data or unreadable header.
    """
    p = str(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise SkippedFile("Skipped file", f"cannot be read ({exc.strerror})", p) from None
    try:
        # defer_size keeps large values (the pixel data) on disk while recording where they sit, so a
        # truncated file can be recognised from the header alone. The preamble is only ever parsed as DICOM.
        ds = pydicom.dcmread(p, defer_size=1024, force=False)
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(p, defer_size=1024, force=True)
        except Exception:
            raise SkippedFile("Skipped file", "not DICOM", p) from None
        if "SOPClassUID" not in ds and "PixelData" not in ds:
            raise SkippedFile("Skipped file", "not DICOM", p) from None
    except (EOFError, OSError) as exc:
        raise SkippedFile("Skipped file", f"truncated or unreadable header ({exc})", p) from None
    except Exception as exc:  # pydicom raises many types for malformed headers
        raise SkippedFile("Skipped file", f"unreadable header ({type(exc).__name__}: {exc})", p) from None
    try:
        _check_truncated(ds, p, st.st_size)
        return header_from_dataset(ds, p, st.st_size, st.st_mtime_ns)
    except SkippedFile:
        raise
    except Exception as exc:
        raise SkippedFile("Skipped file", f"unreadable header ({type(exc).__name__}: {exc})", p) from None


def is_dicomdir(path: str | os.PathLike[str]) -> bool:
    return Path(path).name.upper() == "DICOMDIR"
