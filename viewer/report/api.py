"""Build a report from one analysis and write it: PDF, the same PDF as a DICOM instance, PNG and JSON.

The GUI's File → Export report… and ``gru-viewer analyze --report`` both go through :func:`build_report` and
:func:`save_pdf` / :func:`~viewer.report.dicom_export.save_dicom`. Building renders the key images (and, for
requested slices that have none yet, computes their pixel saliency), so run it on a worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from viewer import __version__
from viewer.analysis.result import PixelMapFn
from viewer.dicom.reformat.annotations import Measurement, PlaneRef
from viewer.dicom.stacks import orientation_letters
from viewer.errors import ViewerError
from viewer.model.card import ModelCard
from viewer.progress import ProgressFn
from viewer.report.annotated import plane_figures
from viewer.report.content import ReportContent
from viewer.report.deidentify import deidentify
from viewer.report.identifiers import ReportIdentifiers, identifiers_from_volume
from viewer.report.images import BRAIN_WINDOW, DEFAULT_OPACITY, DEFAULT_WIDTH_PX, render_key_image
from viewer.report.output import check_output_path, source_folders, write_atomic
from viewer.report.pdf import render_pdf


@dataclass
class ReportOptions:
    """How to build a report.

    Attributes
    ----------
    anonymize:
        De-identify everything the report shows and the DICOM copy carries (PS3.15 Annex E Basic Profile).
    key:
        Pseudonym key for ``anonymize`` (default: this installation's, :func:`~viewer.report.deidentify.installation_key`).
    window:
        ``(center, width)`` HU of the key images (default the brain window 40/80).
    key_slices:
        Original slice indices to show (default the result's key slices, largest share of the study score first).
    pixel_map:
        Where a key image's saliency map comes from (default: the maps the result holds; an open
        :class:`~viewer.analysis.session.AnalysisSession`'s ``pixel_map`` computes missing ones).
    width_px:
        Pixels along the longer side of each embedded image.
    opacity:
        Strongest opacity of the saliency overlay.
    scaling:
        How the key images' saliency is scaled: ``"series"`` (default) or ``"slice"``
        (:mod:`viewer.analysis.display`).
    analysed_at, generated_at:
        Times printed on the report (default: when the analysis finished, and now).
    views, measurements, layout:
        The planes on screen at export (:class:`~viewer.dicom.reformat.annotations.PlaneRef`, in pane order),
        the series' measurements and the layout's name in words: with any of them the report gets a page of
        those planes, annotated, and a table of the measurements.
    """

    anonymize: bool = False
    key: bytes | None = field(default=None, repr=False)
    window: tuple[float, float] = BRAIN_WINDOW
    key_slices: Sequence[int] | None = None
    pixel_map: PixelMapFn | None = field(default=None, repr=False)
    width_px: int = DEFAULT_WIDTH_PX
    opacity: float = DEFAULT_OPACITY
    scaling: str = "series"
    analysed_at: datetime | None = None
    generated_at: datetime | None = None
    views: Sequence[PlaneRef] = ()
    measurements: Sequence[Measurement] = ()
    layout: str = ""


@dataclass(frozen=True)
class Report:
    """A built report: the PDF bytes and what the DICOM copy needs to join the study."""

    pdf: bytes
    identifiers: ReportIdentifiers
    generated_at: datetime
    source_folders: tuple[Path, ...]

    @property
    def anonymized(self) -> bool:
        return self.identifiers.deidentified


def build_report(
    volume: Any,
    result: Any,
    card: ModelCard,
    options: ReportOptions | None = None,
    *,
    progress: ProgressFn | None = None,
) -> Report:
    """Render the PDF report of ``result`` (an :class:`~viewer.analysis.result.AnalysisResult`) on ``volume``.

    Raises
    ------
    ViewerError
        ``result`` was computed on another series than ``volume``.
    """
    options = options or ReportOptions()
    if not result.matches(volume):
        raise ViewerError("Cannot build the report", "the analysis result belongs to another series")
    now = datetime.now().astimezone()
    ids = identifiers_from_volume(volume)
    if options.anonymize:
        ids = deidentify(ids, options.key)
    key_slices = list(options.key_slices if options.key_slices is not None else result.key_slices)
    total = len(key_slices) + 1
    images = []
    for done, k in enumerate(key_slices):
        if progress is not None:
            progress(done, total, f"Key image {done + 1} of {len(key_slices)}")
        images.append(
            render_key_image(
                volume,
                result,
                k,
                window=options.window,
                width_px=options.width_px,
                opacity=options.opacity,
                pixel_map=options.pixel_map,
                scaling=options.scaling,
            )
        )
    if progress is not None:
        progress(len(key_slices), total, "Laying out the PDF")
    planes = plane_figures(
        volume, options.views, options.measurements, window=options.window, invert=bool(volume.invert)
    )
    content = ReportContent(
        ids=ids,
        result=result,
        card=card,
        images=images,
        scaling=options.scaling,
        positions_mm={k: volume.slice_position_mm(k) for k in key_slices},
        letters=orientation_letters(volume.orientation),
        generated_at=options.generated_at or now,
        analysed_at=options.analysed_at or result.finished_at or now,
        app_version=__version__,
        planes=planes,
        measurements=list(options.measurements),
        layout=options.layout,
    )
    pdf = render_pdf(content)
    if progress is not None:
        progress(total, total, "Report ready")
    return Report(
        pdf=pdf, identifiers=ids, generated_at=content.generated_at, source_folders=source_folders(volume)
    )


def save_pdf(report: Report, path: str | Path) -> Path:
    """Write the report's PDF at ``path`` (replacing a file there); refuses a path inside the series' folder."""
    target = check_output_path(path, folders=report.source_folders)
    write_atomic(target, report.pdf)
    return target
