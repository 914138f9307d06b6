"""The report as a DICOM Encapsulated PDF instance, for the archive: same study, a new "DOC" series.

Modules of the Encapsulated PDF IOD (PS3.3 A.45.1): Patient, General Study, Encapsulated Document Series,
General Equipment, SC Equipment, Encapsulated Document, SOP Common. The study is the analysed series' study
(its pseudonymised UID when the report is de-identified, the same one the PDF shows); the series and instance
are new. A de-identified instance says so (Patient Identity Removed, De-identification Method) and carries no
dates.
"""

from __future__ import annotations

from datetime import datetime
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from viewer import __version__
from viewer.report.api import Report
from viewer.report.deidentify import BASIC_PROFILE_CODE, METHOD
from viewer.report.output import check_output_path, write_atomic

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SERIES_DESCRIPTION = "GRU Viewer report"
DOCUMENT_TITLE = "GRU Viewer head CT analysis report"
#: LOINC 18748-4 "Diagnostic imaging study" is the usual concept name of an imaging report document.
CONCEPT_NAME = ("18748-4", "LN", "Diagnostic imaging study")
REPORT_SERIES_BASE = 9000


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def report_series_number(source_series_number: str) -> int:
    """9000 + the analysed series' number (9000 when it has none), so the report sorts after the images."""
    try:
        number = int(source_series_number)
    except ValueError:
        return REPORT_SERIES_BASE
    return REPORT_SERIES_BASE + number if 0 <= number < 1000 else REPORT_SERIES_BASE


def encapsulated_pdf(report: Report, *, created: datetime | None = None) -> Dataset:
    """The report as an Encapsulated PDF dataset (file meta included), ready to write."""
    ids = report.identifiers
    de = ids.deidentified
    created = created or report.generated_at
    sop_uid = generate_uid()

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    if not de:
        ds.InstanceCreationDate = created.strftime("%Y%m%d")
        ds.InstanceCreationTime = created.strftime("%H%M%S")
        offset = created.strftime("%z")
        if offset:
            ds.TimezoneOffsetFromUTC = offset

    # Patient (Type 2 attributes present, empty when unknown or removed)
    ds.PatientName = ids.patient_name
    ds.PatientID = ids.patient_id
    ds.PatientBirthDate = ids.patient_birth_date
    ds.PatientSex = ids.patient_sex if ids.patient_sex in ("M", "F", "O") else ""
    if de:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        ds.DeidentificationMethodCodeSequence = Sequence([_code(*BASIC_PROFILE_CODE)])
        ds.LongitudinalTemporalInformationModified = "REMOVED"  # SOP Common: the dates are gone

    # General Study
    ds.StudyInstanceUID = ids.study_uid or generate_uid()
    ds.StudyDate = ids.study_date
    ds.StudyTime = ids.study_time
    ds.ReferringPhysicianName = ids.referring_physician
    ds.StudyID = ids.study_id
    ds.AccessionNumber = ids.accession_number
    if ids.study_description:
        ds.StudyDescription = ids.study_description

    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = report_series_number(ids.series_number)
    ds.SeriesDescription = SERIES_DESCRIPTION

    # General Equipment, SC Equipment
    ds.Manufacturer = "GRU Viewer"
    ds.ManufacturerModelName = "GRU Viewer"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"

    # Encapsulated Document
    ds.InstanceNumber = 1
    ds.ContentDate = "" if de else created.strftime("%Y%m%d")
    ds.ContentTime = "" if de else created.strftime("%H%M%S")
    ds.AcquisitionDateTime = "" if de else created.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"
    ds.DocumentTitle = DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = Sequence([_code(*CONCEPT_NAME)])
    ds.VerificationFlag = "UNVERIFIED"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    if ids.source_sop_uids:
        sources = []
        for uid in ids.source_sop_uids:
            item = Dataset()
            item.ReferencedSOPClassUID = ids.source_sop_class_uid or CT_IMAGE_STORAGE
            item.ReferencedSOPInstanceUID = uid
            sources.append(item)
        ds.SourceInstanceSequence = Sequence(sources)
    pdf = report.pdf
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")  # OB values have even length

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = f"GRUVIEWER_{__version__}"[:16]
    ds.file_meta = meta
    return ds


def save_dicom(report: Report, folder: str | Path) -> Path:
    """Write the report as ``<SOP Instance UID>.dcm`` in ``folder`` (created if needed); returns the file.

    Refuses a folder inside the analysed series' folder.
    """
    target_dir = check_output_path(folder, folders=report.source_folders)
    ds = encapsulated_pdf(report)
    path = target_dir / f"{ds.SOPInstanceUID}.dcm"
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    write_atomic(path, buffer.getvalue())
    return path
