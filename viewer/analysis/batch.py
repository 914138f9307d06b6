"""Analyse every analysable series under a path (``gru-viewer analyze``), one after the other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewer.analysis.model_cache import load_model
from viewer.analysis.result import AnalysisResult
from viewer.analysis.run import AnalysisOptions
from viewer.analysis.session import AnalysisSession
from viewer.dicom.dicomdir import OUTSIDE
from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import Stack
from viewer.dicom.volume import Volume
from viewer.errors import ViewerError
from viewer.model.intended_use import size_refusal
from viewer.progress import ProgressFn


@dataclass
class SeriesRun:
    """One series of a batch: its result, or why it has none."""

    stack: Stack
    description: str
    result: AnalysisResult | None = None
    volume: Volume | None = None
    error: str = ""


@dataclass
class BatchReport:
    runs: list[SeriesRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Every file the index skipped, with its reason (the CLI lists them when nothing could be analysed: a folder
    of notes beside the images need not be listed file by file, a folder whose only image is refused must)."""

    @property
    def analysed(self) -> list[SeriesRun]:
        return [r for r in self.runs if r.result is not None]

    @property
    def none_assessed(self) -> bool:
        """True when series were analysed but every one is outside the model's intended use (no finding)."""
        return bool(self.analysed) and not any(r.result.assessed for r in self.analysed)  # type: ignore[union-attr]

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [
                {"description": r.description, **r.result.to_dict()}
                for r in self.runs
                if r.result is not None
            ],
            "failed": [
                {"series_uid": r.stack.series_uid, "description": r.description, "error": r.error}
                for r in self.runs
                if r.result is None
            ],
            "skipped": list(self.skipped),
        }


def analysable(stack: Stack, require_ct: bool = True) -> str:
    """Why a stack cannot be analysed, or "" when it can (a chosen non-CT volume runs, with a warning).

    A stack outside the size limits (:func:`~viewer.model.intended_use.size_refusal`) is refused here, from its
    headers, before any pixel is loaded."""
    first = stack.first
    if stack.n_slices < 2:
        return "a single image, not a volume"
    refusal = size_refusal((stack.n_slices, stack.rows, stack.columns))
    if refusal:
        return refusal
    if first.is_localizer:
        return "a localizer"
    if first.samples_per_pixel != 1:
        return "colour images"
    if require_ct and first.modality.upper() != "CT":
        return f"{first.modality or 'unknown'} modality, not CT"
    return ""


def _describe(stack: Stack) -> str:
    first = stack.first
    number = f"#{first.series_number} " if first.series_number is not None else ""
    return f"{number}{first.series_description or stack.label or 'series'} ({stack.n_slices} slices)"


def analyze_paths(
    paths: Sequence[str | Path],
    *,
    series_uid: str | None = None,
    model_path: str | Path | None = None,
    options: AnalysisOptions | None = None,
    keep_volumes: bool = False,
    progress: ProgressFn | None = None,
) -> BatchReport:
    """Index ``paths`` and analyse each CT volume (or only ``series_uid``: a SeriesInstanceUID or stack uid).

    A series that fails to load or analyse is reported in its :class:`SeriesRun` and the others go on.
    ``keep_volumes`` keeps each loaded volume on its run (for a report); otherwise they are dropped as soon as
    the series is done.
    """
    model, card = load_model(model_path)
    index = scan([str(p) for p in paths], progress=progress)
    report = BatchReport()
    # DICOMDIR records that point outside their folder are refused unread; say so, they may be an attack.
    report.skipped.extend(f"{s.path}: {s.reason}" for s in index.skipped if OUTSIDE in s.reason)
    report.unreadable.extend(f"{s.path}: {s.reason}" for s in index.skipped if OUTSIDE not in s.reason)
    stacks = list(index.stacks())
    if series_uid is not None:
        stacks = [s for s in stacks if series_uid in (s.uid, s.series_uid)]
        if not stacks:
            raise ViewerError("Cannot analyse", f"no series {series_uid} under {', '.join(map(str, paths))}")
    for stack in stacks:
        reason = analysable(stack, require_ct=series_uid is None)
        if reason:
            report.skipped.append(f"{_describe(stack)}: {reason}")
            continue
        run = SeriesRun(stack, _describe(stack))
        report.runs.append(run)
        try:
            volume = load_stack(stack)
            session = AnalysisSession(volume, model, card, options)
            session.close()  # the key slices' maps are all a terminal or a report shows
            run.result = session.result
            if keep_volumes:
                run.volume = volume
        except ViewerError as exc:
            run.error = f"{exc.what}: {exc.why}"
    return report


def summary_line(run: SeriesRun) -> str:
    """One line per series for the terminal: finding, probability against the threshold, warnings, time.

    A series outside the model's intended use reads "not assessed" with the reasons, and no probability."""
    if run.result is None:
        return f"{run.description}: not analysed — {run.error}"
    r = run.result
    notice = f"; {r.device_notice}" if r.device_notice else ""
    took = f"{r.timings.get('total', 0.0):.1f} s on {r.device}{notice}"
    advisory = [w.message for w in r.warnings if not w.disqualifying]
    if not r.assessed:
        also = f"; warnings: {' '.join(advisory)}" if advisory else ""
        return f"{run.description}: not assessed — outside the model's intended use: {' '.join(r.reasons)}{also}; {took}"
    sign = "≥" if r.positive else "<"
    warn = f"; warnings: {' '.join(advisory)}" if advisory else ""
    return (
        f"{run.description}: {r.finding} — probability {r.probability:.3f} {sign} threshold {r.threshold:.3f}"
        f"{warn}; {took}"
    )
