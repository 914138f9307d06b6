"""Everything an analysis gives the archive, as DICOM in the source study: the report (Encapsulated PDF), the
finding (Comprehensive SR, TID 1500), the key images (Secondary Capture) and the pixel saliency (Segmentation).

Each kind is its own new series of the analysed series' study (new UIDs, series number 9000 + the source's) so a
PACS lists them beside the images. Only an identified report goes to the archive: a de-identified one belongs to
no patient there and would file a second, anonymous copy of the study.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from viewer.analysis.result import PixelMapFn
from viewer.dicom.reformat.annotations import Measurement
from viewer.errors import ViewerError
from viewer.report.api import Report
from viewer.report.dicom_export import encapsulated_pdf, report_series_number
from viewer.report.dicom_keyimages import key_image_captures
from viewer.report.dicom_measurements import volume_measurement_groups
from viewer.report.dicom_seg import DEFAULT_THRESHOLD, saliency_segmentation
from viewer.report.dicom_sources import single_frame, source_headers
from viewer.report.dicom_sr import finding_sr
from viewer.report.images import render_key_image
from viewer.report.output import check_output_path, write_atomic

_WHAT = "Cannot make the DICOM result objects"


@dataclass
class ResultObjects:
    """The datasets for the archive (report, SR, key images, segmentation; each ready to write or send) and what
    was left out, with why."""

    datasets: list[Dataset] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        """The Modality of each dataset (DOC, SR, OT, SEG), in order."""
        return [str(ds.get("Modality", "")) for ds in self.datasets]


def build_result_objects(
    volume: Any,
    result: Any,
    report: Report,
    *,
    pixel_map: PixelMapFn | None = None,
    scaling: str = "series",
    threshold: float = DEFAULT_THRESHOLD,
    measurements: Sequence[Measurement] = (),
) -> ResultObjects:
    """The archive's copy of ``result`` (an :class:`~viewer.analysis.result.AnalysisResult` on ``volume``) and
    its ``report``. ``pixel_map`` computes maps the result lacks (an open analysis session's); ``scaling`` and
    ``threshold`` are the overlay's, so the key images and the segmentation show what the screen showed;
    ``measurements`` (the reader's, on this series) go into the SR.

    Raises
    ------
    ViewerError
        The report is de-identified, the result belongs to another series, or the series' files are gone.
    """
    if report.anonymized:
        raise ViewerError(
            _WHAT, "the report is de-identified; only the identified report joins the study in the archive"
        )
    if not result.matches(volume):
        raise ViewerError(_WHAT, "the analysis result belongs to another series")
    key = [int(k) for k in result.key_slices]
    if not key:
        raise ViewerError(_WHAT, "the analysis named no key slices to cite")
    number = report_series_number(report.identifiers.series_number)
    key_headers = source_headers(volume, key)
    out = ResultObjects([encapsulated_pdf(report)])
    groups, cited = [], []
    reference = str(key_headers[0].get("FrameOfReferenceUID", ""))
    if measurements and not reference:
        out.left_out.append(
            "the measurements in the SR: the series has no frame of reference to place them in"
        )
    elif measurements:
        groups, cited = volume_measurement_groups(volume, measurements, reference)
    out.datasets.append(
        finding_sr(
            result,
            key_headers,
            series_number=number,
            measurement_groups=groups,
            measurement_evidence=cited,
        )
    )
    images = [render_key_image(volume, result, k, pixel_map=pixel_map, scaling=scaling) for k in key]
    out.datasets.extend(key_image_captures(volume, images, key_headers, series_number=number))
    maps = {}
    for k in key:
        m = result.pixel_saliency.get(k)
        if m is None and pixel_map is not None:
            m = pixel_map(k)
        if m is not None:
            maps[k] = m
    if not maps:
        out.left_out.append("the saliency segmentation: no key slice has a pixel saliency map")
    elif not single_frame(key_headers):
        out.left_out.append(
            "the saliency segmentation: it is made for one file per slice, and this series is multi-frame"
        )
    else:
        headers = source_headers(volume, sorted(maps))
        out.datasets.append(
            saliency_segmentation(
                result, maps, headers, series_number=number, threshold=threshold, scaling=scaling
            )
        )
    return out


def dataset_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM file (preamble, file meta, dataset)."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def save_result_objects(
    objects: ResultObjects, folder: str | Path, source_folders: Iterable[Path]
) -> list[Path]:
    """Write each dataset as ``<Modality>_<n>.dcm`` in ``folder`` (created if needed; never inside a source
    folder) and return the files."""
    target = check_output_path(folder, folders=source_folders)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for n, ds in enumerate(objects.datasets, start=1):
        path = target / f"{ds.get('Modality', 'OT')}_{n:02d}_{ds.SOPInstanceUID}.dcm"
        write_atomic(path, dataset_bytes(ds))
        written.append(path)
    return written
