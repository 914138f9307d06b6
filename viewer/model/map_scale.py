"""Scaling a saliency map to [0, 1] for drawing, kept free of torch so the window can import it at start-up."""

from __future__ import annotations

import numpy as np


def normalise_map(values: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """``|values|`` divided by its ``percentile``-th percentile and clipped to [0, 1] (all zeros stay zeros)."""
    mag = np.abs(np.asarray(values, dtype=np.float32))
    top = float(np.percentile(mag, percentile)) if mag.size else 0.0
    if top <= 0:
        top = float(mag.max()) if mag.size else 0.0
    if top <= 0:
        return np.zeros_like(mag)
    return np.clip(mag / top, 0.0, 1.0)
