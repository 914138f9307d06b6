"""How much of this machine's memory one loaded series may take, checked before its array is allocated.

A series that needs more than a share of the installed memory (default half; ``GRU_VIEWER_MAX_SERIES_RAM_SHARE``
sets another share, e.g. ``0.8``) is refused with its size, rather than pushing the machine into swap while
the viewer, the analysis and the other programs compete for what is left.
"""

from __future__ import annotations

import os

from viewer.errors import ViewerError

MAX_SERIES_RAM_SHARE = 0.5
MAX_SERIES_RAM_SHARE_ENV = "GRU_VIEWER_MAX_SERIES_RAM_SHARE"


def max_series_ram_share() -> float:
    """The share of installed memory one series may take: ``$GRU_VIEWER_MAX_SERIES_RAM_SHARE`` when it is a
    positive number, else :data:`MAX_SERIES_RAM_SHARE`."""
    try:
        value = float(os.environ.get(MAX_SERIES_RAM_SHARE_ENV, ""))
    except ValueError:
        return MAX_SERIES_RAM_SHARE
    return value if value > 0 and value == value else MAX_SERIES_RAM_SHARE


def installed_memory() -> int:
    """Bytes of memory installed in this machine (psutil)."""
    import psutil

    return int(psutil.virtual_memory().total)


def _size(nbytes: float) -> str:
    if nbytes >= 1e9:
        return f"{nbytes / 1e9:.1f} GB"
    if nbytes >= 1e6:
        return f"{nbytes / 1e6:.0f} MB"
    return f"{nbytes / 1e3:.0f} kB"


def memory_refusal(nbytes: int, total: int | None = None) -> str:
    """Why a series of ``nbytes`` is refused ("" when it may be loaded) on a machine with ``total`` bytes."""
    total = installed_memory() if total is None else int(total)
    share = max_series_ram_share()
    if nbytes <= share * total:
        return ""
    return (
        f"this series needs {_size(nbytes)}, more than {share * 100:.3g} % of this machine's memory "
        f"({_size(total)}; {MAX_SERIES_RAM_SHARE_ENV} sets the share)"
    )


def refuse_if_too_large(name: str, nbytes: int) -> None:
    """Raise :class:`~viewer.errors.ViewerError` ("Could not load ``name``") when :func:`memory_refusal` says so.

    Raises
    ------
    ViewerError
        When the series needs more than the allowed share of this machine's memory.
    """
    refusal = memory_refusal(nbytes)
    if refusal:
        raise ViewerError("Could not load " + name, refusal)
