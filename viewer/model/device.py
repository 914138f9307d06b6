"""Which device runs the model: CUDA, then Apple MPS, then the CPU, unless the user says otherwise."""

from __future__ import annotations

from typing import Literal

import torch

from viewer.errors import ViewerError

Preference = Literal["auto", "cpu", "cuda", "mps"]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Device kinds usable here, best first; ``"cpu"`` is always last."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return [*found, "cpu"]


def pick_device(preference: Preference | str = "auto") -> torch.device:
    """The device to run on.

    Parameters
    ----------
    preference:
        ``"auto"`` picks CUDA > MPS > CPU; ``"cpu"`` forces the CPU; ``"cuda"`` (or ``"cuda:1"``) and ``"mps"``
        insist on that device.

    Raises
    ------
    ViewerError
        The requested device is not available here.
    """
    pref = preference.strip().lower()
    if pref == "auto":
        return torch.device(available_devices()[0])
    try:
        device = torch.device(pref)
    except RuntimeError as exc:
        raise ViewerError(
            "Unknown compute device", f"{preference!r} is not one of auto, cpu, cuda, mps"
        ) from exc
    if device.type == "cpu":
        return device
    if device.type not in available_devices():
        raise ViewerError(
            "Compute device not available",
            f"{preference!r} was requested but this machine offers {', '.join(available_devices())}",
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ViewerError("Compute device not available", f"there is no CUDA device {device.index}")
    return device


def describe_device(device: torch.device) -> str:
    """Human-readable name for reports and the status bar, e.g. ``"CUDA (NVIDIA H100)"`` or ``"CPU (2 threads)"``."""
    if device.type == "cuda":
        try:
            return f"CUDA ({torch.cuda.get_device_name(device)})"
        except (RuntimeError, AssertionError):  # no driver, or a CPU-only build of torch
            return "CUDA"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
