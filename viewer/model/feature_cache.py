"""Slice features of a frozen encoder: computed once per series and encoder, kept in memory or on disk.

While the slice CNN is frozen (the sequence stage of :mod:`viewer.model.training`, every run of
:mod:`viewer.model.ablation`), a series' features do not change from one epoch or run to the next, and computing
them is most of the work on a CPU (28 minutes for 2,000 series here, against under a minute per sequence epoch).
Both key them by what makes them: the encoder's tensors (:func:`encoder_digest`, or a weights file's SHA-256)
and the series' prepared pixels, so a changed encoder, series or input size never reads stale features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from viewer.model.dataset import TrainingSeries
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import WindowStack
from viewer.progress import ProgressFn


@torch.no_grad()
def encode_series(
    model: SliceGRUNet, window: WindowStack, series: TrainingSeries, mirrored: bool = False
) -> Tensor:
    """``(n, feature_size)`` encoder features of a prepared series (left-right mirrored if asked), in eval mode."""
    device = next(model.parameters()).device
    hu = torch.from_numpy(series.hu.astype(np.float32))
    if mirrored:
        hu = hu.flip(-1)
    model.eval()
    return model.encode(window(hu).to(device))  # type: ignore[union-attr]


def encoder_digest(model: SliceGRUNet) -> str:
    """SHA-256 (hex) of the slice encoder's tensors, weights and BatchNorm statistics, by name and in order."""
    digest = hashlib.sha256()
    for name, tensor in model.encoder.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class FeatureCache:
    """Frozen encoder features of prepared series, plain and mirrored: ``folder/<key[:16]>/<series key>.safetensors``.

    ``model_key`` names the encoder: a weights file's SHA-256, or :func:`encoder_digest`. A series' key covers it,
    the series UID and the prepared pixels.
    """

    def __init__(self, folder: Path, model: SliceGRUNet, model_key: str) -> None:
        self.folder = Path(folder) / model_key[:16]
        self.model = model
        self.model_key = model_key
        self.window = WindowStack(model.config.windows)

    def key(self, series: TrainingSeries) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.model_key}\0{series.series_uid}\0{series.hu.shape}\0".encode())
        digest.update(np.ascontiguousarray(series.hu).tobytes())
        return digest.hexdigest()[:32]

    def features(self, series: TrainingSeries) -> Tensor:
        """``(2, n, F)`` float32 on the CPU: plain, then left-right mirrored."""
        path = self.folder / f"{self.key(series)}.safetensors"
        if path.is_file():
            try:
                cached = load_file(str(path)).get("features")
            except (SafetensorError, OSError, ValueError):
                cached = None
            if cached is not None and tuple(cached.shape[:2]) == (2, series.n_slices):
                return cached
        feats = torch.stack(
            [encode_series(self.model, self.window, series, mirrored) for mirrored in (False, True)]
        )
        feats = feats.to("cpu", torch.float32).contiguous()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        meta = {"series_uid": series.series_uid, "model_key": self.model_key}
        save_file({"features": feats}, str(tmp), metadata=meta)
        tmp.replace(path)
        return feats

    def bank(self, series: Sequence[TrainingSeries], progress: ProgressFn | None = None) -> list[Tensor]:
        """:meth:`features` of each series, in order."""
        out = []
        for k, one in enumerate(series):
            out.append(self.features(one))
            if progress is not None:
                progress(k + 1, len(series), "slice features")
        return out
