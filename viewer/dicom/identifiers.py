"""Who and what a loaded series shows: the patient, study and series identifiers, read once from its headers.

Values are kept as DICOM writes them (dates ``YYYYMMDD``, names ``Family^Given``); the ``display_*`` functions are
the one place that formats them for people (browser, image view, report). The UIDs and the modality travel on
:class:`~viewer.dicom.volume.Volume` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from viewer.dicom.headers import InstanceHeader


@dataclass(frozen=True, slots=True)
class SeriesIdentifiers:
    """Patient, study and series attributes of one series (empty string where unknown).

    ``series_number`` is the SeriesNumber as text (empty when absent), as reports and file names use it.
    """

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_number: str = ""
    series_description: str = ""
    institution: str = ""

    @classmethod
    def from_header(cls, header: InstanceHeader, *, institution: str = "") -> SeriesIdentifiers:
        """The identifiers of the series ``header`` belongs to.

        Parameters
        ----------
        header:
            Any instance of the series (readers use the first slice's).
        institution:
            InstitutionName, which the index does not keep; readers take it from the opened file.
        """
        return cls(
            patient_name=header.patient_name,
            patient_id=header.patient_id,
            patient_birth_date=header.patient_birth_date,
            patient_sex=header.patient_sex,
            study_date=header.study_date,
            study_time=header.study_time,
            study_description=header.study_description,
            accession_number=header.accession_number,
            series_number="" if header.series_number is None else str(header.series_number),
            series_description=header.series_description,
            institution=institution,
        )


def display_date(value: str) -> str:
    """DA ``YYYYMMDD`` → ``YYYY-MM-DD`` (anything else unchanged)."""
    v = str(value or "").strip()
    if len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return v


def display_time(value: str) -> str:
    """TM ``HHMMSS[.ffffff]`` → ``HH:MM`` (anything else unchanged)."""
    v = str(value or "").strip().split(".")[0]
    if len(v) >= 4 and v[:4].isdigit():
        return f"{v[:2]}:{v[2:4]}"
    return v


def display_name(value: str) -> str:
    """PN ``Family^Given^Middle^Prefix^Suffix`` → ``Family, Given Middle``.

    Only the alphabetic component group (before the first ``=``) is shown; prefix and suffix are left out, so
    ``DOE^^^DR`` reads ``DOE``, not ``DOE, DR``.
    """
    alphabetic = str(value or "").split("=")[0]
    parts = [p.strip() for p in alphabetic.split("^")]
    family = parts[0] if parts else ""
    given = " ".join(p for p in parts[1:3] if p)
    if family and given:
        return f"{family}, {given}"
    return family or given


SEX_WORDS = {"M": "male", "F": "female", "O": "other"}


def display_sex(value: str) -> str:
    """CS ``M``/``F``/``O`` → a word (anything else unchanged)."""
    v = str(value or "").strip()
    return SEX_WORDS.get(v.upper(), v)
