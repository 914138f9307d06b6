"""What a study search asks and what it answers: the same rows whether a C-FIND or a QIDO-RS query ran."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from viewer.errors import ViewerError

DEFAULT_LIMIT = 500


def dicom_date(text: str | None, what: str) -> str:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` as a DICOM DA (``""`` for none).

    Raises
    ------
    ViewerError
        Not a date in either form.
    """
    if not text:
        return ""
    digits = text.replace("-", "")
    if not re.fullmatch(r"\d{8}", digits) or not (1 <= int(digits[4:6]) <= 12 and 1 <= int(digits[6:]) <= 31):
        raise ViewerError(f"Invalid {what}", f"{text!r}; write YYYY-MM-DD")
    return digits


@dataclass(frozen=True, slots=True)
class StudyQuery:
    """Filters of a study search; empty fields match everything. ``patient_name`` may hold ``*`` and ``?``."""

    patient_id: str = ""
    patient_name: str = ""
    date_from: str = ""  # DICOM DA
    date_to: str = ""
    accession: str = ""
    modality: str = ""

    @property
    def date_range(self) -> str:
        """The StudyDate matching value: a single date, an open or closed range, or ``""``."""
        if not self.date_from and not self.date_to:
            return ""
        if self.date_from and self.date_from == self.date_to:
            return self.date_from
        return f"{self.date_from}-{self.date_to}"


#: Return keys of a STUDY-level search (DICOM keyword → StudyRow field).
STUDY_KEYS = {
    "StudyInstanceUID": "study_uid",
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "birth_date",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "AccessionNumber": "accession",
    "StudyDescription": "description",
    "ModalitiesInStudy": "modalities",
    "NumberOfStudyRelatedSeries": "n_series",
    "NumberOfStudyRelatedInstances": "n_instances",
}
SERIES_KEYS = {
    "SeriesInstanceUID": "series_uid",
    "Modality": "modality",
    "SeriesNumber": "number",
    "SeriesDescription": "description",
    "NumberOfSeriesRelatedInstances": "n_instances",
}


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One study found (counts are None when the PACS does not give them)."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """One series found."""

    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    n_instances: int | None = None


@dataclass(slots=True)
class QueryResult:
    """The rows found; ``capped`` when the search stopped at ``limit`` rows and more matched."""

    rows: list[Any] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    capped: bool = False


def _value(ds: Dataset, keyword: str) -> Any:
    elem = ds.get(keyword)
    return None if elem is None else elem


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _multi(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.split("\\") if v)
    return tuple(str(v) for v in value)


def study_row(ds: Dataset) -> StudyRow:
    """A STUDY-level answer (C-FIND identifier or a QIDO JSON dataset read by pydicom) as a row."""
    return StudyRow(
        study_uid=_plain(_value(ds, "StudyInstanceUID")),
        patient_id=_plain(_value(ds, "PatientID")),
        patient_name=_plain(_value(ds, "PatientName")),
        birth_date=_plain(_value(ds, "PatientBirthDate")),
        study_date=_plain(_value(ds, "StudyDate")),
        study_time=_plain(_value(ds, "StudyTime")),
        accession=_plain(_value(ds, "AccessionNumber")),
        description=_plain(_value(ds, "StudyDescription")),
        modalities=_multi(_value(ds, "ModalitiesInStudy")),
        n_series=_int(_value(ds, "NumberOfStudyRelatedSeries")),
        n_instances=_int(_value(ds, "NumberOfStudyRelatedInstances")),
    )


def series_row(ds: Dataset) -> SeriesRow:
    """A SERIES-level answer as a row."""
    return SeriesRow(
        series_uid=_plain(_value(ds, "SeriesInstanceUID")),
        modality=_plain(_value(ds, "Modality")),
        number=_int(_value(ds, "SeriesNumber")),
        description=_plain(_value(ds, "SeriesDescription")),
        n_instances=_int(_value(ds, "NumberOfSeriesRelatedInstances")),
    )


def _date(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) >= 8 and da[:8].isdigit() else da


def format_studies(result: QueryResult) -> str:
    """The study rows as a table, with a line saying when the list was capped."""
    lines = []
    for r in result.rows:
        counts = f"{r.n_series if r.n_series is not None else '?'} series, {r.n_instances if r.n_instances is not None else '?'} images"
        lines.append(
            f"{_date(r.study_date):10}  {r.patient_id:12}  {r.patient_name:24}  {r.accession:10}  "
            f"{'/'.join(r.modalities):6}  {counts:22}  {r.description}\n    {r.study_uid}"
        )
    lines.append(_count_line(result, "stud", ("y", "ies")))
    return "\n".join(lines)


def format_series(result: QueryResult) -> str:
    """The series rows as a table."""
    lines = [
        f"{r.number if r.number is not None else '':>4}  {r.modality:4}  {r.n_instances if r.n_instances is not None else '?':>5} images  "
        f"{r.description}\n    {r.series_uid}"
        for r in result.rows
    ]
    lines.append(_count_line(result, "series", ("", "")))
    return "\n".join(lines)


def _count_line(result: QueryResult, stem: str, endings: tuple[str, str]) -> str:
    n = len(result.rows)
    word = stem + (endings[0] if n == 1 else endings[1])
    if result.capped:
        return f"{n} {word} shown: capped at {result.limit}, more match (narrow the search)"
    return f"{n} {word} found"
