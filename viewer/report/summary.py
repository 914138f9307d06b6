"""Page 1 of the report: the finding at a glance, intended-use warnings, who and what was analysed, how, and
the disclaimer."""

from __future__ import annotations

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from viewer.dicom.identifiers import display_date, display_name, display_sex, display_time
from viewer.model.misses import misses_sentence
from viewer.model.training_history import training_words
from viewer.report import styles as st
from viewer.report.content import (
    NOT_STATED,
    REMOVED,
    ReportContent,
    boxed,
    field_value,
    format_datetime,
    markup,
    p,
    text,
)


def title_block(c: ReportContent) -> list[Flowable]:
    model = c.result.model
    return [
        p("Head CT analysis report", st.TITLE),
        p(
            f"GRU Viewer {c.app_version} · model {model.name} {model.version} "
            f"(weights SHA-256 {model.sha256[:12]}…)",
            st.SUBTITLE,
        ),
        Spacer(1, 4 * mm),
    ]


def probability_words(probability: float, threshold: float) -> tuple[str, str]:
    """Both numbers to two decimals, or to as many more (up to four) as it takes for them to differ, so
    "0.41 (threshold 0.41)" never stands for a probability just below the threshold."""
    for digits in (2, 3, 4):
        a, b = f"{probability:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b or probability == threshold:
            break
    return _not_certain(probability, a), b


def _not_certain(probability: float, shown: str) -> str:
    """A model probability is never printed as certainty: 0.9987 reads 0.999, 0.99996 reads > 0.999."""
    if float(shown) == 1.0 and probability < 1.0:
        return f"{probability:.3f}" if probability < 0.9995 else "> 0.999"
    if float(shown) == 0.0 and probability > 0.0:
        return f"{probability:.3f}" if probability >= 0.0005 else "< 0.001"
    return shown


def finding_block(c: ReportContent) -> list[Flowable]:
    r = c.result
    if not r.assessed:
        return _not_assessed_block()
    positive = r.positive
    colour = st.POSITIVE if positive else st.NEGATIVE
    relation = "at or above" if positive else "below"
    finding = Paragraph(text(r.finding), st.FINDING.clone("f", textColor=colour))
    prob, threshold = probability_words(r.probability, r.threshold)
    detail = p(
        f"probability {prob} (threshold {threshold}): {relation} the model's operating threshold",
        st.FINDING_SUB,
    )
    key = ", ".join(str(k + 1) for k in r.key_slices)
    extra = p(f"Slices the decision rests on most (largest share first): {key}", st.BODY)
    return [
        boxed(
            [finding, detail, Spacer(1, 1 * mm), extra],
            st.POSITIVE_BG if positive else st.NEGATIVE_BG,
            colour,
            10,
        ),
        Spacer(1, 3 * mm),
    ]


def _not_assessed_block() -> list[Flowable]:
    """Page 1's finding box of a series outside the model's intended use: no finding, no probability."""
    title = Paragraph("Not assessed", st.FINDING.clone("na", textColor=st.INK))
    detail = p(
        "Outside the model's intended use: no finding is given for this series (the reasons are below; the "
        "evidence pages are for study only).",
        st.FINDING_SUB,
    )
    return [boxed([title, detail], st.WARNING_BG, st.WARNING_EDGE, 10), Spacer(1, 3 * mm)]


def warnings_block(c: ReportContent) -> list[Flowable]:
    r = c.result
    items: list[Flowable] = []
    if not r.assessed:
        items.append(p("Not assessed: outside the model's intended use, because:", st.WARNING_TITLE))
    if r.warnings:
        if r.assessed:
            items.append(
                p(
                    "Intended-use warnings: read this finding with extra caution",
                    st.WARNING_TITLE,
                )
            )
        for w in r.warnings:
            items.append(
                Paragraph(
                    "• " + text(w.message),
                    st.BODY.clone("w", leftIndent=10, firstLineIndent=-8, textColor=st.WARNING),
                )
            )
    else:
        items.append(
            p("No intended-use warnings: the series meets the model's input requirements.", st.WARNING_TITLE)
        )
    if r.device_notice:
        items.append(p(r.device_notice, st.BODY))
    items.append(Spacer(1, 1 * mm))
    items.append(p(f"Intended use: {c.card.intended_use}", st.SMALL.clone("iu", textColor=st.INK)))
    return [boxed(items, st.WARNING_BG, st.WARNING_EDGE), Spacer(1, 3 * mm)]


