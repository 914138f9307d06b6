"""The pages after the summary: key images with their saliency overlays, the per-slice plots, the methods box
and the model card summary."""

from __future__ import annotations

import numpy as np
from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    PageBreak,
    Spacer,
    Table,
    TableStyle,
)

from viewer.analysis.display import HIDDEN_OVERSHOOT, SCALING_NAMES, format_contribution, hidden_axis
from viewer.analysis.result import STUDY_ONLY
from viewer.model.metrics import METRIC_LABELS, format_metric
from viewer.model.training_history import training_words
from viewer.report import styles as st
from viewer.report.charts import Trace, colour_bar, slice_chart
from viewer.report.content import (
    CONTENT_WIDTH,
    MAX_FIGURE_HEIGHT,
    ReportContent,
    boxed,
    markup,
    p,
    text,
)
from viewer.report.figures import SliceFigure
from viewer.report.images import saliency_alpha, saliency_colour

#: What the key images' scaling means, in the words of the key-image page.
SCALING_TEXT: dict[str, str] = {
    "series": "The colour is scaled to the series: each slice's map is drawn at the strength of that slice's bleed "
    "probability, so a slice the model finds normal stays dark.",
    "slice": "The colour is scaled per slice: every slice shows its own strongest pixels at full strength, a normal "
    "slice too.",
}


def _legend_colour(t: float) -> tuple[float, float, float]:
    """The overlay colour as it shows over mid-grey tissue, for the legend."""
    alpha = float(saliency_alpha(np.asarray(t), 1.0))
    r, g, b = (float(v) for v in saliency_colour(np.asarray(t)))
    return tuple(0.5 * (1 - alpha) + v * alpha for v in (r, g, b))  # type: ignore[return-value]


def _study_only(c: ReportContent) -> list[Flowable]:
    """The label over the evidence of a result outside intended use (nothing when it is assessed)."""
    if c.result.assessed:
        return []
    return [p(STUDY_ONLY, st.WARNING_TITLE), Spacer(1, 1.5 * mm)]


