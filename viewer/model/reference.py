"""The reference series the hidden-state track is measured against: slice features of a normal series.

The hidden-state track (:func:`viewer.model.explanations.hidden_state_saliency`) compares each slice's hidden state
with the state the same model reaches on a *normal* series of the same length. That normal series is stored once
per set of weights, as the mean slice features of the normal series of a data set at ``positions`` relative
positions along the series (first slice 0, last 1), so it fits any number of slices.

The file sits beside the weights (``name.safetensors`` → ``name.reference.safetensors``), a single float32 tensor
``features`` of shape ``(positions, feature_size)``, a few tens of KB. The model card records its SHA-256, and it is
checked at load like the weights' (see :mod:`viewer.model.weights`). It depends on the slice encoder, so it is
rebuilt whenever the encoder changes: at the end of ``gru-viewer train`` and by ``gru-viewer reference``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

REFERENCE_SUFFIX = ".reference.safetensors"
REFERENCE_POSITIONS = 32
REFERENCE_TENSOR = "features"


def reference_path_for(weights: str | Path) -> Path:
    """``model.safetensors`` → ``model.reference.safetensors`` in the same folder."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + REFERENCE_SUFFIX)


def resample_positions(features: Tensor, length: int) -> Tensor:
    """Slice features ``(n, F)`` resampled to ``length`` slices by linear interpolation along the series.

    Slice ``t`` of ``n`` sits at relative position ``(t + ½) / n``; positions beyond the first or last centre take
    the end slice's features.
    """
    n = features.shape[0]
    if n == 0 or length < 1:
        raise ValueError("need at least one slice in and one out")
    where = (torch.arange(length, dtype=torch.float64, device=features.device) + 0.5) * (n / length) - 0.5
    where = where.clamp(0.0, n - 1.0)
    lo = where.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    w = (where - lo).to(features.dtype).unsqueeze(-1)
    return features[lo] * (1 - w) + features[hi] * w


def build_reference(series_features: Iterable[Tensor], positions: int = REFERENCE_POSITIONS) -> Tensor:
    """Mean of the series' slice features by relative position: ``(positions, F)`` float32.

    Parameters
    ----------
    series_features:
        One ``(n_i, F)`` tensor of slice features per normal series (any lengths).
    """
    resampled = [resample_positions(f.detach().to("cpu", torch.float64), positions) for f in series_features]
    if not resampled:
        raise ValueError("a reference needs at least one normal series")
    return torch.stack(resampled).mean(0).to(torch.float32)


def reference_for_length(reference: Tensor, length: int) -> Tensor:
    """The reference series stretched to ``length`` slices: ``(length, F)``."""
    return resample_positions(reference, length)
