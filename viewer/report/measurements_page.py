"""The report page of the view on screen and its measurements: the planes of the layout and of every
measurement, annotated with the measurements' numbers, and a table of what each one reads."""

from __future__ import annotations

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, PageBreak, Spacer, Table, TableStyle

from viewer.dicom.reformat.annotations import TOOL_NAMES
from viewer.report import styles as st
from viewer.report.content import CONTENT_WIDTH, MAX_FIGURE_HEIGHT, ReportContent, markup, p
from viewer.report.figures import SliceFigure

GAP = 4 * mm


def _figure_rows(c: ReportContent) -> list[Flowable]:
    figures = c.planes
    per_row = min(3, len(figures))
    width = (CONTENT_WIDTH - GAP * (per_row - 1)) / per_row
    rows: list[Flowable] = []
    for start in range(0, len(figures), per_row):
        chunk = figures[start : start + per_row]
        cells = []
        for figure in chunk:
            ew, eh = figure.extent_mm
            shown = min(width, MAX_FIGURE_HEIGHT * 0.8 * ew / eh) if ew > 0 and eh > 0 else width
            numbers = ", ".join(str(n) for n in figure.numbers)
            caption = figure.title + (f" · measurements {numbers}" if numbers else "")
            cells.append(
                [SliceFigure(figure.image, shown, figure.extent_mm, figure.letters), p(caption, st.CAPTION)]
            )
        table = Table([cells], colWidths=[width + GAP] * (len(chunk) - 1) + [width])
        table.hAlign = "LEFT"
        table.setStyle(
            TableStyle(
                [
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        rows += [table, Spacer(1, 3 * mm)]
    return rows


def _table(c: ReportContent) -> Table:
    data: list[list[object]] = [[p(h, st.LABEL) for h in ("#", "Measurement", "Plane", "Value")]]
    for m in c.measurements:
        data.append([p(str(m.id)), p(TOOL_NAMES[m.tool]), p(m.plane.title()), p(m.value_text())])
    table = Table(data, colWidths=[10 * mm, 30 * mm, 38 * mm, CONTENT_WIDTH - 78 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, st.RULE),
                ("LINEBELOW", (0, 1), (-1, -1), 0.3, colors.HexColor("#e2e2e2")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def measurement_pages(c: ReportContent) -> list[Flowable]:
    """The page (nothing when the export had no view planes and no measurements)."""
    if not c.planes and not c.measurements:
        return []
    out: list[Flowable] = [PageBreak(), p("View and measurements", st.H2)]
    intro = (f"The layout on screen at export: {c.layout}. " if c.layout else "") + (
        "Planes come from the series' true geometry (patient positions of every slice): reformats are sampled "
        "between the acquired slices and keep their true aspect. Lengths, angles and areas are in mm of the "
        "patient; ROI statistics are over the pixels whose centres lie inside the shape. Measurements are "
        "numbered on the images; the saliency overlay is not drawn here."
    )
    out += [p(intro, st.BODY), Spacer(1, 2 * mm)]
    out += _figure_rows(c)
    if c.measurements:
        out.append(KeepTogether([markup("<b>Measurements</b>", st.H3), _table(c)]))
    else:
        out.append(p("No measurements were made on this series.", st.SMALL))
    out.append(Spacer(1, 2 * mm))
    return out
