"""A private network namespace for this test process: only loopback, nothing reachable from outside.

Orthanc 1.10 listens on every interface for both its DICOM and HTTP ports and cannot be told otherwise, so
the test PACS runs inside a namespace of its own. The test process's main thread enters it too (``unshare``
here, then every thread and subprocess started from it lives there), so the tests' own clients reach the PACS
on 127.0.0.1, and :func:`leave` returns the thread to the namespace it came from. Linux only, needs
CAP_SYS_ADMIN (root).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

CLONE_NEWNET = 0x40000000


class Namespace:
    """The private namespace entered by :func:`enter`."""

    def __init__(self, original_fd: int) -> None:
        self.original_fd = original_fd

    def leave(self) -> None:
        """Return the calling thread to the original namespace."""
        if _libc().setns(self.original_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original network namespace failed")
        os.close(self.original_fd)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def unavailable() -> str | None:
    """Why a private namespace cannot be had here, or None."""
    if not sys.platform.startswith("linux"):
        return "a private network namespace needs Linux"
    if os.geteuid() != 0:
        return "entering a private network namespace needs root (CAP_SYS_ADMIN)"
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "/proc/thread-self/ns/net is missing"
    return None


def enter() -> Namespace:
    """Move the calling thread into a new network namespace with loopback up.

    Raises
    ------
    OSError
        The kernel refused (no privilege, namespaces disabled) or loopback could not be brought up.
    """
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        os.close(original)
        raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
    ns = Namespace(original)
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        ns.leave()
        raise
    return ns
