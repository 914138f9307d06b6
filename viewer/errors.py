"""The one error type shown to users: what failed, on which file, and why.

Every layer raises :class:`ViewerError` (or a subclass) for conditions a user can act on; the CLI prints
``str(err)`` and the GUI shows it in a dialog, so the message must read well without a traceback.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` safe to print or write as UTF-8 whatever the locale's error handler: bytes of a file name that
    are not valid UTF-8 (held by Python as surrogate escapes) are shown as ``\\xNN``, as in ``caf\\xe9.txt``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class ViewerError(Exception):
    """A failure the user can understand.

    Parameters
    ----------
    what:
        What failed, e.g. ``"Could not read DICOM file"``.
    why:
        The reason in plain words, e.g. ``"the file ends before its pixel data (truncated)"``.
    path:
        The file or folder concerned, if any.
    """

    def __init__(self, what: str, why: str = "", path: str | None = None) -> None:
        self.what = what
        self.why = why
        self.path = str(path) if path is not None else None
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what]
        if self.path:
            parts[0] += f": {printable(self.path)}"
        if self.why:
            parts.append(self.why)
        return " — ".join(parts)

    def __str__(self) -> str:
        return self.message


class CancelledError(ViewerError):
    """Raised by long operations when the caller asked them to stop."""

    def __init__(self, what: str = "Cancelled") -> None:
        super().__init__(what, "stopped at the user's request")
