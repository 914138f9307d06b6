"""What tells a file is still the one read before: its size, modification time and status-change time.

Size and modification time alone miss a file replaced by another of the same size whose modification time was
carried over (``cp -p``, ``rsync -t``, ``tar`` or ``unzip`` of another version, a tool restoring times): a cached
header would then name the wrong patient, or point at pixel data that has moved. No user tool sets the
status-change time (``st_ctime``): writing, replacing or renaming a file changes it. (On Windows ``st_ctime`` is the
creation time, which a replaced file also changes.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileStamp:
    """A file's size (bytes), modification time and status-change time (ns since the epoch)."""

    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        """The stamp of a ``stat`` result (``os.stat``, ``os.fstat`` or ``DirEntry.stat``)."""
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns)
