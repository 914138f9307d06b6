"""The dataset of a Deflated Explicit VR Little Endian file, inflated as it is read and never past a limit.

A few kB of deflate can stand for gigabytes of zeros (1032:1 at most), so the inflated size must be bounded
before it is reached, not checked after. :class:`InflatingReader` is a file-like object over the inflated
dataset that inflates only as far as the parser reads, and raises :class:`InflateLimitError` the moment its
current limit is passed. The header reader starts it with the overall cap, parses up to the pixel data, then
lowers the limit to what the header says the dataset can hold (:func:`viewer.dicom.headers.read_deflated`)
and inflates the rest once.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

CHUNK = 1 << 20  # compressed bytes read from the file at a time
_STEP = 1 << 16  # the least inflated per step while the parser reads the header


class InflateLimitError(ValueError):
    """A deflated file whose dataset inflates past its limit; the message names the limit and why."""


class InflatingReader:
    """A read-only, seekable view of the inflated dataset of ``fh`` (positioned at its deflated stream).

    Only what has been read (or :meth:`finish` inflated) is held in memory; with ``keep=False`` :meth:`finish`
    counts the rest without keeping it.
    """

    def __init__(self, fh: BinaryIO, limit: int, why: str) -> None:
        self._fh = fh
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buf = bytearray()
        self._pos = 0
        self._size = 0  # inflated so far, kept or not
        self._limit = limit
        self._why = why

    @property
    def size(self) -> int:
        """Bytes inflated so far (all of the dataset once :meth:`finish` has returned)."""
        return self._size

    @property
    def limit(self) -> int:
        """The most bytes the dataset may inflate to."""
        return self._limit

    def set_limit(self, limit: int, why: str) -> None:
        """Bound the inflated size at ``limit`` bytes from here on; ``why`` is the error message's reason."""
        self._limit, self._why = limit, why
        if self._size > limit:
            self._fail()

    def _fail(self) -> None:
        raise InflateLimitError(f"inflates past {mb_text(self._limit)}, {self._why}")

    def _inflate(self, wanted: int, keep: bool = True) -> bytes:
        """Inflate up to ``wanted`` more bytes (fewer at the end of the stream); b"" at its end."""
        inflater = self._inflater
        while not inflater.eof:
            data = inflater.unconsumed_tail or self._fh.read(CHUNK)
            if not data:
                return b""
            # max_length ≥ 1: 0 would mean no limit. One byte past the limit is enough to know it is passed.
            out = inflater.decompress(data, max(1, min(wanted, self._limit + 1 - self._size)))
            self._size += len(out)
            if self._size > self._limit:
                self._fail()
            if out:
                if keep:
                    self._buf += out
                return out
        return b""

    def fill(self, end: int) -> None:
        """Inflate and keep the dataset's first ``end`` bytes (fewer when it is shorter)."""
        while len(self._buf) < end and self._inflate(max(_STEP, end - len(self._buf))):
            pass

    def finish(self, keep: bool = True) -> None:
        """Inflate the rest of the stream within the limit; without ``keep`` it is counted, not kept."""
        while self._inflate(CHUNK, keep):
            pass

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (the rest of the dataset when negative)."""
        if size is None or size < 0:
            self.finish()
            end = len(self._buf)
        else:
            end = self._pos + size
            self.fill(end)
        with memoryview(self._buf) as view:
            data = bytes(view[self._pos : end])
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move within the inflated dataset (``whence`` 2: from the end of what is kept)."""
        base = {0: 0, 1: self._pos, 2: len(self._buf)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        """The current position in the inflated dataset."""
        return self._pos


def mb_text(n: int) -> str:
    """``n`` bytes in MB, whole when large, with one decimal when small."""
    mb = n / (1 << 20)
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"
