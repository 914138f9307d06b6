"""The model an analysis runs: the shipped default weights, or a file the user chose, loaded once and checked."""

from __future__ import annotations

import threading
from pathlib import Path

from viewer.errors import ViewerError
from viewer.model.card import ModelCard, default_model_paths
from viewer.model.network import SliceGRUNet
from viewer.model.weights import load_weights

_lock = threading.Lock()
_loaded: dict[tuple[str, int, int], tuple[SliceGRUNet, ModelCard]] = {}


def load_model(path: str | Path | None = None) -> tuple[SliceGRUNet, ModelCard]:
    """The model at ``path`` (default: the shipped weights) on the CPU, in eval mode; cached per file version.

    Raises
    ------
    ViewerError
        No weights are installed, or they fail the safetensors / SHA-256 / architecture checks.
    """
    weights = Path(path) if path is not None else default_model_paths().weights
    if not weights.is_file():
        raise ViewerError(
            "No model installed",
            "the weights file is missing; reinstall GRU Viewer or train one with 'gru-viewer train'",
            weights,
        )
    stat = weights.stat()
    key = (str(weights.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _lock:
        if key not in _loaded:
            _loaded[key] = load_weights(weights)
        return _loaded[key]
