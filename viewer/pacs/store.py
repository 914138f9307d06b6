"""The private per-user store that retrieved instances go into, and their entry into the header index.

Layout: ``<root>/studies/<h(study)>/<h(series)>/<h(instance)>.dcm`` where ``h`` is a truncated SHA-256 of the
UID: no UID (nor anything else a peer sent) becomes a path component, so a hostile UID cannot climb out of the
store, and the same instance fetched twice lands on the same file. Each file is written under a ``.partial``
name in ``<root>/incoming/<h(study)>/`` and moved into its study folder when complete, so nothing half-written is
ever in a study folder: a scan of one while instances still arrive (the viewer shows a series as it arrives)
sees complete files only.

The root is ``$GRU_VIEWER_DATA_DIR/pacs-store`` (the project's data folder override), else the user data
folder; it is private to the user (0700 folders, 0600 files). :meth:`LocalStore.index` puts each new file's
header into the persistent index (:mod:`viewer.dicom.cache`) as it arrives, so opening the study folder later
reads no header again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from viewer.dicom.cache import CachedFile, HeaderCache
from viewer.dicom.file_stamp import FileStamp
from viewer.dicom.headers import InstanceHeader, SkippedFile, read_header
from viewer.errors import ViewerError

DATA_DIR_ENV = "GRU_VIEWER_DATA_DIR"  # the same override the report's de-identification key honours
STORE_NAME = "pacs-store"
PARTIAL_SUFFIX = ".partial"

log = logging.getLogger(__name__)


def default_store_root() -> Path:
    """``$GRU_VIEWER_DATA_DIR/pacs-store``, else ``pacs-store`` in the platform's user data folder."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser() / STORE_NAME
    from platformdirs import user_data_dir

    return Path(user_data_dir("gru-viewer", appauthor=False)) / STORE_NAME


def _h(uid: str, n: int) -> str:
    return hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:n]


class LocalStore:
    """Writes received instances into the store and indexes them. Safe to call :meth:`write` from the
    network threads of pynetdicom; :meth:`index` opens the header index in the calling thread."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(os.path.abspath(root if root is not None else default_store_root()))

    def study_folder(self, study_uid: str) -> Path:
        """The folder of one study (open it with ``gru-viewer gui`` or ``analyze``)."""
        return self.root / "studies" / _h(study_uid, 16)

    def series_folder(self, study_uid: str, series_uid: str) -> Path:
        """The folder of one series, inside its study folder."""
        return self.study_folder(study_uid) / _h(series_uid, 12)

    def _mkdir(self, folder: Path) -> None:
        for parent in (self.root, self.root / "studies"):
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def write(self, ds: Dataset) -> Path:
        """Save one instance (a dataset with its ``file_meta``) under its hashed name; returns the path.

        Raises
        ------
        ViewerError
            It lacks the UIDs that place it, or cannot be written.
        """
        study = str(ds.get("StudyInstanceUID", "") or "")
        series = str(ds.get("SeriesInstanceUID", "") or "")
        sop = str(ds.get("SOPInstanceUID", "") or "")
        if not (study and series and sop):
            raise ViewerError("Cannot store the instance", "it lacks a study, series or instance UID")
        folder = self.series_folder(study, series)
        path = folder / f"{_h(sop, 24)}.dcm"
        incoming = self.incoming_folder(study)
        tmp = incoming / f"{_h(series, 12)}-{path.name}{PARTIAL_SUFFIX}"
        try:
            self._mkdir(folder)
            incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
            ds.save_as(tmp, enforce_file_format=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except (OSError, ValueError, AttributeError) as exc:
            tmp.unlink(missing_ok=True)
            raise ViewerError("Cannot store the instance", str(exc)) from exc
        return path

    def incoming_folder(self, study_uid: str) -> Path:
        """Where the instances of one study are written before they move into its folder."""
        return self.root / "incoming" / _h(study_uid, 16)

    def clean_partials(self, folder: Path) -> int:
        """Remove the ``.partial`` files of the study folder ``folder`` (writes cut short, by a process killed
        mid-write), in its incoming folder and in itself; how many went."""
        n = 0
        for where in (self.root / "incoming" / folder.name, folder):
            for tmp in where.rglob(f"*{PARTIAL_SUFFIX}") if where.exists() else ():
                tmp.unlink(missing_ok=True)
                n += 1
        return n

    @staticmethod
    def index(paths: Sequence[Path], cache: HeaderCache | None = None) -> list[InstanceHeader]:
        """Read the headers of newly written files and put them into the persistent header index, the rows
        a later scan of the folder answers from (as :func:`viewer.dicom.index.scan` stores them). ``cache``:
        an open index to use (default: one opened for this call)."""
        headers: list[InstanceHeader] = []
        rows: list[CachedFile] = []
        for p in paths:
            path = str(p)
            try:
                st = os.stat(path)
                header = read_header(path)
            except OSError:
                continue
            except SkippedFile as exc:  # not an image (an SR, a PDF): indexed as skipped, as a scan would
                rows.append(CachedFile(path, FileStamp.of(st), None, exc.why))
                continue
            headers.append(header)
            rows.append(CachedFile(path, FileStamp.of(st), header.to_json(), None))
        if rows:
            if cache is not None:
                cache.store(rows)
            else:
                with HeaderCache() as own:
                    own.store(rows)
        return headers

    def indexer(self, interval_s: float = 0.25) -> Indexer:
        """An :class:`Indexer` for one retrieve."""
        return Indexer(self, interval_s)


class Indexer:
    """Indexes the files of one retrieve as they arrive, through one open header index, at most every
    ``interval_s`` (so the first images of a series are in the index while the rest still arrive, without a
    transaction per file). Use as a context manager, from one thread; leaving it indexes what is left."""

    def __init__(self, store: LocalStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self.pending: list[Path] = []
        self._cache: HeaderCache | None = None
        self._last = 0.0

    def __enter__(self) -> Indexer:
        self._cache = HeaderCache()
        if self._cache.error:
            log.info("retrieved files not indexed: %s", self._cache.error)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            if self._cache is not None:
                self._cache.close()

    def add(self, paths: Sequence[Path]) -> None:
        """Files just written; indexed now if the last batch is ``interval_s`` old."""
        self.pending.extend(paths)
        if self.pending and time.monotonic() - self._last >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """Index every file added so far."""
        if self.pending:
            self.store.index(self.pending, self._cache)
            self.pending = []
        self._last = time.monotonic()


def folders_of(paths: Iterable[Path]) -> list[Path]:
    """The distinct study folders holding ``paths`` (two levels up), in first-seen order."""
    seen: dict[Path, None] = {}
    for p in paths:
        seen.setdefault(p.parent.parent, None)
    return list(seen)
