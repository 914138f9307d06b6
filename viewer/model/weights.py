"""Weights as safetensors, each with a model card beside it.

Weights are only ever read with ``safetensors`` (a flat header and raw tensors). Pickled checkpoints
(``torch.save`` files, ``.pt``/``.pth``/``.ckpt``) can run code when loaded, so they are refused with a message
that says so, and never opened with ``torch.load``.

The card beside the weights (:mod:`viewer.model.card`) holds their SHA-256; loading checks the weights against it
before using them.

A card may also name a reference series (``name.reference.safetensors``, see :mod:`viewer.model.reference`) with its
SHA-256; loading then requires that file, checks its hash the same way and attaches it to the model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from viewer.errors import ViewerError
from viewer.model.card import (
    DEFAULT_INPUT_REQUIREMENTS,
    DEFAULT_INTENDED_USE,
    ModelCard,
    card_path_for,
    read_card,
    sha256_file,
    write_card,
)
from viewer.model.network import SliceGRUNet
from viewer.model.reference import REFERENCE_TENSOR, reference_path_for

_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit on the JSON header


def _check_safetensors_format(path: Path, what: str = "Cannot load model weights") -> None:
    """Refuse anything that is not a safetensors file, before any parser sees it.

    A safetensors file is an 8-byte little-endian header length, a JSON object, then raw tensor bytes. Only when
    that layout is absent is the file diagnosed further (zip checkpoint, pickle), since a valid header length can
    begin with any byte.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            header = fh.read(header_len) if 0 < header_len <= min(_MAX_HEADER, size - 8) else b""
    except OSError as exc:
        raise ViewerError(what, exc.strerror or str(exc), path) from exc
    try:
        parsed = json.loads(header.decode("utf-8")) if header else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        return
    refusal = "pickles can run code when loaded, so GRU Viewer only accepts safetensors files"
    if head[:4] == b"PK\x03\x04":
        raise ViewerError(
            what, f"the file is a PyTorch checkpoint (a zip archive of pickles); {refusal}", path
        )
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise ViewerError(what, f"the file is a Python pickle; {refusal}", path)
    if len(head) < 8:
        raise ViewerError(what, "the file is too short to be a safetensors file", path)
    raise ViewerError(what, "the file is not in safetensors format (no valid header)", path)


