"""Help → About: version, the installed model's card in a few lines, and the intended use."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from viewer import __version__
from viewer.model.training_history import training_words
from viewer.resources import resource_path

INTENDED_USE = (
    "GRU Viewer is research and teaching software for viewing DICOM head CT and for showing how a slice-GRU "
    "classifier reaches its output. It is not a medical device: it must not be used for diagnosis, triage or "
    "any clinical decision, and its findings must not replace a radiologist's reading."
)
NO_MODEL = "no model installed"

_NAME_KEYS = ("name", "model_name", "title", "model")
_VERSION_KEYS = ("version", "model_version")
_SUMMARY_KEYS = (
    ("task", "Task"),
    ("finding", "Finding"),
    ("training_data", "Training data"),
    ("trained_on", "Training data"),
    ("data", "Training data"),
    ("metrics", "Metrics"),
    ("evaluation", "Evaluation"),
    ("limitations", "Limitations"),
)


#: The scores the About box names for an evaluation, when a card's metrics hold them (the card has the rest).
_HEADLINE = (
    ("study_auroc", "study AUROC"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("slice_auroc", "slice AUROC"),
)


def _scores(metrics: Any, data: Any = None) -> str:
    """``study AUROC 0.988, sensitivity 0.958, …`` (on what, when ``data`` says), or ``""`` without those keys."""
    if not isinstance(metrics, dict):
        return ""
    parts = [f"{label} {metrics[k]:.3f}" for k, label in _HEADLINE if isinstance(metrics.get(k), int | float)]
    if not parts:
        return ""
    on = f" on {training_words(data)}" if isinstance(data, str) and data.strip() else ""
    return ", ".join(parts) + on


def _evaluation_lines(card: dict[str, Any]) -> list[str]:
    """The card's main evaluation and each further one (e.g. other phantom families), one line each."""
    evaluation = card.get("evaluation")
    main = _scores(card.get("metrics"), evaluation.get("data") if isinstance(evaluation, dict) else None)
    lines = [f"Metrics: {_short(main)}"] if main else []
    for extra in card.get("evaluations") or []:
        if isinstance(extra, dict) and (scores := _scores(extra.get("metrics"))):
            lines.append(_short(f"{extra.get('title') or 'Further evaluation'}: {scores}"))
    return lines


def _first(card: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = card.get(key)
        if isinstance(value, str | int | float) and str(value).strip():
            return str(value).strip()
    return ""


def _short(value: Any, limit: int = 240) -> str:
    if isinstance(value, dict):
        text = ", ".join(
            f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}"
            for k, v in value.items()
            if isinstance(v, str | int | float)
        )
    elif isinstance(value, list | tuple):
        text = "; ".join(str(v) for v in value if isinstance(v, str | int | float))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def find_model_cards(folder: Path | None = None) -> list[Path]:
    """Model cards (``*.json``) in ``folder`` (default: the shipped models folder), sorted."""
    folder = folder if folder is not None else resource_path("models")
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def model_card_summary(folder: Path | None = None) -> str:
    """A few plain lines summarising the first readable model card in ``resources/models``.

    Returns ``"no model installed"`` when there is none.
    """
    for path in find_model_cards(folder):
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(card, dict):
            continue
        name = _first(card, _NAME_KEYS) or path.stem
        version = _first(card, _VERSION_KEYS)
        lines = [f"{name} {version}".strip()]
        seen: set[str] = set()
        evaluations = _evaluation_lines(card)
        if evaluations:
            seen |= {"Metrics", "Evaluation"}
        for key, label in _SUMMARY_KEYS:
            if label == "Metrics" and evaluations:
                lines += evaluations
            if key in card and label not in seen and card[key] not in (None, "", [], {}):
                value = card[key]
                limit = 240
                if key == "training_data" and isinstance(value, str):
                    value, limit = training_words(value), 480  # a chain of runs names several data sets
                lines.append(f"{label}: {_short(value, limit)}")
                seen.add(label)
        return "\n".join(lines)
    return NO_MODEL


def intended_use(folder: Path | None = None) -> str:
    """The model card's intended-use statement when it has one, else the viewer's own."""
    for path in find_model_cards(folder):
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(card, dict):
            text = card.get("intended_use")
            if isinstance(text, str) and text.strip():
                return text.strip()
    return INTENDED_USE


def about_html() -> str:
    """The About box's text: version, model card summary and intended use."""
    card = html.escape(model_card_summary()).replace("\n", "<br>")
    return (
        f"<h3>GRU Viewer {html.escape(__version__)}</h3>"
        "<p>A DICOM viewer for non-contrast head CT with an interpretable slice-GRU classifier.</p>"
        f"<p><b>Model</b><br>{card}<br><i>Help ▸ Model Card shows the whole card.</i></p>"
        f"<p><b>Intended use</b><br>{html.escape(intended_use())}</p>"
    )


def show_about(parent: QWidget | None) -> QMessageBox:
    """Open the About box over ``parent`` (window-modal, returns at once) and return it."""
    box = QMessageBox(parent)
    box.setWindowTitle("About GRU Viewer")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_html())
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.open()
    return box
