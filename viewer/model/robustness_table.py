"""How a robustness table reads: plain text for ``gru-viewer evaluate --robustness``, Markdown for the model card.

Rows are the plain dicts of :meth:`viewer.model.robustness.RobustnessReport.rows` (also what the card stores):
``condition``, ``studies``, ``studies_with_bleed``, ``study_auroc``, ``delta_auroc``, ``sensitivity``,
``specificity``, ``slice_auroc`` (None where not measured), ``goal_max_drop`` and ``meets_goal`` (None without a
goal), and a ``note``. Kept apart from the evaluation so the card can be rendered without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HEADERS = (
    "condition",
    "studies (bleed)",
    "study AUROC",
    "Δ AUROC",
    "sensitivity",
    "specificity",
    "slice AUROC",
    "goal",
)


def _number(value: Any, signed: bool = False) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value != value:  # NaN: one class only
        return "n/a"
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    return text.replace("-", "−")


def goal_text(row: Mapping[str, Any]) -> str:
    """``meets`` / ``misses`` the row's goal (an AUROC drop of at most ``goal_max_drop``), or empty."""
    goal = row.get("goal_max_drop")
    if goal is None:
        return ""
    verdict = {True: "meets", False: "misses", None: "not measured"}[row.get("meets_goal")]
    return f"{verdict} (drop ≤ {float(goal):g})"


def _cells(row: Mapping[str, Any]) -> list[str]:
    if row.get("study_auroc") is None:
        return [str(row["condition"]), "—", "not measurable", "", "", "", "", goal_text(row)]
    return [
        str(row["condition"]),
        f"{int(row['studies'])} ({int(row['studies_with_bleed'])})",
        _number(row["study_auroc"]),
        _number(row.get("delta_auroc"), signed=True),
        _number(row.get("sensitivity")),
        _number(row.get("specificity")),
        _number(row.get("slice_auroc")),
        goal_text(row),
    ]


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Aligned columns, then the notes numbered under the table."""
    body = [_cells(row) for row in rows]
    notes: list[str] = []
    for cells, row in zip(body, rows, strict=True):
        if row.get("note"):
            notes.append(str(row["note"]))
            cells[0] = f"{cells[0]} [{len(notes)}]"
    widths = [max(len(r[i]) for r in [list(HEADERS), *body]) for i in range(len(HEADERS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [list(HEADERS), *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"[{k}] {note}" for k, note in enumerate(notes, start=1)]
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows as a Markdown table with a note column."""
    lines = [
        "| " + " | ".join(h[0].upper() + h[1:] for h in HEADERS) + " | Note |",
        "|" + " --- |" * (len(HEADERS) + 1),
    ]
    for row in rows:
        cells = [*_cells(row), str(row.get("note") or "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines
