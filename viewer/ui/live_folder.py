"""A folder whose files are still arriving (a retrieve under way, the receiver), shown in a window as it grows.

:meth:`LiveFolder.refresh` has the window re-read the folder (on its index worker, from the header index) without
moving the reader off the series on screen, and once the new index is shown reloads that series if it has gained
slices since it was loaded (the volume cache holds it by stack UID, complete or not). The first refresh of a folder
not on screen opens it as File ▸ Open does, showing its first series: so the first slices of a retrieve show
before the rest has arrived.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, Qt, Signal

from viewer.dicom.stacks import Stack
from viewer.ui.cache import VolumeCache


class LiveWindow(Protocol):
    """What a :class:`LiveFolder` needs of the main window."""

    auto_open_first: bool
    index_ready: Signal
    volume_loaded: Signal
    cache: VolumeCache

    @property
    def opened_folders(self) -> tuple[Path, ...]: ...

    @property
    def current_uid(self) -> str | None: ...

    @property
    def loading(self) -> bool: ...

    def stack(self, uid: str) -> Stack | None: ...

    def open_paths(self, paths: list[str]) -> None: ...

    def open_stack(self, uid: str) -> None: ...


class LiveFolder(QObject):
    """Refreshes one window's view of folders that grow."""

    def __init__(self, window: LiveWindow, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self._waiting = False
        self._watching_load = False

    def shows(self, folder: str | Path) -> bool:
        """Whether the window shows exactly this folder."""
        return self.window.opened_folders == (Path(folder).resolve(),)

    def refresh(self, folder: str | Path, take_over: bool = True) -> bool:
        """Re-read ``folder`` if the window shows it, else open it when ``take_over``; whether it did either."""
        shown = self.shows(folder)
        if not shown and not take_over:
            return False
        if not self._waiting:
            self._waiting = True
            if shown and self.window.current_uid is not None:
                self.window.auto_open_first = False  # a refresh must not move the reader to another series
            self.window.index_ready.connect(self._after_index, Qt.ConnectionType.QueuedConnection)
        self.window.open_paths([str(folder)])
        return True

    def _after_index(self, _index: object) -> None:
        """Queued after the window has shown the new index (and opened what it opens)."""
        self.window.index_ready.disconnect(self._after_index)
        self._waiting = False
        self.window.auto_open_first = True
        self._reload_if_grown()

    def _on_volume_loaded(self, _uid: str) -> None:
        self.window.volume_loaded.disconnect(self._on_volume_loaded)
        self._watching_load = False
        self._reload_if_grown(loaded=True)

    def _reload_if_grown(self, loaded: bool = False) -> None:
        """Reload the series on screen if the index lists more slices than its volume has; a load under way is
        checked when it ends (it may have started before the last files arrived)."""
        uid = self.window.current_uid
        if uid is None:
            return
        if self.window.loading and not loaded:
            if not self._watching_load:
                self._watching_load = True
                self.window.volume_loaded.connect(self._on_volume_loaded, Qt.ConnectionType.QueuedConnection)
            return
        stack, volume = self.window.stack(uid), self.window.cache.get(uid)
        if stack is not None and volume is not None and volume.array.shape[0] != len(stack.slices):
            self.window.cache.discard(uid)
            self.window.open_stack(uid)
