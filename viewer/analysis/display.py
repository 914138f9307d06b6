"""How a pixel saliency map is shown: one transform for the viewer's overlay, the report's key images and the PNG.

A signed attribution map is shown by its magnitude, scaled to [0, 1] (values above 1 saturate). Two scalings:

- **series** (the default): the map's shape per slice (``|map|`` over its own 99.5th percentile), drawn at the
  strength of that slice's bleed probability (:attr:`~viewer.analysis.result.AnalysisResult.slice_probabilities`,
  one fixed scale for every slice and every series). A slice the model finds normal (probability 0.001) stays
  below any overlay threshold; a slice it is sure of shows its strongest pixels at full intensity.
- **slice**: each map by its own 99.5th percentile alone (:func:`~viewer.model.map_scale.normalise_map`), so
  every slice, a normal one too, shows its own strongest pixels at full intensity.

The raw attribution cannot serve as the common scale itself: gradient × input of the slice logit is largest
where the model is *least* decided. On the demo phantom the 99.5th percentile of ``|map|`` is about 10⁻⁴ on the
bleed slices (the GRU state saturates there, and so does the gradient) and about 0.2–2 on normal ones, so one
raw scale would light up the normal slices and hide the bleed.

The overlay keeps a map as uint8 0–:data:`MAP_LEVELS` (a quarter of float32's memory; its colour table has
``MAP_LEVELS + 1`` entries).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from viewer.model.map_scale import normalise_map

#: A display map value of ``MAP_LEVELS`` is a normalised saliency of 1.
MAP_LEVELS = 255
#: Percentile of ``|map|`` that becomes the slice's full strength.
PERCENTILE = 99.5
#: The scalings a viewer offers: to the series (default), or each slice by itself.
SCALINGS: tuple[str, ...] = ("series", "slice")
#: How the overlay legend and the report name each scaling.
SCALING_NAMES: dict[str, str] = {"series": "scaled to the series", "slice": "scaled per slice"}


def saliency_magnitude(raw: np.ndarray, weight: float | None = None) -> np.ndarray:
    """``|raw|`` over its 99.5th percentile, times ``weight``, clipped to [0, 1] (float32), as the report draws it.

    ``weight`` None: scaled per slice (the slice's strongest pixels reach 1 whatever the slice is).
    """
    shape = normalise_map(raw, PERCENTILE)
    if weight is None:
        return shape
    return np.clip(shape * np.float32(min(max(float(weight), 0.0), 1.0)), 0.0, 1.0)


def to_display_map(raw: np.ndarray, weight: float | None = None) -> np.ndarray:
    """:func:`saliency_magnitude` of ``raw`` as uint8 0–:data:`MAP_LEVELS`, as the overlay draws it."""
    return np.round(saliency_magnitude(raw, weight) * MAP_LEVELS).astype(np.uint8)


def slice_weight(slice_probabilities: Sequence[float] | np.ndarray, k: int, scaling: str) -> float | None:
    """The ``weight`` of :func:`saliency_magnitude` for slice ``k``: its bleed probability when scaled to the series
    (``scaling`` anything but ``"slice"``), None when scaled per slice (or ``k`` has no probability)."""
    values = np.asarray(slice_probabilities, dtype=np.float64).ravel()
    if scaling == "slice" or not 0 <= k < values.size:
        return None
    return float(values[k])


# -- the hidden-state track ---------------------------------------------------------------------------------------

#: The hidden-state track's plot axis in logit units: fixed, so a flat normal series looks flat and two series compare;
#: it grows by whole logits only when a value lies outside (:func:`hidden_axis`).
HIDDEN_AXIS: tuple[float, float] = (-1.0, 2.0)
#: Contribution (logit units) at which the slider strip's colours saturate (warm towards bleed, cool against).
HIDDEN_COLOUR_LIMIT = 1.0
#: How much the track's sum overshot the change of the study logit on the validation series (docs/model.md).
HIDDEN_OVERSHOOT = "about 10 %"


def hidden_axis(*tracks: np.ndarray) -> tuple[float, float]:
    """:data:`HIDDEN_AXIS`, widened to whole logits when a finite value of ``tracks`` lies outside it."""
    lo, hi = HIDDEN_AXIS
    values = (
        np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tracks]) if tracks else np.zeros(0)
    )
    values = values[np.isfinite(values)]
    if values.size:
        lo = min(lo, float(np.floor(values.min())))
        hi = max(hi, float(np.ceil(values.max())))
    return lo, hi


def format_contribution(value: float) -> str:
    """A hidden-state contribution with its sign, in logit units: ``+0.62``, ``−0.04``, ``0.00``."""
    v = float(value)
    if not np.isfinite(v):
        return "—"
    if round(v, 2) == 0:
        return "0.00"
    return f"{'+' if v > 0 else '−'}{abs(v):.2f}"
