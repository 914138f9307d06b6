"""Scoring a model on labelled series: the numbers of the model card and of ``gru-viewer evaluate``.

Every series goes through the same path as in the viewer (index → loader → :class:`Preprocessor` → model →
explanations), so the card describes what a user gets. Metrics:

- study level: AUROC of the study probability, sensitivity and specificity at the card's operating threshold,
  expected calibration error (10 equal-width bins);
- slice level: AUROC of the per-slice probabilities against the bleed slices (all series with slice labels);
- hidden-state track (each slice's contribution to the study logit against the normal reference, in logit
  units shared by all series): AUROC of the ``combined`` track against the bleed slices, all slices of the series
  with a bleed pooled, the same over all series, and over the bleed series the model misses at the threshold;
  the share of the evidence on bleed slices that each direction carries on to later states
  (``Σ carried / Σ total``); and the
  Spearman correlation, all slices pooled, with the track of a copy whose GRU and slice head are randomised
  (the model-randomisation sanity check: a track that explains this model correlates weakly with it);
- pixel saliency: the pointing game (the map's maximum on the bleed mask, dilated by one model pixel, see
  :func:`pointing_tolerance_px`) on every bleed slice, with the same game played by a fully randomised copy of
  the model as the control a meaningful map must beat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from viewer.errors import CancelledError
from viewer.model.dataset import LabelledStack, iter_volumes
from viewer.model.explanations import (
    DEFAULT_HIDDEN_METHOD,
    DEFAULT_PIXEL_METHOD,
    DEFAULT_PIXEL_TARGET,
    DIRECTIONS,
    EXPLAINERS,
    PIXEL_METHODS,
    analyse_sequence,
    hidden_state_saliency,
    pointing_game,
    randomize_weights_cascading,
    spearman_rank_correlation,
)
from viewer.model.metrics import (
    METRIC_LABELS,
    auroc,
    expected_calibration_error,
    sensitivity_specificity,
)
from viewer.model.misses import GroupRate, rates_by_group
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import Preprocessor
from viewer.progress import CancelFn, ProgressFn
from viewer.synth.bleeds import KINDS


@dataclass
class SeriesOutcome:
    """What the model said about one labelled series (slice arrays on the original slices)."""

    series_uid: str
    label: int
    probability: float
    slice_labels: np.ndarray | None
    slice_probabilities: np.ndarray
    hidden_saliency: np.ndarray
    hidden_parts: dict[str, np.ndarray] = field(default_factory=dict)
    hidden_randomised: np.ndarray | None = None
    pointing_hits: list[bool] = field(default_factory=list)
    pointing_hits_randomised: list[bool] = field(default_factory=list)
    seconds: float = 0.0
    lesions: tuple[dict[str, Any], ...] = ()
    slice_mm: float = float("nan")


@dataclass
class EvaluationReport:
    metrics: dict[str, float]
    outcomes: list[SeriesOutcome]
    failed: list[str]
    pixel_method: str
    seconds: float
    pixel_target: str = DEFAULT_PIXEL_TARGET
    hidden_method: str = DEFAULT_HIDDEN_METHOD
    by_group: list[GroupRate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "by_group": [r.to_dict() for r in self.by_group],
            "pixel_method": self.pixel_method,
            "pixel_target": self.pixel_target,
            "hidden_method": self.hidden_method,
            "failed": self.failed,
            "seconds": round(self.seconds, 1),
            "series": [
                {
                    "series_uid": o.series_uid,
                    "label": o.label,
                    "probability": o.probability,
                    "pointing_hits": sum(o.pointing_hits),
                    "pointing_slices": len(o.pointing_hits),
                    "kinds": sorted({str(les["kind"]) for les in o.lesions}),
                    "slice_mm": o.slice_mm,
                }
                for o in self.outcomes
            ],
        }


def pointing_tolerance_px(inputs: Any, input_size: int) -> int:
    """One model pixel, in original pixels: the finest detail a map computed through the model can resolve.

    The model sees each slice resized to ``input_size`` pixels across; a gradient map at the original resolution
    is sharp only to that grid, so a peak one model pixel off the lesion's edge still points at it.
    """
    _, dy, dx = inputs.spacing
    rows, cols = inputs.hu.shape[1:]
    model_px_mm = max(rows * dy, cols * dx) / input_size
    return max(1, math.ceil(model_px_mm / min(dy, dx) - 1e-6))


def _hits(
    model: SliceGRUNet, inputs: Any, masks: dict[int, np.ndarray], method: str, target: str
) -> list[bool]:
    expl = EXPLAINERS[method](model, inputs, slices=sorted(masks), target=target)
    tolerance = pointing_tolerance_px(inputs, model.config.input_size)
    return [pointing_game(_only(expl, i), {i: masks[i]}, tolerance) == 1.0 for i in sorted(masks)]


def _only(expl: Any, index: int) -> Any:
    """The explanation restricted to one slice (the pointing game is scored per slice)."""
    return type(expl)(expl.method, expl.mapping, pixel_maps={index: expl.pixel_maps[index]})


def evaluate_series(
    model: SliceGRUNet,
    items: Sequence[LabelledStack],
    *,
    threshold: float,
    pixel_method: str = DEFAULT_PIXEL_METHOD,
    pixel_target: str = DEFAULT_PIXEL_TARGET,
    control_seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> EvaluationReport:
    """Run the model on every labelled series and compute the metrics (see the module docstring)."""
    if pixel_method not in PIXEL_METHODS:
        raise ValueError(f"pixel_method must be one of {PIXEL_METHODS}")
    started = time.perf_counter()
    model = model.eval()
    randomised = randomize_weights_cascading(model, len(model.layer_names_top_down()), seed=control_seed)
    sequence_randomised = randomize_weights_cascading(model, "gru", seed=control_seed)
    prep = Preprocessor.from_config(model.config)
    outcomes: list[SeriesOutcome] = []
    failed: list[str] = []
    for k, (item, volume, reason) in enumerate(iter_volumes(items, cancel)):
        if progress is not None:
            progress(k, len(items), "Evaluating")
        if volume is None:
            failed.append(f"series {item.label.series_uid}: {reason}")
            continue
        t0 = time.perf_counter()
        inputs = prep(volume.array, volume.spacing)
        result = analyse_sequence(model, inputs)
        slice_probs = inputs.mapping.to_original(result.output.slice_probabilities[0])
        hidden_expl = result.hidden_saliency
        hidden = hidden_expl.on_original_slices("combined")
        control = hidden_state_saliency(sequence_randomised, inputs, output=result.output)
        labels = item.label.slice_labels(volume.sop_uids)
        outcome = SeriesOutcome(
            item.label.series_uid,
            item.label.label,
            float(result.output.study_probability[0]),
            labels,
            slice_probs,
            hidden,
            {
                k: hidden_expl.on_original_slices(k)
                for k in hidden_expl.slice_values
                if k.startswith(DIRECTIONS)
            },
            control.on_original_slices("combined"),
            lesions=item.label.lesions,
            slice_mm=float(volume.spacing[0]),
        )
        mask = item.label.mask(volume.sop_uids) if item.label.label else None
        if mask is not None:
            masks = {int(i): mask[i] for i in np.flatnonzero(mask.any(axis=(1, 2)))}
            if masks:
                outcome.pointing_hits = _hits(model, inputs, masks, pixel_method, pixel_target)
                outcome.pointing_hits_randomised = _hits(
                    randomised, inputs, masks, pixel_method, pixel_target
                )
        outcome.seconds = time.perf_counter() - t0
        outcomes.append(outcome)
        if cancel is not None and cancel():
            raise CancelledError("Evaluation cancelled")
    if progress is not None:
        progress(len(items), len(items), "Evaluated")
    return EvaluationReport(
        summarise(outcomes, threshold),
        outcomes,
        failed,
        pixel_method,
        time.perf_counter() - started,
        pixel_target,
        by_group=rates_by_group(outcomes, threshold, KINDS),
    )


def _pooled_slice_auroc(outcomes: Sequence[SeriesOutcome], scores: str) -> float:
    """AUROC of one per-slice score against the bleed slices, all the series' slices pooled (NaN for none)."""
    if not outcomes:
        return float("nan")
    return auroc(
        np.concatenate([o.slice_labels for o in outcomes]),  # type: ignore[misc]
        np.concatenate([getattr(o, scores) for o in outcomes]),
    )


