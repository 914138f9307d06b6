"""The persistent header index: what every file seen before held, so a folder opens again at once.

One SQLite database in the user cache dir (``GRU_VIEWER_CACHE_DIR`` overrides it), keyed by absolute path (the
bytes the file system uses, so names that are not valid UTF-8 are kept exactly) and valid while the file's
:class:`~viewer.dicom.file_stamp.FileStamp` (size, modification and status-change times) is unchanged. It
stores the header as JSON (:meth:`InstanceHeader.to_json`) or the reason the file was skipped, so unreadable
files are not re-read either.

The cache is an optimisation and must never be the reason a scan fails: WAL mode lets two processes scan at
once, a busy database is skipped rather than waited on for long, and a corrupt or foreign file is deleted and
rebuilt. Headers hold patient names and IDs, so the folder and the database are private to the user
(0700/0600), a row is kept for :data:`RETENTION_DAYS` after it was last written (a folder opened again after
that is read again), and :func:`forget_index` removes the whole index on request.
Nothing is ever written next to the files scanned.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from viewer.dicom.file_stamp import FileStamp
from viewer.dicom.headers import HEADER_FORMAT_VERSION, InstanceHeader
from viewer.errors import ViewerError

CACHE_DIR_ENV = "GRU_VIEWER_CACHE_DIR"
DB_NAME = "index.sqlite3"
SCHEMA_VERSION = 4  # 3: paths stored as the bytes the file system uses; 4: status-change time
#: Days a cached header is kept after it was last written.
RETENTION_DAYS = 30
_BUSY_TIMEOUT_S = 5.0
_IN_BATCH = 500  # bound parameters per query, well under SQLite's limit

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The folder of the persistent index: ``$GRU_VIEWER_CACHE_DIR``, else the platform's user cache dir."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gru-viewer", appauthor=False))


def default_db_path() -> Path:
    """The header cache's database file in the user's cache folder."""
    return cache_dir() / DB_NAME


def _format_key() -> str:
    """Changes whenever cached rows would no longer mean what the current reader would produce."""
    names = ",".join(f.name for f in fields(InstanceHeader))
    return f"{SCHEMA_VERSION}/{HEADER_FORMAT_VERSION}/{names}"


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One cached file: its header, or why it was skipped (exactly one of the two is set)."""

    path: str
    stamp: FileStamp
    header_json: str | None
    reason: str | None

    def header(self) -> InstanceHeader:
        """The cached header, parsed back from JSON.

        Raises
        ------
        ValueError
            When the file was skipped at indexing (``reason`` says why).
        """
        if self.header_json is None:
            raise ValueError(f"{self.path} was skipped: {self.reason}")
        return InstanceHeader.from_json(self.header_json)