def _fields_table(rows: list[tuple[str, str, str, str]]) -> Table:
    data = [[p(a, st.LABEL), p(b, st.VALUE), p(cc, st.LABEL), p(d, st.VALUE)] for a, b, cc, d in rows]
    table = Table(data, colWidths=[27 * mm, 60 * mm, 27 * mm, 60 * mm])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    return table


def identifiers_block(c: ReportContent) -> list[Flowable]:
    ids = c.ids
    de = ids.deidentified
    name = display_name(ids.patient_name)
    thickness = f"{ids.slice_thickness_mm:g} mm" if ids.slice_thickness_mm else NOT_STATED
    dz, dy, dx = ids.spacing_mm
    number = ids.series_number or NOT_STATED
    out: list[Flowable] = [p("Patient", st.H3)]
    out.append(
        _fields_table(
            [
                ("Name", field_value(name, de), "Patient ID", field_value(ids.patient_id, de)),
                (
                    "Birth date",
                    field_value(ids.patient_birth_date, de, display_date),
                    "Sex",
                    field_value(ids.patient_sex, de, display_sex),
                ),
            ]
        )
    )
    if de:
        out.append(
            p(
                "De-identified (DICOM PS3.15 Annex E, Basic Profile): pseudonymous ID, new UIDs, dates and descriptions removed.",
                st.SMALL,
            )
        )
    study_when = field_value(ids.study_date, de, display_date)
    if ids.study_time and not de:
        study_when += " " + display_time(ids.study_time)
    out += [p("Study", st.H3)]
    out.append(
        _fields_table(
            [
                ("Date", study_when, "Accession no.", field_value(ids.accession_number, de)),
                (
                    "Description",
                    field_value(ids.study_description, de),
                    "Institution",
                    field_value(ids.institution, de),
                ),
            ]
        )
    )
    out.append(p(f"Study UID {ids.study_uid or NOT_STATED}", st.UID))
    out += [p("Series", st.H3)]
    out.append(
        _fields_table(
            [
                ("Description", field_value(ids.series_description, de), "Series no.", number),
                ("Modality", ids.modality or NOT_STATED, "Slices", str(ids.n_slices)),
                ("Slice thickness", thickness, "Slice spacing", f"{dz:.3g} mm"),
                ("Matrix", f"{ids.matrix[0]} × {ids.matrix[1]}", "Pixel spacing", f"{dy:.3g} × {dx:.3g} mm"),
            ]
        )
    )
    out.append(p(f"Series UID {ids.series_uid or NOT_STATED}", st.UID))
    return out + [Spacer(1, 3 * mm)]


def analysis_block(c: ReportContent) -> list[Flowable]:
    r = c.result
    when = format_datetime(c.analysed_at) if c.show_dates else REMOVED
    seconds = r.timings.get("total")
    took = f", {seconds:.1f} s" if seconds is not None else ""
    return [
        p("Analysis", st.H3),
        _fields_table(
            [
                ("Analysed on", f"{r.device}{took}", "Time of analysis", when),
                ("Pixel saliency", r.pixel_label, "Window shown", _window_words(c)),
            ]
        ),
        Spacer(1, 3 * mm),
    ]


def _window_words(c: ReportContent) -> str:
    if not c.images:
        return NOT_STATED
    center, width = c.images[0].window
    return f"W {width:g} / L {center:g} HU" + (" (brain)" if (center, width) == (40.0, 80.0) else "")


def disclaimer_block(c: ReportContent) -> list[Flowable]:
    training = training_words(c.card.training_data)
    misses = misses_sentence(c.result.known_misses)
    return [
        boxed(
            [
                markup(
                    "<b>Decision support only, not for diagnosis.</b> "
                    + text(
                        "This result comes from a research model and must not replace a qualified reader's review "
                        "of the images; a result below the threshold does not exclude a bleed."
                        + (f" {misses}" if misses else "")
                        + f" The model is not a medical device. Its training data: {training.rstrip('.')}."
                    ),
                    st.SMALL.clone("disc", textColor=st.INK),
                )
            ],
            st.BOX_BG,
        )
    ]


def summary_page(c: ReportContent) -> list[Flowable]:
    return [
        *title_block(c),
        *finding_block(c),
        *warnings_block(c),
        *identifiers_block(c),
        *analysis_block(c),
        *disclaimer_block(c),
    ]
