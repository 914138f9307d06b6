"""The work behind File ▸ Export Report…: what an export writes, where, and the rules its paths follow.

:class:`ExportChoices` (where each file goes) and :class:`ViewState` (what the PNG of the current view shows) are
plain data; :func:`run_export` builds the report and writes what was chosen, reporting ``progress`` and checking
``cancel`` like every headless job (the viewer runs it on a worker). Every target is checked before anything is
written: a path inside the series' own folder, or a folder opened as a study, is refused as a whole, and writes
go through a temporary file, so a failure leaves no half file behind.

Default names come from the series number and description (never the patient's name); de-identified, the
description is left out too, as the Basic Profile removes it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from viewer.analysis.session import AnalysisSession
from viewer.dicom.reformat.annotations import ACQUIRED, Measurement, PlaneRef
from viewer.dicom.volume import Volume
from viewer.errors import CancelledError, ViewerError
from viewer.progress import CancelFn, ProgressFn
from viewer.report.annotated import export_view_png
from viewer.report.api import ReportOptions, build_report, save_pdf
from viewer.report.dicom_export import save_dicom
from viewer.report.output import check_output_path, export_json, is_inside, source_folders

log = logging.getLogger(__name__)

REPORT_PREFIX = "GRU report"
MAX_STEM = 80


@dataclass(frozen=True)
class ExportChoices:
    """Where one export goes. ``None`` for an extra means: not wanted.

    Attributes
    ----------
    pdf:
        The PDF report.
    anonymize:
        De-identify the PDF, the DICOM copy and the JSON (DICOM PS3.15 Annex E Basic Profile).
    dicom_folder:
        Folder for the DICOM Encapsulated PDF (written as ``<SOP Instance UID>.dcm``).
    png:
        The current view (slice on screen, its window and overlay) as PNG.
    json:
        The analysis result as JSON.
    """

    pdf: Path
    anonymize: bool = False
    dicom_folder: Path | None = None
    png: Path | None = None
    json: Path | None = None

    def targets(self) -> list[Path]:
        """Every path the export writes to (the DICOM entry is the folder)."""
        return [p for p in (self.pdf, self.dicom_folder, self.png, self.json) if p is not None]


@dataclass(frozen=True)
class ViewState:
    """What the PNG of the current view shows: slice ``index`` (0-based) in ``window`` (center, width), grey
    scale ``invert``-ed or not, the overlay with its ``opacity``, ``threshold`` and ``scaling`` (``"series"`` or
    ``"slice"``)."""

    index: int
    window: tuple[float, float]
    overlay: bool
    opacity: float
    invert: bool = False
    threshold: float = 0.0
    scaling: str = "series"
    views: tuple[PlaneRef, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    layout: str = ""

    def describe(self) -> str:
        center, width = self.window
        overlay = f"saliency overlay from {self.threshold:.2f}" if self.overlay else "no overlay"
        if self.overlay and self.scaling == "slice":
            overlay += " (scaled per slice)"
        inverted = ", inverted" if self.invert else ""
        where = f"slice {self.index + 1}"
        if self.views and any(v.name != ACQUIRED for v in self.views):
            where = self.layout or ", ".join(v.title() for v in self.views)
            overlay = "no overlay"
        n = len(self.measurements)
        measured = f", {n} measurement{'s' if n != 1 else ''}" if n else ""
        return f"{where}, W {width:g} / L {center:g}{inverted}, {overlay}{measured}"


def check_targets(choices: ExportChoices, folders: Sequence[Path], opened: Sequence[Path] = ()) -> None:
    """Raise :class:`ViewerError` when any target lies inside ``folders`` (the series' own folders) or
    ``opened`` (the folders opened as studies).

    Checked for every target before anything is written, so a refused extra never leaves the PDF alone behind.
    """
    for target in choices.targets():
        check_output_path(target, folders=folders, opened=opened)


def safe_file_name(text: str) -> str:
    """``text`` as a file name that every desktop system accepts: letters, digits, space, ``.-_()`` only."""
    cleaned = re.sub(r"[^\w .()-]+", "_", text, flags=re.ASCII)
    cleaned = re.sub(r"\s+", " ", cleaned).strip(" ._")
    return cleaned[:MAX_STEM].rstrip(" ._") or "report"


def default_stem(series_number: int | None, description: str, *, deidentified: bool) -> str:
    """``GRU report - series 3 - HEAD 5mm AXIAL``; no description when ``deidentified`` (PS3.15 removes it)."""
    parts = [REPORT_PREFIX]
    if series_number is not None:
        parts.append(f"series {series_number}")
    if description.strip() and not deidentified:
        parts.append(description.strip())
    return safe_file_name(" - ".join(parts))


def derived_dicom_folder(pdf: Path) -> Path:
    return pdf.with_name(f"{pdf.stem} DICOM")


def view_file_label(view: ViewState) -> str:
    """What a file of ``view`` is named after: ``slice 15`` (1-based, as the viewer shows it) for the acquired
    slice, the plane (``Coronal A 12.5 mm MIP 10 mm``) for one reformat alone, ``MPR axial coronal sagittal``
    (and the slab) for several."""
    reformats = [v for v in view.views if v.name != ACQUIRED]
    if not reformats:
        return f"slice {view.index + 1}"
    if len(reformats) == 1:
        return safe_file_name(reformats[0].title().replace(" · ", " "))
    slab = reformats[0].slab
    return safe_file_name(" ".join(["MPR", *(v.name for v in reformats), *([slab.label()] if slab else [])]))


def derived_png(pdf: Path, view: ViewState) -> Path:
    """``<stem> slice 15 W80 L40.png``: what the view shows (:func:`view_file_label`) and the window used."""
    center, width = view.window
    return pdf.with_name(f"{pdf.stem} {view_file_label(view)} W{width:g} L{center:g}.png")


def derived_json(pdf: Path) -> Path:
    return pdf.with_name(f"{pdf.stem}.json")


def unused_pdf_path(folder: Path, stem: str, view: ViewState) -> Path:
    """``folder/stem.pdf``, or ``stem (2).pdf`` … when that name (or one of its extras) is taken already."""
    n = 1
    while True:
        name = stem if n == 1 else f"{stem} ({n})"
        pdf = folder / f"{name}.pdf"
        taken = (pdf, derived_dicom_folder(pdf), derived_png(pdf, view), derived_json(pdf))
        if not any(p.exists() for p in taken):
            return pdf
        n += 1


@dataclass
class ExportOutcome:
    """What an export wrote: the PDF first, then the extras in the order they were written."""

    pdf: Path
    written: list[Path] = field(default_factory=list)


def run_export(
    volume: Volume,
    session: AnalysisSession,
    choices: ExportChoices,
    view: ViewState,
    opened: Sequence[Path] = (),
    *,
    progress: ProgressFn,
    cancel: CancelFn,
) -> ExportOutcome:
    """Build the report of ``session``'s result on ``volume`` and write what ``choices`` ask for (a pixel map the
    PNG needs and the session has not computed yet is computed if the session is open).

    Raises
    ------
    ViewerError
        A target lies inside the series' folder or a folder in ``opened`` (nothing is written then), or a
        write failed (the message names the files already written).
    CancelledError
        Cancelled while the report was being built (nothing written yet).
    """
    result = session.result
    check_targets(choices, source_folders(volume), opened)
    extras = [p for p in (choices.dicom_folder, choices.png, choices.json) if p is not None]
    build_steps = len(result.key_slices) + 1
    total = 1 + build_steps + 1 + len(extras)

    def step(done: int, text: str) -> None:
        if cancel():
            raise CancelledError("Export cancelled")
        progress(done, total, text)

    step(0, "Reading the model card")
    report = build_report(
        volume,
        result,
        session.card,
        ReportOptions(
            anonymize=choices.anonymize,
            pixel_map=session.pixel_map,
            scaling=view.scaling,
            views=view.views,
            measurements=view.measurements,
            layout=view.layout,
        ),
        progress=lambda done, _total, text: step(1 + done, text),
    )
    # From here on no cancel: the writes are quick, and stopping halfway would leave half an export.
    written: list[Path] = []
    done = 1 + build_steps
    try:
        progress(done, total, "Writing the PDF")
        written.append(save_pdf(report, choices.pdf))
        if choices.dicom_folder is not None:
            done += 1
            progress(done, total, "Writing the DICOM copy")
            written.append(save_dicom(report, choices.dicom_folder))
        if choices.png is not None:
            done += 1
            progress(done, total, "Writing the PNG")
            written.append(
                export_view_png(
                    choices.png,
                    volume,
                    result,
                    view.index,
                    view.views,
                    view.measurements,
                    overlay=view.overlay,
                    window=view.window,
                    opacity=view.opacity,
                    invert=view.invert,
                    threshold=view.threshold,
                    pixel_map=session.pixel_map,
                    scaling=view.scaling,
                )
            )
        if choices.json is not None:
            done += 1
            progress(done, total, "Writing the JSON")
            written.append(export_json(choices.json, result, volume, anonymize=choices.anonymize))
    except ViewerError as exc:
        if not written:
            raise
        names = ", ".join(str(p) for p in written)
        raise ViewerError(exc.what, f"{exc.why}. Already written: {names}", exc.path) from exc
    progress(total, total, "Export done")
    return ExportOutcome(pdf=written[0], written=written)


def export_error(exc: BaseException) -> ViewerError:
    """A failed export as the user reads it: what and why in plain words."""
    if isinstance(exc, ViewerError):
        return exc
    if isinstance(exc, MemoryError):
        return ViewerError("The export failed", "not enough memory; close other series and try again")
    if isinstance(exc, OSError):
        return ViewerError("The export failed", exc.strerror or str(exc), exc.filename)
    log.error("export failed with %s", type(exc).__name__)
    return ViewerError(
        "The export failed",
        f"an internal error ({type(exc).__name__}); the analysis is kept, try again or choose other paths",
    )


def outside_all(folder: Path, protected: Sequence[Path]) -> bool:
    """True when ``folder`` lies inside none of ``protected`` (where a default export folder may be)."""
    resolved = folder.resolve()
    return not any(is_inside(resolved, p) for p in protected)
