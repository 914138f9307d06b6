"""What native decoders print while they decode a frame goes to the debug log, not to the process's stderr.

C and C++ libraries (GDCM, libjpeg inside it, OpenJPEG) write straight to file descriptor 2, past Python's
warnings and logging: a 12-bit JPEG frame in a JPEG Baseline file makes GDCM print "Unsupported JPEG data
precision 12" before it decodes the frame anyway. :func:`native_stderr_captured` points descriptor 2 at a
scratch file for the length of one decode and puts back what was there in ``finally``; what was written goes to
this module's debug log (capped, the file's path replaced by ``<file>``) and back to the caller, so a frame that
fails can say what the codec said.

Descriptor 2 belongs to the whole process, so one capture runs at a time (a lock; a nested capture on the same
thread shares the outer one), and each lasts one decode call: output of other threads in that window lands in
the debug log instead of on stderr, nothing is lost. Decoders hold the GIL throughout (measured in
:mod:`viewer.dicom.pixels`), so serialising them costs no parallelism. Where descriptor 2 cannot be duplicated
(closed, as in some windowed apps), decoding goes on without a capture.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MAX_MESSAGE = 400
"""The most characters of a codec's output kept (log and skip reason): its first lines say what went wrong."""

log = logging.getLogger(__name__)
_lock = threading.RLock()
_depth = 0
_scratch: int | None = None  # one scratch file for every capture, emptied before each


@dataclass
class Captured:
    """What a decoder wrote to descriptor 2 during a capture: one line of text, "" when nothing."""

    text: str = ""


def _scratch_fd() -> int:
    global _scratch
    if _scratch is None:
        with tempfile.TemporaryFile() as fh:  # unlinked at once: only the descriptor keeps it
            _scratch = os.dup(fh.fileno())
    return _scratch


def _tidy(data: bytes, redact: tuple[str, ...]) -> str:
    text = data.decode("utf-8", "replace")
    for secret in sorted((s for s in redact if s), key=len, reverse=True):
        text = text.replace(secret, "<file>")
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return text[:MAX_MESSAGE] + ("…" if len(text) > MAX_MESSAGE else "")


@contextmanager
def native_stderr_captured(decoder: str, redact: tuple[str, ...] = ()) -> Iterator[Captured]:
    """Capture what native code writes to descriptor 2 inside the block (one frame's decode).

    ``decoder`` names the decoder in the debug log; each string of ``redact`` (the file's path and name) is
    replaced by ``<file>`` in what is kept. The yielded :class:`Captured` holds the text once the block ends,
    also when it raised.
    """
    global _depth
    captured = Captured()
    with _lock:
        if _depth:  # nested on this thread: the outer capture has descriptor 2 already
            _depth += 1
            try:
                yield captured
            finally:
                _depth -= 1
            return
        try:
            sys.stderr.flush()  # Python's own pending output goes where it was meant to
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 to protect
            yield captured
            return
        scratch = _scratch_fd()
        os.ftruncate(scratch, 0)
        os.lseek(scratch, 0, os.SEEK_SET)
        os.dup2(scratch, 2)
        _depth = 1
        try:
            yield captured
        finally:
            _depth = 0
            os.dup2(saved, 2)
            os.close(saved)
            size = os.lseek(scratch, 0, os.SEEK_CUR)
            data = os.pread(scratch, min(size, 4 * MAX_MESSAGE), 0) if size else b""
            if data:
                captured.text = _tidy(data, redact)
                log.debug("decode: %s wrote to stderr: %s", decoder, captured.text)
