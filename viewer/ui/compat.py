"""Guards against known faults of the Qt binding that would otherwise abort the viewer.

PySide6 6.12.0 on CPython 3.11: every Python-side ``Signal.emit()`` drops one reference to ``True`` that it never
took (measured here: 50 emits, ``sys.getrefcount(True)`` 50 lower; 6.11.3 does not do it). ``True`` starts with a
few thousand references, so after that many emits (mouse moves, slice changes, pyqtgraph's own range signals,
worker progress) CPython deallocates ``True`` and aborts with "bool_dealloc: deallocating True or False".
CPython 3.12 made such singletons immortal; on 3.11 :func:`guard_signal_refcount_leak` does the same by hand
when, and only when, a probe shows the leak.
"""

from __future__ import annotations

import ctypes
import logging
import sys

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

# Added to the reference counts: 2**40 emits before the count could reach zero again.
_HEADROOM = 1 << 40
_guarded = False


class _Probe(QObject):
    fired = Signal()


def signal_emit_leaks_true(n: int = 32) -> bool:
    """Whether emitting a Python-side signal drops references to ``True`` (the PySide6 6.12.0 fault)."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(n):
        probe.fired.emit()
    return sys.getrefcount(True) <= before - n // 2


def guard_signal_refcount_leak() -> bool:
    """Make ``True``, ``False`` and ``None`` effectively immortal if the binding leaks their references.

    Returns True when the guard is in place (now or from an earlier call). Does nothing on CPython ≥ 3.12
    (immortal already), on other interpreters, or when the probe finds no leak.
    """
    global _guarded
    if _guarded:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if not signal_emit_leaks_true():
        return False
    for singleton in (True, False, None):
        # ob_refcnt is the first field of every CPython object.
        ctypes.c_ssize_t.from_address(id(singleton)).value += _HEADROOM
    _guarded = True
    log.info(
        "this PySide6 build leaks references on Signal.emit(); guarded (upgrade or pin PySide6 != 6.12.0)"
    )
    return True


M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
VOLUME_MMAP_THRESHOLD = 4 * 1024 * 1024


def return_large_buffers_to_the_os(threshold: int = VOLUME_MMAP_THRESHOLD) -> bool:
    """Have glibc map every allocation of ``threshold`` bytes or more on its own, so freeing it returns it.

    glibc raises its mmap threshold each time a large mapped block is freed (up to 32 MiB), after which volumes
    evicted from the cache stay in the heap as fragments: measured here, resident memory crept from 450 to
    620 MB over 40 series of 30 MB with a 256 MB cache. A fixed threshold (which also turns that adjustment
    off) kept it flat at 437 MB. Returns False where there is no glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
