"""Choosing a trained model's operating threshold on validation series of one or more phantom families.

Training picks the threshold by Youden's J on its one validation set. A model meant for several families (issue
#14: the classic, wide and other phantoms) is better served by a threshold chosen on validation series of each:
one family's set alone (100 series) leaves the cut-off to a handful of borderline studies and says nothing about
how it transfers. ``gru-viewer threshold`` scores the validation folders with the viewer's own preprocessing and
forward pass (what Analyze computes), pools them, maximises Youden's J and, with ``update_card``, writes the
threshold into the card with how it was chosen. The weights, and so their SHA-256, are untouched: the threshold
lives in the card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewer.errors import CancelledError, ViewerError
from viewer.model.card import ModelCard, card_path_for, current_card, write_card
from viewer.model.dataset import LabelledStack, iter_volumes
from viewer.model.metrics import auroc, sensitivity_specificity, youden_threshold
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import Preprocessor
from viewer.progress import CancelFn, ProgressFn

POOLED = "all sets pooled"
RULE = "Youden's J (sensitivity + specificity − 1) maximised on the validation series of every set, pooled"


@dataclass(frozen=True)
class ScoredSet:
    """One validation folder's study labels and study probabilities (series that failed to load left out)."""

    description: str
    labels: np.ndarray
    probabilities: np.ndarray


@dataclass(frozen=True)
class SetAtThreshold:
    """How one validation set fares at a threshold."""

    description: str
    studies: int
    with_bleed: int
    study_auroc: float
    sensitivity: float
    specificity: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.description,
            "studies": self.studies,
            "studies_with_bleed": self.with_bleed,
            "study_auroc": round(self.study_auroc, 4),
            "sensitivity": round(self.sensitivity, 4),
            "specificity": round(self.specificity, 4),
        }


@dataclass(frozen=True)
class ThresholdChoice:
    """The pooled threshold, the one it replaces, and every set and all of them pooled at both."""

    threshold: float
    previous: float
    at_new: tuple[SetAtThreshold, ...]
    at_previous: tuple[SetAtThreshold, ...]
    pooled_at_new: SetAtThreshold
    pooled_at_previous: SetAtThreshold


def study_probabilities(
    model: SliceGRUNet,
    items: Sequence[LabelledStack],
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Study labels and probabilities of labelled series as the viewer computes them; and the series that failed.

    The same :class:`Preprocessor` and forward pass as Analyze, without the explanations, so a threshold chosen
    here is the one the viewer's probabilities are compared with.
    """
    model = model.eval()
    prep = Preprocessor.from_config(model.config)
    labels: list[int] = []
    probs: list[float] = []
    failed: list[str] = []
    for k, (item, volume, reason) in enumerate(iter_volumes(items, cancel)):
        if progress is not None:
            progress(k, len(items), "Scoring")
        if volume is None:
            failed.append(f"series {item.label.series_uid}: {reason}")
            continue
        inputs = prep(volume.array, volume.spacing)
        with torch.no_grad():
            out = model(inputs.tensor.to(next(model.parameters()).device))
        labels.append(int(item.label.label))
        probs.append(float(out.study_probability[0]))
        if cancel is not None and cancel():
            raise CancelledError("Scoring cancelled")
    if progress is not None:
        progress(len(items), len(items), "Scored")
    return np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64), failed


def at_threshold(scored: ScoredSet, threshold: float) -> SetAtThreshold:
    """One set's study AUROC and its sensitivity and specificity when ``probability ≥ threshold`` is positive."""
    sens, spec = sensitivity_specificity(scored.labels, scored.probabilities, threshold)
    return SetAtThreshold(
        scored.description,
        int(scored.labels.size),
        int(scored.labels.sum()),
        auroc(scored.labels, scored.probabilities),
        sens,
        spec,
    )


def choose_threshold(sets: Sequence[ScoredSet], previous: float) -> ThresholdChoice:
    """Youden's J on all the sets' series pooled; each set is reported at the new and the previous threshold.

    Raises
    ------
    ViewerError
        The pooled series lack either label: no threshold can be chosen from them.
    """
    labels = np.concatenate([s.labels for s in sets]) if sets else np.zeros(0, dtype=np.int64)
    if not labels.any() or labels.all():
        raise ViewerError(
            "Cannot choose a threshold",
            "the validation series need studies both with and without a bleed",
        )
    probs = np.concatenate([s.probabilities for s in sets])
    threshold = youden_threshold(labels, probs)
    pooled = ScoredSet(POOLED, labels, probs)
    return ThresholdChoice(
        threshold,
        previous,
        tuple(at_threshold(s, threshold) for s in sets),
        tuple(at_threshold(s, previous) for s in sets),
        at_threshold(pooled, threshold),
        at_threshold(pooled, previous),
    )


def record_threshold(
    model_path: str | Path,
    card: ModelCard,
    choice: ThresholdChoice,
    *,
    version: str | None = None,
    command: str = "",
) -> ModelCard:
    """Write ``choice`` into the card of ``model_path``: its threshold (top level and config), the version when
    given, and ``training['operating_point']`` saying how the threshold was chosen and what it replaced.

    Evaluations already on the card keep the threshold they were measured at (their ``threshold`` metric), so a
    reader sees which numbers predate the change until they are re-evaluated.
    """
    card = current_card(model_path, card)
    history = card.training.get("operating_point")
    entry = {
        "rule": RULE,
        "threshold": choice.threshold,
        "previous": choice.previous,
        "previous_version": card.version,
        "sets": [s.to_dict() for s in (*choice.at_new, choice.pooled_at_new)],
        "sets_at_previous": [s.to_dict() for s in (*choice.at_previous, choice.pooled_at_previous)],
        **({"command": command} if command else {}),
        **({"earlier": history} if isinstance(history, dict) else {}),
    }
    card.operating_threshold = choice.threshold
    card.config = replace(card.config, operating_threshold=choice.threshold)
    if version:
        card.version = version
    card.training = {**card.training, "operating_point": entry}
    write_card(card, card_path_for(model_path))
    return card


def format_choice(choice: ThresholdChoice) -> str:
    """A plain-text table: each set's study AUROC, and its sensitivity and specificity at both thresholds; the
    sets' descriptions below it."""
    old, new = f"at {choice.previous:.3f}", f"at {choice.threshold:.3f}"
    lines = [
        f"{'set':<4} {'studies':>7} {'AUROC':>6}  {'sens / spec ' + old:>22}  {'sens / spec ' + new:>22}"
    ]
    rows = zip(
        (*choice.at_new, choice.pooled_at_new), (*choice.at_previous, choice.pooled_at_previous), strict=True
    )
    for k, (now, before) in enumerate(rows, start=1):
        name = "all" if now.description == POOLED else str(k)
        lines.append(
            f"{name:<4} {now.studies:>7} {now.study_auroc:>6.3f}  "
            f"{f'{before.sensitivity:.2f} / {before.specificity:.2f}':>22}  "
            f"{f'{now.sensitivity:.2f} / {now.specificity:.2f}':>22}"
        )
    lines += [f"set {k}: {s.description}" for k, s in enumerate(choice.at_new, start=1)]
    return "\n".join(lines)
