"""Which device runs the model: CUDA, then Apple MPS, then the CPU, unless the user says otherwise."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
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
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's name (Linux ``/proc/cpuinfo``), else what :mod:`platform` says, else ``"unknown CPU"``."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_hardware(device: torch.device) -> str:
    """What a training run ran on, for the model card: the device, the processor, its cores and torch's version.

    E.g. ``"CPU (2 threads); AMD EPYC, 2 cores; torch 2.13.0+cpu"`` (the machine the shipped weights came from).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return f"{describe_device(device)}; {_cpu_model()}, {cores} core{'' if cores == 1 else 's'}; torch {torch.__version__}"


def _runnable_elsewhere(samples: int = 5, stat: Path = Path("/proc/stat")) -> int | None:
    """Threads runnable on the machine right now besides the caller (Linux ``procs_running``), or None.

    The fewest over a few samples 2 ms apart: busy programs are runnable in every sample, a passing blip is not.
    """
    counts = []
    for i in range(samples):
        try:
            text = stat.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("procs_running "):
                counts.append(int(line.split()[1]) - 1)
                break
        else:
            return None
        if i + 1 < samples:
            time.sleep(0.002)
    return max(0, min(counts))


def cpu_threads_for_now(cores: int | None = None, busy: int | None = None) -> int:
    """How many intra-op threads an analysis should use on the CPU now: the cores other programs leave free.

    torch's default (one thread per core) is fastest only on an idle machine. On a shared workstation a thread
    that finds its core taken stalls every parallel step of the others, and the backward pass suffers most:
    measured on 2 cores with two other busy processes, Analyze took 7.2 s with 2 threads and 1.3 s with 1, and
    with one other busy process 2.1 s against 0.56 s. So count the cores and the programs runnable right now,
    and leave theirs to them (at least one thread).
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if busy is None:
        busy = _runnable_elsewhere()
    if busy is None:  # not Linux: the load average is the closest cheap estimate
        try:
            busy = round(os.getloadavg()[0])
        except (AttributeError, OSError):
            busy = 0
    return max(1, min(cores, cores - busy))


def use_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: :func:`cpu_threads_for_now`); returns the number."""
    threads = threads or cpu_threads_for_now()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
