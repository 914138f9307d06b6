"""Help ▸ Model Card: the whole card of the model Analyze uses, inside the viewer.

The About box names the model and its headline scores; a reader deciding how far to trust a finding needs the
rest: what it was trained on, run by run, what it misses by bleed kind, size and contrast, how it holds up under
noise or tilt, the ablation and the limitations. It is rendered from the card's JSON (the file whose SHA-256 the
weights are checked against) with the same code that writes the shipped Markdown, so it cannot drift from it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QWidget

from viewer.errors import ViewerError
from viewer.model.card import card_path_for, card_to_markdown, default_model_paths, read_card
from viewer.ui.error_dialog import report_exception
from viewer.ui.text_dialog import TextDialog, show_non_modal


def model_card_text(weights: str | Path | None = None) -> tuple[str, str]:
    """``(title, markdown)`` of the card of ``weights`` (default: the shipped model's).

    Raises
    ------
    ViewerError
        When the card is missing or unreadable (the message names the file and why).
    """
    path = card_path_for(weights) if weights is not None else default_model_paths().card
    card = read_card(path)
    return f"Model card: {card.name} {card.version}", card_to_markdown(card)


class ModelCardDialog(TextDialog):
    """A non-modal dialog with a model card's Markdown in a text browser (tables included)."""

    def __init__(self, title: str, markdown: str, parent: QWidget | None = None) -> None:
        super().__init__(title, (960, 760), parent)
        self.browser.setMarkdown(markdown)


def show_model_card(parent: QWidget | None, weights: str | Path | None = None) -> ModelCardDialog | None:
    """Open the card of ``weights`` (non-modal, deleted on close); an unreadable card is reported, not raised."""
    try:
        title, markdown = model_card_text(weights)
    except ViewerError as exc:
        report_exception(exc)
        return None
    return show_non_modal(ModelCardDialog(title, markdown, parent))