class HeaderCache:
    """A connection to the persistent index. Use as a context manager, from the thread that opened it.

    Every method degrades to "nothing cached" instead of raising when the database cannot be used; ``error``
    then says why (for logs, never for the user's way).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._open(allow_reset=True)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def __enter__(self) -> HeaderCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def available(self) -> bool:
        """Whether the database is open (False after a failure: indexing then reads every header)."""
        return self._conn is not None

    def close(self) -> None:
        """Close the database; later calls act as if the cache were unavailable."""
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _open(self, allow_reset: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            existed = self.path.exists()
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            if not existed and self.path.exists():
                os.chmod(self.path, 0o600)  # patient names and IDs: readable by the user only
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        except sqlite3.OperationalError as exc:
            # Locked or unwritable (read-only media, a full disk): go on without a cache, keep the file.
            self._disable(f"cache unavailable: {exc}")
        except sqlite3.DatabaseError as exc:
            # Not a database or malformed: throw it away and start again, once.
            if allow_reset and self._delete_files():
                log.warning("header cache %s was unreadable (%s): rebuilt", self.path, exc)
                self._open(allow_reset=False)
            else:
                self._disable(f"cache unusable: {exc}")
        except OSError as exc:
            self._disable(f"cache unavailable: {exc}")

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if self._format_ok(conn):
            return
        # First use, or rows written by another version: (re)create under a write lock, checking again inside
        # it, since another process may have done it meanwhile.
        with _transaction(conn):
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            if not self._format_ok(conn):
                conn.execute("DROP TABLE IF EXISTS files")
                conn.execute(
                    "CREATE TABLE files (path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
                    " ctime_ns INTEGER NOT NULL, header TEXT, reason TEXT, stored_at INTEGER NOT NULL)"
                    " WITHOUT ROWID"
                )
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('format', ?)", (_format_key(),)
                )

    @staticmethod
    def _format_ok(conn: sqlite3.Connection) -> bool:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            has_files = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return False
            raise
        return row is not None and row[0] == _format_key() and has_files is not None

    def _delete_files(self) -> bool:
        self.close()
        try:
            forget_index(self.path)
        except ViewerError:
            return False
        return True

    def _disable(self, why: str) -> None:
        self.close()
        self.error = why
        log.warning("header cache %s: %s", self.path, why)

    def _fail(self, exc: sqlite3.Error) -> None:
        """An error in use: drop a damaged database (it is rebuilt on the next open); a busy one is kept."""
        if isinstance(exc, sqlite3.OperationalError):
            self._disable(f"cache skipped: {exc}")
        else:
            self._delete_files()
            self._disable(f"cache damaged, removed: {exc}")

    # -- queries ------------------------------------------------------------------------------------------

    def under(self, folder: str) -> dict[str, CachedFile]:
        """Every cached file below ``folder`` (an absolute path), by path."""
        if self._conn is None:
            return {}
        prefix = _key(folder.rstrip(os.sep) + os.sep)
        upper = prefix[:-1] + bytes([prefix[-1] + 1])
        try:
            rows = self._conn.execute(
                "SELECT path, size, mtime_ns, ctime_ns, header, reason FROM files WHERE path >= ? AND path < ?",
                (prefix, upper),
            ).fetchall()
        except sqlite3.Error as exc:
            self._fail(exc)
            return {}
        return {(c := _row(r)).path: c for r in rows}

    def lookup(self, paths: Sequence[str]) -> dict[str, CachedFile]:
        """The cached rows for the given absolute paths (those not cached are absent)."""
        if self._conn is None:
            return {}
        out: dict[str, CachedFile] = {}
        try:
            for batch in _batches([_key(p) for p in paths], _IN_BATCH):
                marks = ",".join("?" * len(batch))
                for r in self._conn.execute(
                    f"SELECT path, size, mtime_ns, ctime_ns, header, reason FROM files WHERE path IN ({marks})",
                    batch,
                ):
                    cached = _row(r)
                    out[cached.path] = cached
        except sqlite3.Error as exc:
            self._fail(exc)
            return {}
        return out

    def store(self, entries: Iterable[CachedFile], *, now: float | None = None) -> None:
        """Insert or replace rows, in one transaction, stamped with ``now`` (default the current time)."""
        if self._conn is None:
            return
        stamp = int(time.time() if now is None else now)
        rows = [
            (_key(e.path), e.stamp.size, e.stamp.mtime_ns, e.stamp.ctime_ns, e.header_json, e.reason, stamp)
            for e in entries
        ]
        if not rows:
            return
        try:
            with _transaction(self._conn):
                self._conn.executemany(
                    "INSERT OR REPLACE INTO files (path, size, mtime_ns, ctime_ns, header, reason, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            self._fail(exc)

    def prune(self, max_age_s: float) -> int:
        """Drop rows written more than ``max_age_s`` seconds ago; how many went."""
        if self._conn is None:
            return 0
        try:
            with _transaction(self._conn):
                cur = self._conn.execute(
                    "DELETE FROM files WHERE stored_at <= ?", (int(time.time() - max_age_s),)
                )
            return max(0, cur.rowcount)
        except sqlite3.Error as exc:
            self._fail(exc)
            return 0

    def forget(self, paths: Iterable[str]) -> None:
        """Drop rows of files that no longer exist."""
        if self._conn is None:
            return
        gone = [(_key(p),) for p in paths]
        if not gone:
            return
        try:
            with _transaction(self._conn):
                self._conn.executemany("DELETE FROM files WHERE path = ?", gone)
        except sqlite3.Error as exc:
            self._fail(exc)

    def count(self) -> int:
        """How many files the cache holds (0 when unavailable)."""
        if self._conn is None:
            return 0
        try:
            return int(self._conn.execute("SELECT COUNT(*) FROM files").fetchone()[0])
        except sqlite3.Error as exc:
            self._fail(exc)
            return 0


def forget_index(path: str | os.PathLike[str] | None = None) -> None:
    """Delete the persistent index (and its journal files): every cached header, with the patient names and IDs
    it holds. The next scan of any folder reads its files again.

    Raises
    ------
    ViewerError
        A file of the index could not be removed.
    """
    db = Path(path) if path is not None else default_db_path()
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(f"{db}{suffix}")
        try:
            part.unlink(missing_ok=True)
        except OSError as exc:
            raise ViewerError("Cannot delete the header index", exc.strerror or str(exc), part) from exc


class _transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def _key(path: str) -> bytes:
    """A path as the bytes the file system knows it by: lossless for names that are not valid UTF-8 (which
    Python holds as surrogate escapes, and SQLite text cannot store)."""
    return os.fsencode(path)


def _row(r: tuple) -> CachedFile:
    return CachedFile(os.fsdecode(r[0]), FileStamp(r[1], r[2], r[3]), r[4], r[5])


def _batches(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
