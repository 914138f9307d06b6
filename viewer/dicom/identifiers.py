"""Who and what a loaded series shows: the patient, study and series identifiers, read once from its headers.

Values are kept as DICOM writes them (dates ``YYYYMMDD``, names ``Family^Given``); formatting for people is the
caller's. The UIDs and the modality travel on :class:`~viewer.dicom.volume.Volume` itself.
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
