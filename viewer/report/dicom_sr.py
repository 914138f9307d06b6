"""The finding as a DICOM Comprehensive SR (TID 1500 Measurement Report), and the same read back.

One measurement group (TID 1501) holds the finding as a qualitative evaluation (intracranial haemorrhage:
present / absent; indeterminate when the series is outside the model's intended use, where the finding is
withheld), the study probability and the operating threshold as measurements (a probability and a threshold
have no unit: UCUM ``1``), the algorithm (TID 4019: model name, version and the weights' SHA-256 as a parameter)
and the key slices as its source images. A PACS viewer shows it as text; :func:`read_finding` gives it back to
software.

The reader's measurements, when there are any, follow as TID 1410 planar ROI groups
(:mod:`viewer.report.dicom_measurements`). Their regions are 3-D coordinates in the patient (a reformat is no
stored image), which only a Comprehensive 3D SR may hold, so an SR with measurements is one; without, it stays a
Comprehensive SR, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
from highdicom.sr.utils import find_content_items
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage, generate_uid

from viewer import __version__
from viewer.report.dicom_measurements import SRMeasurement, read_measurements

SERIES_DESCRIPTION = "GRU Viewer finding (SR)"
MANUFACTURER = "GRU Viewer"
SHA_PARAMETER = "weights sha256="
FINDING = codes.SCT.IntracranialHemorrhage
PROBABILITY = codes.DCM.Probability
THRESHOLD = codes.DCM.ThresholdValue
NO_UNIT = codes.UCUM.NoUnits
_VALUES = {True: codes.SCT.Present, False: codes.SCT.Absent, None: codes.SCT.Indeterminate}


def algorithm_identification(model: Any) -> hd.sr.AlgorithmIdentification:
    """TID 4019 for the model that made ``result`` (its name, version and weights hash)."""
    return hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        parameters=[f"{SHA_PARAMETER}{model.sha256}"],
        family=codes.DCM.ArtificialIntelligence,
        manufacturer=MANUFACTURER,
    )


def finding_sr(
    result: Any,
    key_headers: Sequence[Dataset],
    *,
    series_number: int,
    series_uid: str | None = None,
    measurement_groups: Sequence[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations] = (),
    measurement_evidence: Sequence[Dataset] = (),
) -> hd.sr.ComprehensiveSR | hd.sr.Comprehensive3DSR:
    """The Comprehensive SR of ``result`` (an :class:`~viewer.analysis.result.AnalysisResult`) in the study of
    ``key_headers``, the key slices' own headers (most telling first), which it cites as source images.

    With ``measurement_groups`` (:func:`~viewer.report.dicom_measurements.volume_measurement_groups`) it is a
    Comprehensive 3D SR that holds them after the finding; ``measurement_evidence`` are the headers of the images
    they cite."""
    if not key_headers:
        raise ValueError("a structured report needs at least one source image")
    algorithm = algorithm_identification(result.model)
    present = bool(result.positive) if result.assessed else None
    measurements = [
        hd.sr.Measurement(name=THRESHOLD, value=float(result.threshold), unit=NO_UNIT, algorithm_id=algorithm)
    ]
    if result.assessed:
        measurements.insert(
            0,
            hd.sr.Measurement(
                name=PROBABILITY, value=float(result.probability), unit=NO_UNIT, algorithm_id=algorithm
            ),
        )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="GRU Viewer finding"),
        finding_type=FINDING,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=FINDING, value=_VALUES[present])],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in key_headers],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(),
            name="GRU Viewer",
            manufacturer_name=MANUFACTURER,
            model_name=result.model.name,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ComputedTomographyOfHead,
        imaging_measurements=[group, *measurement_groups],
    )
    kind = hd.sr.Comprehensive3DSR if measurement_groups else hd.sr.ComprehensiveSR
    keys = {str(ds.SOPInstanceUID) for ds in key_headers}
    evidence = [*key_headers, *(ds for ds in measurement_evidence if str(ds.SOPInstanceUID) not in keys)]
    sr = kind(
        evidence=evidence,
        content=report,
        series_instance_uid=series_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.SeriesDescription = SERIES_DESCRIPTION
    sr.SoftwareVersions = __version__
    return sr


@dataclass(frozen=True)
class SRFinding:
    """What a GRU Viewer SR says: ``present`` is None where the finding was withheld (not assessed)."""

    present: bool | None
    probability: float | None
    threshold: float | None
    model_name: str
    model_version: str
    weights_sha256: str
    source_sop_uids: tuple[str, ...]
    measurements: tuple[SRMeasurement, ...] = ()


def _texts(item: Dataset, name: Any) -> list[str]:
    return [str(c.value) for c in find_content_items(item, name=name, recursive=True)]


def read_finding(dataset: Dataset) -> SRFinding:
    """Read the finding back from a structured report :func:`finding_sr` wrote (or one read from a PACS), with
    the reader's measurements it holds."""
    three_d = dataset.get("SOPClassUID") == Comprehensive3DSRStorage
    sr = (hd.sr.Comprehensive3DSR if three_d else hd.sr.ComprehensiveSR).from_dataset(dataset)
    report = sr.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise ValueError("the structured report is not a TID 1500 measurement report")
    groups = report.get_image_measurement_groups()
    if not groups:
        raise ValueError("the measurement report holds no measurement group")
    group = groups[0]
    evaluation = next(e for e in group.get_qualitative_evaluations() if e.name == FINDING)
    value = evaluation.value
    present = True if value == codes.SCT.Present else False if value == codes.SCT.Absent else None
    numbers = {m.name: float(m.value) for m in group.get_measurements()}
    parameters = _texts(group[0], codes.DCM.AlgorithmParameters)
    sha = next((p.removeprefix(SHA_PARAMETER) for p in parameters if p.startswith(SHA_PARAMETER)), "")
    names = _texts(group[0], codes.DCM.AlgorithmName)
    versions = _texts(group[0], codes.DCM.AlgorithmVersion)
    return SRFinding(
        present=present,
        probability=numbers.get(PROBABILITY),
        threshold=numbers.get(THRESHOLD),
        model_name=names[0] if names else "",
        model_version=versions[0] if versions else "",
        weights_sha256=sha,
        source_sop_uids=tuple(str(s.referenced_sop_instance_uid) for s in group.source_images),
        measurements=tuple(read_measurements(report)),
    )
