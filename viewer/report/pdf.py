"""Lay the report out on A4 pages: :mod:`viewer.report.summary` then :mod:`viewer.report.evidence`, a running header that names
the patient (or the pseudonym) on every page after the first, and a footer with the generation time and
"Page n of N".

The PDF's own metadata (title, author, subject, keywords, creator) is fixed text: no patient data goes there in
any mode. A de-identified report is written in reportlab's invariant mode, so its creation date is a fixed
dummy too.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate

from viewer.dicom.identifiers import display_date, display_name
from viewer.report import styles as st
from viewer.report.content import ReportContent, format_datetime
from viewer.report.evidence import evidence_page, key_image_pages, methods_box, model_card_section
from viewer.report.fonts import FONT, FONT_BOLD, safe_text
from viewer.report.measurements_page import measurement_pages
from viewer.report.summary import summary_page

MARGIN = 18 * mm
PDF_TITLE = "GRU Viewer head CT analysis report"
PDF_SUBJECT = "Slice-GRU analysis of a head CT series (decision support, not for diagnosis)"
PDF_AUTHOR = "GRU Viewer"
PDF_KEYWORDS = "GRU Viewer, head CT, decision support"

Furniture = Callable[[Canvas, int, int], None]


class _NumberedCanvas(Canvas):
    """A canvas that holds its pages until the end, so each footer can say "Page n of N"."""

    def __init__(self, *args: Any, furniture: Furniture, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []
        self._furniture = furniture

    def showPage(self) -> None:  # noqa: N802 (reportlab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self._furniture(self, self._pageNumber, total)
            super().showPage()
        super().save()


def _patient_line(c: ReportContent) -> str:
    ids = c.ids
    if ids.deidentified:
        return f"{ids.patient_id} (de-identified)"
    parts = [display_name(ids.patient_name) or "name not stated", f"ID {ids.patient_id or '—'}"]
    if ids.study_date:
        parts.append(f"study {display_date(ids.study_date)}")
    return " · ".join(parts)


def _furniture(c: ReportContent) -> Furniture:
    width, height = A4
    generated = (
        f"generated {format_datetime(c.generated_at)}"
        if c.show_dates
        else "de-identified: generation date removed"
    )
    footer = safe_text(f"GRU Viewer {c.app_version} · {generated} · decision support only, not for diagnosis")
    header = safe_text(_patient_line(c))

    def draw(canvas: Canvas, page: int, total: int) -> None:
        canvas.saveState()
        canvas.setStrokeColor(st.RULE)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, 13 * mm, width - MARGIN, 13 * mm)
        canvas.setFillColor(st.MUTED)
        canvas.setFont(FONT, 7.5)
        canvas.drawString(MARGIN, 9 * mm, footer)
        canvas.setFont(FONT_BOLD, 8)
        canvas.drawRightString(width - MARGIN, 9 * mm, f"Page {page} of {total}")
        if page > 1:
            canvas.setFont(FONT, 8)
            canvas.drawString(MARGIN, height - 11 * mm, header)
            canvas.drawRightString(width - MARGIN, height - 11 * mm, "Head CT analysis report")
            canvas.line(MARGIN, height - 12.5 * mm, width - MARGIN, height - 12.5 * mm)
        canvas.restoreState()

    return draw


def render_pdf(content: ReportContent) -> bytes:
    """The report as PDF bytes."""
    buffer = io.BytesIO()
    width, height = A4
    frame = Frame(
        MARGIN,
        MARGIN,
        width - 2 * MARGIN,
        height - 2 * MARGIN,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    doc = BaseDocTemplate(
        buffer,
        pageTemplates=[PageTemplate("page", frames=[frame])],
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=PDF_TITLE,
        author=PDF_AUTHOR,
        subject=PDF_SUBJECT,
        keywords=PDF_KEYWORDS,
        creator=f"GRU Viewer {content.app_version}",
        invariant=1 if content.ids.deidentified else 0,
    )
    story = [
        *summary_page(content),
        *key_image_pages(content),
        *measurement_pages(content),
        *evidence_page(content),
        *methods_box(content),
        *model_card_section(content),
    ]
    doc.build(story, canvasmaker=partial(_NumberedCanvas, furniture=_furniture(content)))
    return buffer.getvalue()
