"""One job for the GUI's Analysis ▸ Send Results to PACS: build the identified report and the result objects
of the analysis on screen, then store them on a node (headless; the window runs it on a worker)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from viewer.dicom.reformat.annotations import Measurement, PlaneRef
from viewer.pacs import service
from viewer.pacs.nodes import Node
from viewer.pacs.send import SendResult
from viewer.progress import CancelFn, ProgressFn
from viewer.report.api import ReportOptions, build_report
from viewer.report.dicom_results import ResultObjects, build_result_objects
from viewer.report.dicom_seg import DEFAULT_THRESHOLD


@dataclass
class SentResults:
    """What went to the archive (``objects``) and how it went (``sent``)."""

    node: Node
    objects: ResultObjects
    sent: SendResult


def send_analysis(
    volume: Any,
    session: Any,
    node: Node,
    secret: str | None,
    *,
    scaling: str = "series",
    threshold: float = DEFAULT_THRESHOLD,
    views: Sequence[PlaneRef] = (),
    measurements: Sequence[Measurement] = (),
    layout: str = "",
    progress: ProgressFn,
    cancel: CancelFn,
) -> SentResults:
    """Store the report, SR, key images and segmentation of ``session`` (an open or closed
    :class:`~viewer.analysis.session.AnalysisSession` on ``volume``) on ``node``; ``scaling`` and ``threshold``
    are the overlay's on screen, so the archive shows what the reader saw. ``views``, ``measurements`` and
    ``layout`` (the panes on screen, the reader's measurements, the layout in words) give the report its page of
    annotated planes, and the measurements go into the SR."""
    progress(0, 0, "Building the report")
    options = ReportOptions(
        scaling=scaling, pixel_map=session.pixel_map, views=views, measurements=measurements, layout=layout
    )
    report = build_report(volume, session.result, session.card, options)
    progress(0, 0, "Building the result objects")
    objects = build_result_objects(
        volume,
        session.result,
        report,
        pixel_map=session.pixel_map,
        scaling=scaling,
        threshold=threshold,
        measurements=measurements,
    )
    total = len(objects.datasets)
    sent = service.send(
        node,
        objects.datasets,
        secret=secret,
        progress=lambda done, _total, text: progress(done, total, text),
        cancel=cancel,
    )
    return SentResults(node, objects, sent)
