"""What every report section shares: the content they lay out, text helpers and the boxed panel."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Table, TableStyle

from viewer.model.card import ModelCard
from viewer.report import styles as st
from viewer.report.annotated import PlaneFigure
from viewer.report.fonts import safe_text
from viewer.report.identifiers import ReportIdentifiers
from viewer.report.images import KeyImage

CONTENT_WIDTH = 174 * mm
NOT_STATED = "—"
REMOVED = "removed (de-identified)"
#: Two key slices (caption, plain and overlay side by side) fit on a page: tall images are narrowed to this.
MAX_FIGURE_HEIGHT = 98 * mm


@dataclass
class ReportContent:
    """Everything the layout needs, already de-identified when ``ids.deidentified``."""

    ids: ReportIdentifiers
    result: Any
    card: ModelCard
    images: list[KeyImage]
    positions_mm: dict[int, float]
    letters: dict[str, str]
    generated_at: datetime
    analysed_at: datetime
    app_version: str
    scaling: str = "series"
    #: The view on screen at export and its measurements (the measurements page).
    planes: list[PlaneFigure] = field(default_factory=list)
    measurements: list[Any] = field(default_factory=list)
    layout: str = ""

    @property
    def show_dates(self) -> bool:
        """De-identified reports carry no dates at all (PS3.15 Annex E removes every date and time)."""
        return not self.ids.deidentified


def text(value: str) -> str:
    """``value`` made safe for a Paragraph (XML-escaped, glyphs the font lacks replaced)."""
    return escape(safe_text(str(value)))


def p(value: str, style: Any = st.BODY) -> Paragraph:
    return Paragraph(text(value), style)


def markup(value: str, style: Any = st.BODY) -> Paragraph:
    """A Paragraph of trusted markup (``<b>``, ``<sub>``…) written in this module, glyphs made safe."""
    return Paragraph(safe_text(value), style)


def format_datetime(moment: datetime) -> str:
    """``2025-03-01 14:05 CET``: local time with its zone, as a reader expects on a report."""
    return moment.strftime("%Y-%m-%d %H:%M ") + (moment.strftime("%Z") or "")


def field_value(raw: str, deidentified: bool, fmt: Any = str) -> str:
    """A field's text: the value formatted, or why it is blank (removed by de-identification, or not stated)."""
    if raw:
        return fmt(raw)
    return REMOVED if deidentified else NOT_STATED


def boxed(
    flowables: list[Flowable], background: colors.Color, edge: colors.Color | None = None, pad: float = 8
) -> Table:
    """``flowables`` in a full-width panel of ``background``, with a bar of ``edge`` colour on the left."""
    table = Table([[flowables]], colWidths=[CONTENT_WIDTH])
    style = [
        ("BACKGROUND", (0, 0), (-1, -1), background),
        ("LEFTPADDING", (0, 0), (-1, -1), pad),
        ("RIGHTPADDING", (0, 0), (-1, -1), pad),
        ("TOPPADDING", (0, 0), (-1, -1), pad - 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), pad),
    ]
    if edge is not None:
        style.append(("LINEBEFORE", (0, 0), (0, -1), 4, edge))
    table.setStyle(TableStyle(style))
    return table
