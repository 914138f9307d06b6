"""How a pixel saliency map is shown: one transform for the viewer's overlay and the report's key images.

A signed attribution map is shown by its magnitude, scaled to [0, 1] by its 99.5th percentile (values above
saturate; :func:`~viewer.model.explanations.normalise_map`). The overlay keeps it as uint8 0–:data:`MAP_LEVELS`
(a quarter of float32's memory; its colour table has ``MAP_LEVELS + 1`` entries).
"""

from __future__ import annotations

import numpy as np

from viewer.model.explanations import normalise_map

#: A display map value of ``MAP_LEVELS`` is a normalised saliency of 1.
MAP_LEVELS = 255


def saliency_magnitude(raw: np.ndarray) -> np.ndarray:
    """``|raw|`` scaled to [0, 1] by its 99.5th percentile (float32), as the report draws it."""
    return normalise_map(raw)


def to_display_map(raw: np.ndarray) -> np.ndarray:
    """:func:`saliency_magnitude` of ``raw`` as uint8 0–:data:`MAP_LEVELS`, as the overlay draws it."""
    return np.round(saliency_magnitude(raw) * MAP_LEVELS).astype(np.uint8)
