"""The shape of a retrieve, whatever the protocol: progress counts, a cancel token, the result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class CancelToken:
    """Set from any thread (a Cancel button, Ctrl+C) to stop a retrieve; callable as a ``CancelFn``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the retrieve to stop (C-CANCEL, or stop reading the WADO-RS stream)."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True, slots=True)
class RetrieveProgress:
    """Sub-operations so far; ``remaining`` is None when the peer does not say (WADO-RS knows only a count
    from the query, if any)."""

    completed: int
    failed: int
    warning: int
    remaining: int | None
    last_file: Path | None = None


RetrieveProgressFn = Callable[[RetrieveProgress], None]


@dataclass(slots=True)
class RetrieveResult:
    """What a retrieve left in the store and how it ended.

    ``status`` is the final DIMSE status (0x0000 success; HTTP retrieves use 0x0000 or 0xC000), ``meaning`` its
    meaning in words and ``error_comment`` the peer's ErrorComment, if any; ``hint`` what to check, where the
    failure suggests it. ``files`` are the instances written (complete files only) and ``folder`` the study
    folder to open.
    """

    folder: Path
    files: list[Path] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    status: int = 0x0000
    meaning: str = "Success"
    error_comment: str = ""
    cancelled: bool = False
    protocol: str = ""
    hint: str = ""

    @property
    def ok(self) -> bool:
        """Success: final status 0x0000, nothing failed, not cancelled."""
        return self.status == 0x0000 and not self.cancelled and self.failed == 0

    def summary(self) -> str:
        """One sentence: what arrived and, unless all went well, why not."""
        n = len(self.files)
        head = f"{n} instance{'s' if n != 1 else ''} retrieved ({self.protocol})"
        if self.cancelled:
            return f"{head}; cancelled with {self.remaining} still to come — the files that arrived are complete and kept"
        if self.ok:
            return head
        text = f"{head}; final status 0x{self.status:04X}: {self.meaning}"
        if self.failed or self.warning:
            text += f" ({self.failed} failed, {self.warning} with warnings)"
        if self.error_comment:
            text += f" — the PACS says: {self.error_comment}"
        if self.hint:
            text += f". {self.hint}"
        return text