def _carried_share(outcomes: Sequence[SeriesOutcome], direction: str) -> float:
    """``Σ |carried| / Σ (|direct| + |carried|)`` of one direction's track over the bleed slices, in [0, 1].

    Magnitudes, because the parts are signed: a ratio of signed sums runs far outside [0, 1] (it read −1.17 on
    one held-out set) when a series' positive and negative contributions nearly cancel. NaN without bleed slices
    or when every part is zero.
    """
    carried = total = 0.0
    for o in outcomes:
        if o.slice_labels is None or f"{direction}_carried" not in o.hidden_parts:
            continue
        on = np.asarray(o.slice_labels) > 0.5
        moved = float(np.abs(o.hidden_parts[f"{direction}_carried"][on]).sum())
        carried += moved
        total += moved + float(np.abs(o.hidden_parts[f"{direction}_direct"][on]).sum())
    return carried / total if total > 0 else float("nan")


def _randomised_spearman(outcomes: Sequence[SeriesOutcome]) -> float:
    """Signed Spearman correlation of the hidden track with the GRU+head-randomised model's, slices pooled."""
    pairs = [(o.hidden_saliency, o.hidden_randomised) for o in outcomes if o.hidden_randomised is not None]
    if not pairs:
        return float("nan")
    return spearman_rank_correlation(
        np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs]), absolute=False
    )


