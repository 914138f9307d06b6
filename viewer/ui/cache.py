"""A memory-bounded, least-recently-used cache of loaded volumes, keyed by stack uid.

Going back to a series already read is instant; opening many series one after another keeps at most
``max_bytes`` of volumes here (the volume on screen is held by the view as well, so it never disappears while
shown).
"""

from __future__ import annotations

from collections import OrderedDict

import psutil

from viewer.dicom.volume import Volume

DEFAULT_FRACTION = 0.25
DEFAULT_CAP_BYTES = 2 * 1024**3


def default_cache_bytes() -> int:
    """A quarter of physical memory, at most 2 GiB."""
    try:
        total = int(psutil.virtual_memory().total)
    except Exception:
        total = 4 * 1024**3
    return int(min(DEFAULT_CAP_BYTES, total * DEFAULT_FRACTION))


class VolumeCache:
    """LRU cache bounded by total bytes (``Volume.nbytes``); the newest entry is always kept."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self._items: OrderedDict[str, Volume] = OrderedDict()
        self.max_bytes = int(max_bytes if max_bytes is not None else default_cache_bytes())

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of all cached volumes."""
        return sum(v.nbytes for v in self._items.values())

    def keys(self) -> list[str]:
        """Keys from least to most recently used."""
        return list(self._items)

    def get(self, key: str) -> Volume | None:
        """The volume under ``key`` (now the most recently used), or None."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, item: Volume) -> None:
        """Store ``item`` as the most recently used, then evict the oldest beyond the limit."""
        self._items[key] = item
        self._items.move_to_end(key)
        self._evict()

    def discard(self, key: str) -> None:
        """Forget the volume under ``key`` (its series has changed on disk)."""
        self._items.pop(key, None)

    def set_limit(self, max_bytes: int) -> None:
        """Change the byte limit and evict what no longer fits."""
        self.max_bytes = int(max_bytes)
        self._evict()

    def clear(self) -> None:
        """Drop every volume."""
        self._items.clear()

    def _evict(self) -> None:
        total = self.nbytes
        while len(self._items) > 1 and total > self.max_bytes:
            _, old = self._items.popitem(last=False)
            total -= old.nbytes
