"""Who and what a report is about: the patient, study and series identifiers, gathered once from a volume.

The report shows these and the DICOM export writes them, so both read the same :class:`ReportIdentifiers`
(de-identified by :func:`viewer.report.deidentify.deidentify` when asked). Values are kept as DICOM writes them
(dates ``YYYYMMDD``, names ``Family^Given``); :mod:`viewer.dicom.identifiers` formats them for people.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Study-level attributes the volume's metadata does not carry, read from the first source file's header.
_EXTRA_KEYWORDS = (
    "SOPClassUID",
    "StudyID",
    "ReferringPhysicianName",
    "StudyTime",
    "FrameOfReferenceUID",
)


@dataclass(frozen=True)
class ReportIdentifiers:
    """Patient, study and series attributes of the analysed series (empty string where unknown)."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_uid: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    referring_physician: str = ""
    institution: str = ""
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    modality: str = ""
    n_slices: int = 0
    slice_thickness_mm: float | None = None
    spacing_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    matrix: tuple[int, int] = (0, 0)
    source_sop_class_uid: str = ""
    source_sop_uids: tuple[str, ...] = ()
    deidentified: bool = False


def _source_header(volume: Any) -> dict[str, str]:
    """The few study attributes only the files hold, from the first slice's header (pixels never read)."""
    sources = getattr(volume, "sources", None) or []
    if not sources:
        return {}
    path = Path(sources[0][0])
    if not path.is_file():
        return {}
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_EXTRA_KEYWORDS))
    except Exception as exc:  # any parse failure only loses optional attributes
        log.info("could not re-read the first slice's header for the report (%s)", type(exc).__name__)
        return {}
    return {k: str(ds.get(k, "") or "").strip() for k in _EXTRA_KEYWORDS}


def identifiers_from_volume(volume: Any) -> ReportIdentifiers:
    """Gather the identifiers of a loaded :class:`~viewer.dicom.volume.Volume` (its ``identifiers`` and first file)."""
    ids = volume.identifiers
    extra = _source_header(volume)
    shape = tuple(int(s) for s in volume.array.shape)
    thickness = getattr(volume, "slice_thickness", None)
    return ReportIdentifiers(
        patient_name=ids.patient_name,
        patient_id=ids.patient_id,
        patient_birth_date=ids.patient_birth_date,
        patient_sex=ids.patient_sex,
        study_uid=str(volume.study_uid or ""),
        study_id=extra.get("StudyID", ""),
        study_date=ids.study_date,
        study_time=ids.study_time or extra.get("StudyTime", ""),
        study_description=ids.study_description,
        accession_number=ids.accession_number,
        referring_physician=extra.get("ReferringPhysicianName", ""),
        institution=ids.institution,
        series_uid=str(volume.series_uid or ""),
        series_number=ids.series_number,
        series_description=ids.series_description,
        modality=str(getattr(volume, "modality", "") or ""),
        n_slices=shape[0],
        slice_thickness_mm=float(thickness) if thickness else None,
        spacing_mm=tuple(float(s) for s in volume.spacing),  # type: ignore[arg-type]
        matrix=(shape[1], shape[2]),
        source_sop_class_uid=extra.get("SOPClassUID", ""),
        source_sop_uids=tuple(str(u) for u in getattr(volume, "sop_uids", []) or []),
    )