def summarise(outcomes: Sequence[SeriesOutcome], threshold: float) -> dict[str, float]:
    """The metrics of :data:`METRIC_LABELS` from per-series outcomes."""
    labels = np.asarray([o.label for o in outcomes], dtype=float)
    probs = np.asarray([o.probability for o in outcomes], dtype=float)
    sens, spec = sensitivity_specificity(labels, probs, threshold)
    with_slices = [o for o in outcomes if o.slice_labels is not None]
    slice_auc = _pooled_slice_auroc(with_slices, "slice_probabilities")
    bleeds = [o for o in with_slices if o.label == 1]
    hidden_auc = _pooled_slice_auroc(bleeds, "hidden_saliency")
    missed = _pooled_slice_auroc([o for o in bleeds if o.probability < threshold], "hidden_saliency")
    hits = [h for o in outcomes for h in o.pointing_hits]
    hits_rand = [h for o in outcomes for h in o.pointing_hits_randomised]
    return {
        "studies": float(len(outcomes)),
        "studies_with_bleed": float(labels.sum()),
        "study_auroc": auroc(labels, probs),
        "threshold": float(threshold),
        "sensitivity": sens,
        "specificity": spec,
        "calibration_error": expected_calibration_error(labels, probs),
        "slice_auroc": slice_auc,
        "hidden_saliency_auroc": hidden_auc,
        "hidden_saliency_auroc_all_series": _pooled_slice_auroc(with_slices, "hidden_saliency"),
        "hidden_saliency_auroc_missed": missed,
        **{f"hidden_carried_magnitude_{d}": _carried_share(bleeds, d) for d in DIRECTIONS},
        "hidden_saliency_randomised_spearman": _randomised_spearman(outcomes),
        "pointing_game": float(np.mean(hits)) if hits else float("nan"),
        "pointing_game_randomised": float(np.mean(hits_rand)) if hits_rand else float("nan"),
        "pointing_slices": float(len(hits)),
    }


def format_metrics(metrics: dict[str, float]) -> str:
    """The metrics as an aligned two-column table (counts as integers, the rest to 4 decimals)."""
    width = max(len(v) for v in METRIC_LABELS.values())
    lines = []
    for key, label in METRIC_LABELS.items():
        if key not in metrics:
            continue
        value = metrics[key]
        text = (
            f"{int(value)}" if key in ("studies", "studies_with_bleed", "pointing_slices") else f"{value:.4f}"
        )
        lines.append(f"{label:<{width}}  {text:>8}")
    return "\n".join(lines)