def key_image_pages(c: ReportContent) -> list[Flowable]:
    r = c.result
    n = c.ids.n_slices
    gap = 6 * mm
    width = (CONTENT_WIDTH - gap) / 2
    out: list[Flowable] = [
        PageBreak(),
        p("Key images", st.H2),
        *_study_only(c),
        p(
            "The slices the decision rests on most (largest share of the pooled study score), largest first. Left: the "
            f"slice as displayed. Right: the same slice with pixel saliency ({r.pixel_label}) in colour: where the "
            "score is most sensitive to the pixel values. It is not an outline of a bleed. "
            + SCALING_TEXT.get(c.scaling, SCALING_TEXT["series"])
            + " The captions' hidden-state evidence is in logit units (+ towards bleed; see Per-slice evidence).",
            st.BODY,
        ),
        Spacer(1, 1.5 * mm),
        colour_bar(
            110 * mm,
            11,
            _legend_colour,
            "low",
            "high",
            f"Pixel saliency (magnitude, {SCALING_NAMES.get(c.scaling, SCALING_NAMES['series'])})",
        ),
        Spacer(1, 2 * mm),
    ]
    for rank, image in enumerate(c.images, start=1):
        k = image.index
        center, ww = image.window
        position = c.positions_mm.get(k)
        where = f"position {position:.1f} mm" if position is not None else "position unknown"
        caption = markup(
            f"<b>Key slice {rank} of {len(c.images)}: slice {k + 1} of {n}</b> · "
            + text(
                f"{where} · W {ww:g} / L {center:g} · slice probability {float(r.slice_probabilities[k]):.2f} · "
                f"hidden-state evidence {format_contribution(r.hidden_saliency['combined'][k])}"
            ),
            st.CAPTION,
        )
        ew, eh = image.extent_mm
        shown = min(width, MAX_FIGURE_HEIGHT * ew / eh) if ew > 0 and eh > 0 else width
        plain = SliceFigure(image.plain, shown, image.extent_mm, c.letters, f"slice {k + 1}")
        if image.overlay is not None:
            right: Flowable = SliceFigure(
                image.overlay, shown, image.extent_mm, c.letters, f"slice {k + 1}, saliency"
            )
        else:
            right = p("No pixel saliency is available for this slice.", st.SMALL)
        row = Table([[plain, right]], colWidths=[shown + gap, shown])
        row.hAlign = "CENTER"
        row.setStyle(
            TableStyle(
                [
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        out.append(KeepTogether([caption, Spacer(1, 1 * mm), row, Spacer(1, 4 * mm)]))
    return out


FORWARD = colors.HexColor("#1f77b4")
REVERSE = colors.HexColor("#d62728")


def evidence_page(c: ReportContent) -> list[Flowable]:
    r = c.result
    key = list(r.key_slices)
    height = 46 * mm
    prob = slice_chart(
        [Trace("slice probability", r.slice_probabilities, colors.HexColor("#222222"), width=1.4)],
        width=CONTENT_WIDTH,
        height=height,
        title="Per-slice bleed probability",
        y_label="probability",
        key_slices=key,
        hline=(r.threshold, f"operating threshold {r.threshold:.2f} (study level)"),
    )
    hidden = r.hidden_saliency
    tracks = [hidden[name] for name in ("forward", "reverse", "combined")]
    evidence = slice_chart(
        [
            Trace("forward reader", tracks[0], FORWARD, (4, 2), width=0.9),
            Trace("reverse reader", tracks[1], REVERSE, (1.5, 1.5), width=0.9),
            Trace("combined (sum)", tracks[2], colors.HexColor("#e07b00"), width=1.6),
        ],
        width=CONTENT_WIDTH,
        height=height + 6 * mm,
        title="Hidden-state evidence: how much each slice's memory adds to the finding (logit units)",
        y_label="logit (+ towards bleed)",
        key_slices=key,
        y_range=hidden_axis(*tracks),
        hline=(0.0, "0 = as a normal head"),
    )
    z, rg = (
        slice_chart(
            [
                Trace("forward (first → last slice)", r.gates[f"{gate}_mean_forward"], FORWARD),
                Trace("reverse (last → first slice)", r.gates[f"{gate}_mean_reverse"], REVERSE, (4, 2)),
            ],
            width=CONTENT_WIDTH,
            height=height,
            title=title,
            y_label=y_label,
            key_slices=key,
        )
        for gate, title, y_label in (
            (
                "z",
                "Update gate z, mean over units (1 = keep the previous state, 0 = take the new candidate)",
                "update gate z",
            ),
            (
                "r",
                "Reset gate r, mean over units (0 = the candidate ignores the previous state)",
                "reset gate r",
            ),
        )
    )
    return [
        PageBreak(),
        p("Per-slice evidence", st.H2),
        *_study_only(c),
        p(
            "Slice numbers run from the first slice of the series (lowest position along the slice normal) to the "
            "last, as in the viewer. Key slices are marked in purple.",
            st.BODY,
        ),
        Spacer(1, 2 * mm),
        prob,
        Spacer(1, 2 * mm),
        evidence,
        p(
            "Above 0 a slice's memory pushes the study towards a bleed, below 0 towards no bleed, compared with the "
            f"model's average normal head. The values overshoot the real change of the study score by {HIDDEN_OVERSHOOT} "
            "(a one-step estimate): read them as relative sizes.",
            st.SMALL,
        ),
        Spacer(1, 2 * mm),
        z,
        Spacer(1, 3 * mm),
        rg,
        Spacer(1, 3 * mm),
    ]


def methods_box(c: ReportContent) -> list[Flowable]:
    cfg = c.card.config
    body = st.BODY.clone("m", fontSize=8.3, leading=10.8)
    items = [
        p("How to read the evidence, and its limits", st.H3),
        markup(
            "<b>Model.</b> "
            + text(
                "A small CNN turns each slice (brain, subdural and bone windows) into features; a bidirectional GRU "
                f"reads the slices first → last and last → first (slabs of {cfg.target_spacing_mm:g} mm: thinner "
                "slices are averaged, so neighbouring slices share values); per-slice heads give slice "
                "probabilities and their pooling the study probability."
            ),
            body,
        ),
        markup(
            "<b>Gates</b> (PyTorch convention). "
            + text("For each slice t and direction the GRU computes ")
            + "h<sub>t</sub> = (1 − z<sub>t</sub>) ⊙ n<sub>t</sub> + z<sub>t</sub> ⊙ h<sub>t−1</sub>, "
            "n<sub>t</sub> = tanh(W<sub>n</sub>x<sub>t</sub> + r<sub>t</sub> ⊙ (U<sub>n</sub>h<sub>t−1</sub>)). "
            + text(
                "An update gate z near 1 keeps the previous state (the slice changes little), near 0 overwrites it "
                "with the candidate n; a reset gate r near 0 lets the candidate ignore the previous state. Some "
                "articles write the interpolation the other way round (their z is 1 − z here). The plots show the "
                "mean over units: they describe what the model kept and overwrote, not evidence of a bleed."
            ),
            body,
        ),
        markup(
            "<b>Hidden-state evidence</b> "
            + text(
                "(logit units, one scale for every series) is how much each slice's memory adds to the study "
                "score compared with the model's average normal head: the difference of the GRU states on this "
                "series and on that reference, weighed by how strongly the score responds to them (one-step "
                "conductance). Positive pushes towards a bleed, negative towards no bleed, near 0 nothing the "
                "score cares about differs. Combined is the sum of both readers. Direct is the part the slice's "
                "own read-out uses; carried is passed on in the reader's memory to the slices read later and "
                "stays on the slice that holds it. Limits: a one-step estimate, its sum overshoots the change of "
                f"the study logit by {HIDDEN_OVERSHOOT} on validation phantoms; the reference is the mean of "
                "normal phantom series, matched by relative position; it explains the model, not the anatomy. "
                "The gate plots are activations, not attribution (a random GRU's gates separate bleed slices "
                "about as well). Key slices are those with the largest share of the pooled study score."
            ),
            body,
        ),
        markup(
            "<b>Pixel saliency</b> "
            + text(
                f"({c.result.pixel_label}) is gradient-based and drawn as its magnitude, "
                f"{SCALING_NAMES.get(c.scaling, SCALING_NAMES['series'])}. It shows "
                "where the score is sensitive, which may be edges or artefacts rather than a lesion; it can look "
                "plausible even for a model that learned little, which is why GRU Viewer checks it against "
                "randomised weights (Adebayo et al., 2018). Neither saliency proves or localises a bleed."
            ),
            body,
        ),
    ]
    return [KeepTogether(boxed(items, st.BOX_BG))]


def model_card_section(c: ReportContent) -> list[Flowable]:
    card = c.card
    rows = [
        ("Name", card.name),
        ("Version", card.version),
        ("Weights SHA-256", card.sha256[:16] + "…"),
        ("Training data", training_words(card.training_data)),
        ("Intended use", card.intended_use),
        (
            "Operating threshold",
            f"study probability ≥ {card.operating_threshold:g} is reported as a suspected bleed",
        ),
    ]
    if card.limitations:
        rows.append(("Limitations", card.limitations))
    table = Table(
        [[p(a, st.LABEL), p(b, st.VALUE)] for a, b in rows], colWidths=[36 * mm, CONTENT_WIDTH - 36 * mm]
    )
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    out: list[Flowable] = [
        CondPageBreak(70 * mm),
        Spacer(1, 4 * mm),
        p("Model card summary", st.H2),
        table,
        Spacer(1, 2 * mm),
    ]
    where = card.evaluation.get("data")
    heading = p("Held-out metrics" + (f" (measured on {where})" if where else ""), st.H3)
    if card.metrics:
        data = [[p("Metric", st.LABEL), p("Value", st.LABEL)]]
        data += [
            [p(METRIC_LABELS.get(k, k), st.VALUE), p(format_metric(k, v), st.VALUE)]
            for k, v in card.metrics.items()
        ]
        metrics = Table(data, colWidths=[110 * mm, 30 * mm])
        metrics.setStyle(_GRID)
        metrics.hAlign = "LEFT"
        out.append(KeepTogether([heading, metrics]))  # never a heading alone at the foot of a page
    else:
        none = p(
            "None recorded on the model card: the model has not been evaluated on held-out data.", st.BODY
        )
        out.append(KeepTogether([heading, none]))
    return out + _further_evaluations(c)


_GRID = TableStyle(
    [
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, st.RULE),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, st.BOX_BG]),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)
_HEADLINE = (
    ("studies", "Series"),
    ("study_auroc", "Study AUROC"),
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("slice_auroc", "Slice AUROC"),
)


def _further_evaluations(c: ReportContent) -> list[Flowable]:
    """The card's other held-out sets in one table of headline scores (page 1 names the bleeds it misses most).

    The main table above is one phantom family; a reader must see how the model does on the others (a family it
    was not trained on among them) before trusting a finding, not only its best set.
    """
    rows = [e for e in c.card.evaluations if isinstance(e.get("metrics"), dict) and e["metrics"]]
    out: list[Flowable] = []
    if rows:
        head = [p("Set", st.LABEL)] + [p(label, st.LABEL) for _k, label in _HEADLINE]
        data = [head]
        for e in rows:
            m = e["metrics"]
            data.append(
                [p(str(e.get("title") or "Further evaluation"), st.VALUE)]
                + [p(format_metric(k, m[k]) if k in m else "–", st.VALUE) for k, _label in _HEADLINE]
            )
        table = Table(data, colWidths=[64 * mm] + [22 * mm] * len(_HEADLINE))
        table.setStyle(_GRID)
        table.hAlign = "LEFT"
        note = p(
            "Sensitivity and specificity at the operating threshold. Each set's data and what the model misses "
            "there, by bleed kind, size and contrast, are on the model card (Help ▸ Model Card in the viewer).",
            st.SMALL,
        )
        out += [
            Spacer(1, 3 * mm),
            KeepTogether([p("Other held-out sets", st.H3), table, Spacer(1, 1 * mm), note]),
        ]
    return out
