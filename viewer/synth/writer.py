"""Write HU volumes as real CT Image Storage series, and the slice geometry scanners write with them.

Used by the phantom generator and by tests that need DICOM on disk with known pixels and geometry: any layout a
loader must cope with (gantry tilt, feet-first order, MONOCHROME1, compressed transfer syntaxes) can be written
from a plain HU array.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from viewer import __version__
from viewer.errors import ViewerError

UNCOMPRESSED_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
# Lossless only: written pixels must read back as the same HU.
COMPRESSED_SYNTAXES = (RLELossless, JPEG2000Lossless, JPEGLSLossless)


@dataclass(frozen=True, slots=True)
class SeriesMeta:
    """Patient, study, series and equipment attributes shared by every slice of one series.

    Dates are ``YYYYMMDD`` and times ``HHMMSS`` strings, as DICOM writes them. SOP Instance UIDs are derived
    from ``series_uid`` and the slice index, so a series written twice from the same meta has the same UIDs.
    """

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    series_uid: str
    series_number: int
    series_description: str
    frame_of_reference_uid: str
    study_id: str = "1"
    patient_age: str = ""
    institution: str = "GRU Viewer Phantom Lab"
    manufacturer: str = "GRU Viewer"
    model_name: str = "Phantom CT"
    station_name: str = "PHANTOM01"
    software_versions: str = f"gru-viewer {__version__}"
    referring_physician: str = ""
    body_part: str = "HEAD"
    patient_position: str = "HFS"
    kvp: float = 120.0
    tube_current_ma: int = 300
    exposure_time_ms: int = 1000
    convolution_kernel: str = "H30s"
    image_comments: str = ""

    @classmethod
    def invented(
        cls,
        patient_name: str,
        patient_id: str,
        series_description: str,
        *,
        series_number: int = 1,
        **fields: object,
    ) -> SeriesMeta:
        """Meta for a made-up series (tests, benchmarks) with fresh Study, Series and Frame of Reference UIDs."""
        defaults: dict[str, object] = {
            "birth_date": "19700101",
            "sex": "O",
            "study_date": "20240101",
            "study_time": "120000",
            "study_description": "CT HEAD",
            "accession_number": "",
            "study_uid": generate_uid(),
            "series_uid": generate_uid(),
            "frame_of_reference_uid": generate_uid(),
        }
        defaults.update(fields)
        return cls(
            patient_name=patient_name,
            patient_id=patient_id,
            series_description=series_description,
            series_number=series_number,
            **defaults,  # type: ignore[arg-type]
        )


def axial_geometry(
    n_slices: int,
    spacing_z: float,
    pixel_spacing: tuple[float, float],
    matrix: int | tuple[int, int],
    origin: Sequence[float] | None = None,
    tilt_deg: float = 0.0,
    feet_first: bool = False,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """ImagePositionPatient per slice and ImageOrientationPatient of an axial series, as a scanner writes them.

    Parameters
    ----------
    n_slices:
        Number of slices.
    spacing_z:
        Table increment between slices along patient z (mm). Without tilt this is the slice spacing; with a
        gantry tilt the spacing along the slice normal is ``spacing_z * cos(tilt)``.
    pixel_spacing:
        (row spacing, column spacing) in mm, the order of DICOM PixelSpacing.
    matrix:
        Rows and columns, or one number for a square image.
    origin:
        ImagePositionPatient (top-left pixel centre) of the most inferior slice. By default the image centres
        lie on the patient z axis and the most inferior slice centre is at z = 0.
    tilt_deg:
        Gantry tilt. The column direction tilts in the y-z plane (anterior rows lie higher for a positive
        tilt) while positions keep stepping along patient z, so the step between slices is not parallel to
        the slice normal.
    feet_first:
        Return positions from the most superior slice down, the order of a series scanned from the vertex.

    Returns
    -------
    positions:
        (n_slices, 3) float64 ImagePositionPatient in mm (patient LPS), in the order the slices are written.
    orientation:
        The six direction cosines: row direction then column direction.
    """
    rows, cols = (matrix, matrix) if isinstance(matrix, int) else matrix
    t = math.radians(tilt_deg)
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, math.cos(t), -math.sin(t)])
    dy, dx = pixel_spacing
    steps = np.arange(n_slices, dtype=np.float64)[:, None] * np.array([0.0, 0.0, float(spacing_z)])
    if origin is None:
        first = -row_dir * (cols - 1) / 2.0 * dx - col_dir * (rows - 1) / 2.0 * dy
    else:
        first = np.asarray(origin, dtype=np.float64)
    positions = first[None, :] + steps
    if feet_first:
        positions = positions[::-1].copy()
    orientation = tuple(float(v) for v in (*row_dir, *col_dir))
    return positions, orientation


def encoder_available(transfer_syntax: str) -> bool:
    """Whether :func:`write_ct_series` can write this transfer syntax with the packages installed here."""
    if transfer_syntax in UNCOMPRESSED_SYNTAXES:
        return True
    if transfer_syntax not in COMPRESSED_SYNTAXES:
        return False
    return bool(get_encoder(transfer_syntax).is_available)


def sop_instance_uid(series_uid: str, index: int) -> UID:
    """Deterministic SOP Instance UID of slice ``index`` of a series (a hash of the series UID and index)."""
    return generate_uid(entropy_srcs=[str(series_uid), "instance", str(index)])


def _decimal_string(value: float) -> str:
    """The most precise DS text of a number that fits the 16 characters DS allows."""
    for digits in range(12, 0, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value!r} does not fit a DICOM decimal string")


def _plain_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "series"


def series_folder_name(meta: SeriesMeta) -> str:
    """``<SeriesNumber>_<description>`` with everything but letters, digits and ``.+-`` turned into ``_``."""
    return f"{meta.series_number}_{_plain_name(meta.series_description)}"


def _stored_values(
    hu: np.ndarray, intercept: float, slope: float, photometric: str
) -> tuple[np.ndarray, int, float, float]:
    """Stored uint16 pixels, BitsStored, and the rescale intercept and slope to write.

    MONOCHROME1 stores ``max - value``; the written rescale is changed to match (negative slope) so the
    modality LUT still gives the same HU, and only the display polarity differs.
    """
    if slope == 0:
        raise ValueError("rescale_slope must not be zero")
    raw = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    raw = np.clip(raw, 0, 65535)
    bits_stored = 12 if raw.max(initial=0) <= 4095 else 16
    stored = raw.astype(np.uint16)
    if photometric == "MONOCHROME2":
        return stored, bits_stored, intercept, slope
    if photometric == "MONOCHROME1":
        top = (1 << bits_stored) - 1
        return (top - stored).astype(np.uint16), bits_stored, intercept + slope * top, -slope
    raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, not {photometric!r}")


def _tilt_of(orientation: Sequence[float]) -> float:
    col = orientation[3:6]
    return math.degrees(math.atan2(-float(col[2]), float(col[1]))) if abs(orientation[0]) > 0.99 else 0.0


def _base_dataset(meta: SeriesMeta) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = meta.study_date
    ds.SeriesDate = meta.study_date
    ds.AcquisitionDate = meta.study_date
    ds.ContentDate = meta.study_date
    ds.StudyTime = meta.study_time
    ds.SeriesTime = meta.study_time
    ds.AcquisitionTime = meta.study_time
    ds.ContentTime = meta.study_time
    ds.AccessionNumber = meta.accession_number
    ds.Modality = "CT"
    ds.Manufacturer = meta.manufacturer
    ds.InstitutionName = meta.institution
    ds.ReferringPhysicianName = meta.referring_physician
    ds.StationName = meta.station_name
    ds.StudyDescription = meta.study_description
    ds.SeriesDescription = meta.series_description
    ds.ManufacturerModelName = meta.model_name
    ds.PatientName = meta.patient_name
    ds.PatientID = meta.patient_id
    ds.PatientBirthDate = meta.birth_date
    ds.PatientSex = meta.sex
    if meta.patient_age:
        ds.PatientAge = meta.patient_age
    ds.BodyPartExamined = meta.body_part
    ds.KVP = _decimal_string(meta.kvp)
    ds.SoftwareVersions = meta.software_versions
    ds.ConvolutionKernel = meta.convolution_kernel
    ds.PatientPosition = meta.patient_position
    ds.XRayTubeCurrent = meta.tube_current_ma
    ds.ExposureTime = meta.exposure_time_ms
    ds.StudyInstanceUID = meta.study_uid
    ds.SeriesInstanceUID = meta.series_uid
    ds.StudyID = meta.study_id
    ds.SeriesNumber = meta.series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = meta.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.RescaleType = "HU"
    if meta.image_comments:
        ds.ImageComments = meta.image_comments
    return ds


def write_ct_series(
    hu: np.ndarray,
    out_dir: Path,
    *,
    positions: np.ndarray,
    orientation: Sequence[float],
    pixel_spacing: tuple[float, float],
    slice_thickness: float,
    meta: SeriesMeta,
    file_names: Sequence[str] | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    window: tuple[float, float] | None = (40.0, 80.0),
) -> list[Path]:
    """Write a (z, y, x) HU volume as one CT Image Storage series, one file per slice.

    Parameters
    ----------
    hu:
        (z, y, x) Hounsfield units; slice ``k`` is written with ``positions[k]`` and InstanceNumber ``k + 1``.
    out_dir:
        Folder for the files; created if missing. Files of the same names are overwritten.
    positions, orientation, pixel_spacing:
        ImagePositionPatient per slice (z, 3), ImageOrientationPatient (6 cosines), PixelSpacing (row, col).
    slice_thickness:
        SliceThickness in mm.
    meta:
        Patient, study and series attributes.
    file_names:
        One plain file name per slice; ``IM0001.dcm``, ``IM0002.dcm``, ... by default.
    photometric:
        ``MONOCHROME2`` stores ``round((hu - intercept) / slope)``. ``MONOCHROME1`` stores the inverted values
        ``2**BitsStored - 1 - that`` and writes the rescale that maps them back to the same HU (slope negated,
        intercept shifted), so HU read through the modality LUT are unchanged and only the display inverts.
    transfer_syntax:
        Explicit or implicit VR little endian, deflated explicit VR little endian, or a lossless compressed
        syntax whose encoder is installed (see :func:`encoder_available`: RLE Lossless and JPEG 2000 Lossless
        here; JPEG-LS needs pyjpegls).
    rescale_intercept, rescale_slope:
        Modality rescale. Values outside what 16 unsigned bits can hold are clipped; BitsStored is 12 when
        every stored value fits in 12 bits, otherwise 16.
    window:
        (WindowCenter, WindowWidth), or None to write no VOI window.

    Returns
    -------
    list[Path]
        The written files, in slice order.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"hu must be (z, y, x), got shape {hu.shape}")
    positions = np.asarray(positions, dtype=np.float64)
    n, rows, cols = hu.shape
    if positions.shape != (n, 3):
        raise ValueError(f"positions must be ({n}, 3), got {positions.shape}")
    if len(orientation) != 6:
        raise ValueError("orientation must hold 6 direction cosines")
    names = [f"IM{k + 1:04d}.dcm" for k in range(n)] if file_names is None else list(file_names)
    if len(names) != n:
        raise ValueError(f"{len(names)} file names for {n} slices")
    if any(Path(name).name != name or name in ("", ".", "..") for name in names):
        raise ValueError("file names must be plain names inside out_dir")
    transfer_syntax = UID(transfer_syntax)
    if not encoder_available(transfer_syntax):
        raise ViewerError(
            "Cannot write DICOM",
            f"no encoder for transfer syntax {transfer_syntax.name} is installed here",
            str(out_dir),
        )
    compressed = transfer_syntax in COMPRESSED_SYNTAXES

    stored, bits_stored, intercept, slope = _stored_values(hu, rescale_intercept, rescale_slope, photometric)
    orientation = [float(v) for v in orientation]
    normal = np.cross(orientation[:3], orientation[3:6])
    tilt = _tilt_of(orientation)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    template = _base_dataset(meta)
    template.PhotometricInterpretation = photometric
    template.Rows = rows
    template.Columns = cols
    template.BitsStored = bits_stored
    template.HighBit = bits_stored - 1
    template.PixelSpacing = [_decimal_string(pixel_spacing[0]), _decimal_string(pixel_spacing[1])]
    template.ImageOrientationPatient = [_decimal_string(v) for v in orientation]
    template.SliceThickness = _decimal_string(slice_thickness)
    template.RescaleIntercept = _decimal_string(intercept)
    template.RescaleSlope = _decimal_string(slope)
    template.GantryDetectorTilt = _decimal_string(round(tilt, 4))
    template.ReconstructionDiameter = _decimal_string(
        round(max(rows * pixel_spacing[0], cols * pixel_spacing[1]), 3)
    )
    if n > 1:
        step = float(np.median(np.abs(np.diff(positions @ normal))))
        template.SpacingBetweenSlices = _decimal_string(round(step, 4))
    if window is not None:
        template.WindowCenter = _decimal_string(window[0])
        template.WindowWidth = _decimal_string(window[1])
        template.WindowCenterWidthExplanation = "BRAIN"

    paths: list[Path] = []
    for k in range(n):
        ds = copy.deepcopy(template)
        sop_uid = sop_instance_uid(meta.series_uid, k)
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_decimal_string(round(v, 4)) for v in positions[k]]
        ds.SliceLocation = _decimal_string(round(float(positions[k] @ normal), 4))
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if compressed else transfer_syntax
        ds.PixelData = stored[k].tobytes()
        if compressed:
            ds.compress(transfer_syntax, stored[k], generate_instance_uid=False)
        path = out_dir / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