def save_weights(
    model: SliceGRUNet,
    path: str | Path,
    *,
    name: str,
    version: str,
    training_data: str = "",
    metrics: dict[str, float] | None = None,
    intended_use: str = DEFAULT_INTENDED_USE,
    input_requirements: str = DEFAULT_INPUT_REQUIREMENTS,
    limitations: str = "",
    operating_threshold: float | None = None,
    training: dict[str, Any] | None = None,
    reference: Tensor | None = None,
    reference_data: str = "",
) -> ModelCard:
    """Write ``model``'s weights as safetensors at ``path`` and its card next to them; returns the card.

    The operating threshold defaults to the model config's. ``reference`` (``(positions, feature_size)`` slice
    features of normal series, see :mod:`viewer.model.reference`) is written beside the weights and named on the
    card, with ``reference_data`` saying where it came from.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError("weights files end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt", "name": name, "version": version})
    card = ModelCard(
        name=name,
        version=version,
        sha256=sha256_file(path),
        config=model.config,
        intended_use=intended_use,
        input_requirements=input_requirements,
        training_data=training_data,
        metrics=dict(metrics or {}),
        operating_threshold=(
            model.config.operating_threshold if operating_threshold is None else float(operating_threshold)
        ),
        limitations=limitations,
        training=dict(training or {}),
    )
    if reference is not None:
        card.reference = write_reference(reference, path, reference_data)
    write_card(card, card_path_for(path))
    return card


def write_reference(features: Tensor, weights: str | Path, data: str = "") -> dict[str, Any]:
    """Write a reference series beside ``weights``; returns the card's ``reference`` entry (file, SHA-256, data).

    The card itself is not written (see :func:`attach_reference`).
    """
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError("a reference series is (positions, feature_size) with at least one position")
    path = reference_path_for(weights)
    tensors = {REFERENCE_TENSOR: features.detach().to("cpu", torch.float32).contiguous()}
    save_file(tensors, str(path), metadata={"format": "pt", "kind": "gru-viewer-reference-series"})
    return {"file": path.name, "sha256": sha256_file(path), "positions": int(features.shape[0]), "data": data}


def attach_reference(weights: str | Path, features: Tensor, data: str = "") -> ModelCard:
    """Write (or replace) the reference series of the weights at ``weights`` and record it on their card.

    The weights and their SHA-256 stay as they are; only the card's ``reference`` entry changes.
    """
    card = read_card(card_path_for(weights))
    if features.dim() != 2 or features.shape[1] != card.config.feature_size:
        raise ValueError(f"the reference must be (positions, {card.config.feature_size}) slice features")
    card.reference = write_reference(features, weights, data)
    write_card(card, card_path_for(weights))
    return card


def load_reference(weights: str | Path, card: ModelCard) -> Tensor:
    """The reference series named on ``card``, checked against its SHA-256; ``(positions, feature_size)``.

    Raises
    ------
    ViewerError
        The file is missing, not safetensors, not the one on the card, or of the wrong shape.
    """
    path = reference_path_for(weights)
    what = "Cannot load the model's reference series"
    if not path.is_file():
        raise ViewerError(
            what,
            "the file does not exist; the model card names it (rebuild it with `gru-viewer reference --model "
            "FILE --data DIR`)",
            path,
        )
    _check_safetensors_format(path, what)
    actual = sha256_file(path)
    if actual != card.reference.get("sha256"):
        raise ViewerError(
            what,
            f"the file's SHA-256 ({actual[:12]}…) is not the one on the model card "
            f"({str(card.reference.get('sha256'))[:12]}…): it was changed or damaged after the card was written",
            path,
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ViewerError(what, f"the safetensors file is damaged ({exc})", path) from exc
    features = tensors.get(REFERENCE_TENSOR)
    size = card.config.feature_size
    if features is None or features.dim() != 2 or features.shape[0] < 1 or features.shape[1] != size:
        raise ViewerError(what, f"it does not hold a ({REFERENCE_TENSOR}: positions × {size}) tensor", path)
    return features.to(torch.float32)


def load_weights(
    path: str | Path,
    card_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    with_reference: bool = True,
) -> tuple[SliceGRUNet, ModelCard]:
    """Load weights checked against their card; returns the model in eval mode and the card.

    When the card names a reference series, it is loaded (checked the same way) into
    ``model.reference_features``; ``with_reference=False`` skips it (to rebuild a lost or stale one).

    Raises
    ------
    ViewerError
        The weights, the card or the reference series the card names are missing; a file is a pickle or
        otherwise not safetensors; its SHA-256 is not the card's (changed or damaged); tensors are missing,
        unexpected or of the wrong shape for the card's config.
    """
    path = Path(path)
    what = "Cannot load model weights"
    if not path.is_file():
        raise ViewerError(what, "the file does not exist", path)
    card = read_card(card_path if card_path is not None else card_path_for(path))
    _check_safetensors_format(path)
    actual = sha256_file(path)
    if actual != card.sha256:
        raise ViewerError(
            what,
            f"the file's SHA-256 ({actual[:12]}…) is not the one on its model card ({card.sha256[:12]}…): the "
            "weights were changed or damaged after the card was written",
            path,
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ViewerError(what, f"the safetensors file is damaged ({exc})", path) from exc
    model = SliceGRUNet(card.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing tensors {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_short(unexpected)}")
    if wrong:
        shapes = [f"{k} {tuple(tensors[k].shape)} ≠ {tuple(expected[k].shape)}" for k in wrong[:5]]
        problems.append(f"wrong shapes: {'; '.join(shapes)}{' …' if len(wrong) > 5 else ''}")
    if problems:
        raise ViewerError(
            what, f"the weights do not fit the architecture on the model card ({', '.join(problems)})", path
        )
    model.load_state_dict(tensors, strict=True)
    if with_reference and card.reference:
        model.reference_features = load_reference(path, card)
    return model.to(device).eval(), card


def _short(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
