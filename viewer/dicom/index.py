"""Index a folder, a DICOMDIR or files into patients → studies → series → stacks, from headers only.

:func:`scan` finds the files (recursively for a folder; through :mod:`viewer.dicom.dicomdir` for a DICOMDIR),
answers every file whose :class:`~viewer.dicom.file_stamp.FileStamp` is unchanged from the persistent cache
(:mod:`viewer.dicom.cache`), reads the headers of the others (in worker processes when there are many: pydicom
parsing holds the GIL, so threads do not help), groups them and splits each series into stacks with
:func:`viewer.dicom.stacks.split_series`. What is not a displayable image is listed with the reason.

Nothing is ever written under a scanned folder. Symbolic links to folders are followed only when they stay
inside the folder scanned, and each folder is visited once, so a link loop cannot trap the scan.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from typing import Any

from viewer.dicom.cache import RETENTION_DAYS, CachedFile, HeaderCache, default_db_path
from viewer.dicom.dicomdir import read_dicomdir
from viewer.dicom.file_stamp import FileStamp
from viewer.dicom.geometry import GeometryWarning
from viewer.dicom.headers import InstanceHeader, SkippedFile, is_dicomdir, read_header
from viewer.dicom.stacks import SliceRef, Stack, split_series
from viewer.errors import CancelledError, ViewerError, printable
from viewer.progress import CancelFn, ProgressFn

PathLike = str | os.PathLike[str]

PROGRESS_INTERVAL_S = 0.05  # progress is reported at most 20 times a second
# Files per worker task: ~10-30 ms of work, so a cancel is honoured within a fraction of a second.
CHUNK_FILES = 32
MAX_WORKERS = 8
# Below these many files to read, a process pool costs more than it saves: forking is ~10 ms, but a spawned
# worker imports pydicom and numpy first (~0.4 s of CPU each, measured on the 2-core build machine).
PARALLEL_MIN_FILES_FORK = 200
PARALLEL_MIN_FILES_SPAWN = 3000

log = logging.getLogger(__name__)


# -- the model -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SkippedEntry:
    """A file (or DICOMDIR record, or folder) that is not in the index, and why."""

    path: str
    reason: str


@dataclass(slots=True)
class SeriesEntry:
    """One series: its descriptive values, its headers (by instance number) and its stacks (largest first).

    ``n_images`` counts 2D images (frames), so an enhanced multi-frame file counts for its frames;
    ``len(headers)`` is the number of files. ``rows``/``columns`` are those of the series' main stack.
    """

    series_uid: str
    number: int | None
    description: str
    modality: str
    date: str
    n_images: int
    rows: int
    columns: int
    headers: list[InstanceHeader]
    stacks: list[Stack]


@dataclass(slots=True)
class StudyEntry:
    """One study of a patient in the index, with its series."""

    study_uid: str
    date: str
    time: str
    description: str
    accession_number: str
    series: list[SeriesEntry]

    @property
    def n_images(self) -> int:
        """Images in all series of the study."""
        return sum(s.n_images for s in self.series)


@dataclass(slots=True)
class PatientEntry:
    """One patient in the index, with their studies."""

    patient_id: str
    name: str
    birth_date: str
    sex: str
    studies: list[StudyEntry]


@dataclass(slots=True)
class StudyIndex:
    """The result of :func:`scan`: plain data, no open files.

    ``n_files`` counts the files considered (found in the folders, listed by DICOMDIRs or given), ``n_cached``
    those answered from the persistent cache without being opened; the rest were read (:attr:`n_read`).
    """

    roots: list[str]
    patients: list[PatientEntry] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    n_files: int = 0
    n_cached: int = 0
    elapsed_s: float = 0.0

    @property
    def n_read(self) -> int:
        """Headers read from disk in this scan (the others came from the cache)."""
        return self.n_files - self.n_cached

    def series(self) -> Iterator[SeriesEntry]:
        """Every series of every study of every patient, in index order."""
        for patient in self.patients:
            for study in patient.studies:
                yield from study.series

    def stacks(self) -> Iterator[Stack]:
        """Every stack of every series, in index order."""
        for series in self.series():
            yield from series.stacks

    def find_stack(self, uid: str) -> Stack | None:
        """The stack with this uid (a SeriesInstanceUID, or ``uid#k`` for part of a split series)."""
        for stack in self.stacks():
            if stack.uid == uid:
                return stack
        return None

    def find_series(self, series_uid: str) -> SeriesEntry | None:
        """The series with this SeriesInstanceUID, or None."""
        for series in self.series():
            if series.series_uid == series_uid:
                return series
        return None


# -- progress and cancel -------------------------------------------------------------------------------------


class _Tracker:
    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self._progress = progress
        self._cancel = cancel
        self._last = 0.0

    def check(self) -> None:
        if self._cancel is not None and self._cancel():
            raise CancelledError("Indexing cancelled")

    def report(self, done: int, total: int, text: str, force: bool = False) -> None:
        """Pass progress on, at most every :data:`PROGRESS_INTERVAL_S` unless ``force`` (a phase starts/ends)."""
        if self._progress is None:
            return
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            self._progress(done, total, text)


# -- finding files -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Found:
    files: dict[str, FileStamp] = field(default_factory=dict)  # in walk order
    folders: list[str] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    hidden: int = 0  # hidden entries left out (see is_hidden)


def is_hidden(name: str) -> bool:
    """Whether a folder entry is one a file manager hides and no modality writes: dot files and folders (macOS
    writes a ``._NAME`` AppleDouble file beside every file it copies to FAT media, and ``.Trashes``,
    ``.Spotlight-V100``, ``.DS_Store``) and the ``__MACOSX`` folder of zip archives made on a Mac. They are left
    out of the scan, not listed as skipped files: a stick copied on a Mac would otherwise report every image
    twice."""
    return name.startswith(".") or name == "__MACOSX"


def _inside(path: str, folder_real: str) -> bool:
    real = os.path.realpath(path)
    return real == folder_real or real.startswith(folder_real.rstrip(os.sep) + os.sep)


def _walk(root: str, found: _Found, tracker: _Tracker) -> None:
    root_real = os.path.realpath(root)
    st = os.stat(root)
    visited = {(st.st_dev, st.st_ino)}
    pending = [root]
    while pending:
        folder = pending.pop()
        tracker.check()
        tracker.report(len(found.files), 0, "Looking for files")
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            found.skipped.append(SkippedEntry(folder, f"folder cannot be listed ({exc.strerror or exc})"))
            continue
        subfolders: list[str] = []
        for k, entry in enumerate(entries):
            if k % 1024 == 1023:  # a folder may hold many thousands of files
                tracker.check()
                tracker.report(len(found.files), 0, "Looking for files")
            if is_hidden(entry.name):
                found.hidden += 1
                continue
            try:
                is_link = entry.is_symlink()
                if entry.is_dir():
                    if is_link and not _inside(entry.path, root_real):
                        found.skipped.append(
                            SkippedEntry(
                                entry.path, "symbolic link to a folder outside the one scanned (not followed)"
                            )
                        )
                        continue
                    est = entry.stat()
                    key = (est.st_dev, est.st_ino)
                    if key not in visited:  # a link loop, or a second link to a folder already listed
                        visited.add(key)
                        subfolders.append(entry.path)
                elif entry.is_file():
                    est = entry.stat()
                    found.files[entry.path] = FileStamp.of(est)
                elif is_link:
                    found.skipped.append(SkippedEntry(entry.path, "broken symbolic link"))
                else:
                    found.skipped.append(SkippedEntry(entry.path, "not a regular file"))
            except OSError as exc:
                found.skipped.append(SkippedEntry(entry.path, f"cannot be read ({exc.strerror or exc})"))
        pending.extend(reversed(subfolders))


def _add_file(path: str, found: _Found) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        found.skipped.append(SkippedEntry(path, f"cannot be read ({exc.strerror or exc})"))
        return
    found.files[path] = FileStamp.of(st)


def _find(roots: list[str], tracker: _Tracker) -> _Found:
    found = _Found()
    for root in roots:
        tracker.check()
        if os.path.isdir(root):
            found.folders.append(root)
            _walk(root, found, tracker)
        elif is_dicomdir(root):
            listing = read_dicomdir(root)
            found.skipped.extend(SkippedEntry(p, why) for p, why in listing.refused)
            for path in listing.files:
                _add_file(path, found)
        else:
            _add_file(root, found)
    return found


def _roots(paths: PathLike | Sequence[PathLike]) -> list[str]:
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise ViewerError("Nothing to index", "no folder, DICOMDIR or file was given")
    roots: list[str] = []
    for item in items:
        root = os.path.abspath(os.fspath(item))
        if not os.path.exists(root):
            raise ViewerError("Cannot index", "no such file or folder", root)
        if root not in roots:
            roots.append(root)
    return roots


# -- reading headers -----------------------------------------------------------------------------------------

_Result = tuple[str, str | None, str | None]  # (path, header JSON, skip reason)


def _read_one(path: str) -> tuple[InstanceHeader | None, str | None]:
    try:
        return read_header(path), None
    except SkippedFile as exc:
        return None, exc.why


def _read_chunk(paths: list[str]) -> list[_Result]:
    """Worker task: headers as JSON (cheap to send back, and what the cache stores)."""
    out: list[_Result] = []
    for path in paths:
        header, reason = _read_one(path)
        out.append((path, header.to_json() if header is not None else None, reason))
    return out


def _quiet_worker() -> None:
    # Odd files make pydicom warn; the reasons that matter reach the user as skip entries instead.
    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.ERROR)


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings while reading (process-wide for the duration, as any warnings filter is)."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _pool_context() -> tuple[BaseContext, bool]:
    """The start method for reader processes, and whether starting them is cheap.

    On Linux workers are forked: nearly free, as they inherit the imported modules. Forking a process that has
    other threads (Qt's, OpenBLAS's) is safe here because a worker only parses files with pure-Python code
    and exits; it never touches locks those threads hold. Elsewhere workers are spawned, which costs an
    interpreter start and the imports each, so a pool is only worth it for many files.
    """
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork"), True
    return multiprocessing.get_context("spawn"), False


def _plan_workers(n_to_read: int, workers: int | None) -> tuple[int, BaseContext | None]:
    if workers is not None and workers <= 1:
        return 1, None
    cpus = _usable_cpus()
    ctx, cheap = _pool_context()
    if workers is None:
        minimum = PARALLEL_MIN_FILES_FORK if cheap else PARALLEL_MIN_FILES_SPAWN
        if cpus < 2 or n_to_read < minimum:
            return 1, None
        workers = min(cpus, MAX_WORKERS)
    return max(2, min(workers, max(1, n_to_read // CHUNK_FILES))), ctx


def planned_workers(n_files: int, workers: int | None = None) -> int:
    """How many reader processes :func:`scan` uses to read ``n_files`` headers (1: read in this process)."""
    return _plan_workers(n_files, workers)[0]


def _read_serial(
    paths: list[str], on_result: Callable[[_Result, InstanceHeader | None], None], tracker: _Tracker
) -> None:
    with _quiet_pydicom():
        for path in paths:
            tracker.check()
            header, reason = _read_one(path)
            on_result((path, header.to_json() if header is not None else None, reason), header)


def _read_parallel(
    paths: list[str],
    workers: int,
    ctx: BaseContext,
    on_result: Callable[[_Result, InstanceHeader | None], None],
    tracker: _Tracker,
) -> list[str]:
    """Read in worker processes; returns the paths left unread if the pool broke (read them serially)."""
    chunks = [paths[i : i + CHUNK_FILES] for i in range(0, len(paths), CHUNK_FILES)]
    remaining = {i: chunk for i, chunk in enumerate(chunks)}
    executor = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_quiet_worker)
    try:
        queue = iter(list(remaining.items()))
        in_flight: dict[cf.Future[list[_Result]], int] = {}

        def refill() -> None:
            # A short queue: a cancel then waits only for the chunks already running.
            while len(in_flight) < workers * 2:
                item = next(queue, None)
                if item is None:
                    return
                in_flight[executor.submit(_read_chunk, item[1])] = item[0]

        refill()
        while in_flight:
            done, _ = cf.wait(in_flight, timeout=PROGRESS_INTERVAL_S, return_when=cf.FIRST_COMPLETED)
            for future in done:
                index = in_flight.pop(future)
                for result in future.result():
                    on_result(result, None)
                del remaining[index]
            tracker.check()
            refill()
    except BrokenProcessPool:
        log.warning("header reader processes stopped unexpectedly; reading the rest in this process")
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return [p for chunk in remaining.values() for p in chunk]


# -- grouping ------------------------------------------------------------------------------------------------


def _first(values: Iterator[Any], default: Any = "") -> Any:
    return next((v for v in values if v not in (None, "")), default)


def _stacks_of(headers: list[InstanceHeader]) -> list[Stack]:
    try:
        return split_series(headers)
    except Exception as exc:  # degenerate geometry (parallel orientation cosines...) must not stop the index
        refs = [SliceRef(h, f) for h in headers for f in range(max(1, h.number_of_frames))]
        uid = headers[0].series_instance_uid
        warning = GeometryWarning("no_geometry", f"geometry unusable ({exc}): slices kept in file order")
        return [Stack(uid, uid, "images", refs, None, None, None, 0.0, [warning])]


def _series_entry(headers: list[InstanceHeader]) -> SeriesEntry:
    headers.sort(key=lambda h: (h.instance_number is None, h.instance_number or 0, h.path))
    stacks = _stacks_of(headers)
    main = stacks[0].first if stacks else headers[0]
    return SeriesEntry(
        series_uid=headers[0].series_instance_uid,
        number=_first((h.series_number for h in headers), None),
        description=_first(h.series_description for h in headers),
        modality=_first(h.modality for h in headers),
        date=_first(h.series_date or h.study_date for h in headers),
        n_images=sum(max(1, h.number_of_frames) for h in headers),
        rows=main.rows,
        columns=main.columns,
        headers=headers,
        stacks=stacks,
    )


def _one_per_instance(headers: list[InstanceHeader], skipped: list[SkippedEntry]) -> list[InstanceHeader]:
    """One header per SOP Instance UID, sorted by path: of copies of one instance the most complete is kept (the
    most frames, then the largest file, then the first path); the others are listed as skipped, saying why."""
    copies: dict[str, list[InstanceHeader]] = {}
    kept: list[InstanceHeader] = []
    for h in headers:
        if h.sop_instance_uid:
            copies.setdefault(h.sop_instance_uid, []).append(h)
        else:
            kept.append(h)
    for same in copies.values():
        best = min(same, key=lambda h: (-h.number_of_frames, -h.size, h.path))
        kept.append(best)
        for h in same:
            if h is best:
                continue
            frames = (
                f"; that copy has {best.number_of_frames} frames, this one {h.number_of_frames}"
                if h.number_of_frames != best.number_of_frames
                else ""
            )
            skipped.append(SkippedEntry(h.path, f"duplicate of {best.path} (same SOP Instance UID{frames})"))
    return sorted(kept, key=lambda h: h.path)


def _group(headers: list[InstanceHeader], skipped: list[SkippedEntry]) -> list[PatientEntry]:
    tree: dict[str, dict[str, dict[str, list[InstanceHeader]]]] = {}
    for h in _one_per_instance(headers, skipped):
        patient_key = h.patient_id or f"\0{h.patient_name}"
        studies = tree.setdefault(patient_key, {})
        series = studies.setdefault(h.study_instance_uid, {})
        series.setdefault(h.series_instance_uid, []).append(h)

    patients: list[PatientEntry] = []
    for studies in tree.values():
        study_entries: list[StudyEntry] = []
        all_headers: list[InstanceHeader] = []
        for study_uid, series_map in studies.items():
            series_entries = [_series_entry(hs) for hs in series_map.values()]
            series_entries.sort(key=lambda s: (s.number is None, s.number or 0, s.description, s.series_uid))
            in_study = [h for s in series_entries for h in s.headers]
            all_headers.extend(in_study)
            study_entries.append(
                StudyEntry(
                    study_uid=study_uid,
                    date=_first(h.study_date for h in in_study),
                    time=_first(h.study_time for h in in_study),
                    description=_first(h.study_description for h in in_study),
                    accession_number=_first(h.accession_number for h in in_study),
                    series=series_entries,
                )
            )
        study_entries.sort(key=lambda s: (s.date, s.time, s.study_uid))
        patients.append(
            PatientEntry(
                patient_id=_first(h.patient_id for h in all_headers),
                name=_first(h.patient_name for h in all_headers),
                birth_date=_first(h.patient_birth_date for h in all_headers),
                sex=_first(h.patient_sex for h in all_headers),
                studies=study_entries,
            )
        )
    patients.sort(key=lambda p: (p.name.upper(), p.patient_id))
    return patients


# -- the scan ------------------------------------------------------------------------------------------------


# Reasons that may not hold next time although the file is unchanged (a permission fixed): never cached.
_TRANSIENT_REASONS = ("cannot be read",)


def _answer_from_cache(
    found: _Found, headers: list[InstanceHeader], skipped: list[SkippedEntry]
) -> list[str]:
    """Take what the cache knows of unchanged files, forget files gone from the folders; return the rest."""
    with HeaderCache() as cache:
        if not cache.available:
            return list(found.files)
        cache.prune(RETENTION_DAYS * 86400.0)  # once per scan, before anything is taken from it
        rows: dict[str, CachedFile] = {}
        for folder in found.folders:
            under = cache.under(folder)
            rows.update(under)
            cache.forget(p for p in under if p not in found.files)
        rows.update(cache.lookup([p for p in found.files if p not in rows]))
    to_read: list[str] = []
    for path, stamp in found.files.items():
        row = rows.get(path)
        if row is not None and row.stamp == stamp:
            try:
                if row.header_json is not None:
                    headers.append(row.header())
                else:
                    skipped.append(SkippedEntry(path, row.reason or "skipped"))
                continue
            except (ValueError, TypeError, KeyError):
                pass  # a row this version cannot decode: read the file again
        to_read.append(path)
    return to_read


def _cache_inside_a_root(roots: list[str]) -> bool:
    db_real = os.path.realpath(default_db_path())
    return any(os.path.isdir(r) and _inside(db_real, os.path.realpath(r)) for r in roots)


def scan(
    paths: PathLike | Sequence[PathLike],
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    use_cache: bool = True,
    workers: int | None = None,
) -> StudyIndex:
    """Index folders (recursively), DICOMDIRs and files by their headers.

    Parameters
    ----------
    paths:
        One path or several: folders, DICOMDIR files (by the name the standard gives them) or DICOM files.
    progress:
        Called as ``progress(done, total, text)`` at most about 20 times a second; ``total`` is 0 while files
        are still being found.
    cancel:
        Checked between files (and every 50 ms while worker processes read); when it returns true the scan
        stops and raises :class:`~viewer.errors.CancelledError`. Headers read so far are kept in the cache.
    use_cache:
        Answer unchanged files from the persistent cache and store what was read (``False`` reads everything
        and touches no cache).
    workers:
        Reader processes: ``None`` decides from the number of files to read and the CPUs; ``1`` reads in this
        process.

    Raises
    ------
    ViewerError
        A path does not exist, or none was given.
    CancelledError
        ``cancel`` returned true.
    """
    t0 = time.perf_counter()
    tracker = _Tracker(progress, cancel)
    roots = _roots(paths)
    found = _find(roots, tracker)
    if found.hidden:
        log.info("index: %d hidden entries left out (dot files and folders, __MACOSX)", found.hidden)
    total = len(found.files)
    skipped = list(found.skipped)
    headers: list[InstanceHeader] = []

    use_cache = use_cache and not _cache_inside_a_root(roots)
    to_read = _answer_from_cache(found, headers, skipped) if use_cache else list(found.files)
    n_cached = total - len(to_read)
    done = n_cached
    tracker.report(done, total, "Reading headers", force=True)
    new_rows: list[CachedFile] = []

    def on_result(result: _Result, header: InstanceHeader | None) -> None:
        nonlocal done
        path, header_json, reason = result
        if header_json is not None:
            headers.append(header if header is not None else InstanceHeader.from_json(header_json))
        else:
            skipped.append(SkippedEntry(path, reason or "skipped"))
        if reason is None or not reason.startswith(_TRANSIENT_REASONS):
            new_rows.append(CachedFile(path, found.files[path], header_json, reason))
        done += 1
        tracker.report(done, total, os.path.basename(path))

    try:
        n_workers, ctx = _plan_workers(len(to_read), workers)
        if ctx is not None:
            to_read = _read_parallel(to_read, n_workers, ctx, on_result, tracker)
        _read_serial(to_read, on_result, tracker)
    finally:
        if use_cache and new_rows:
            # A fresh connection: none is held open while worker processes are forked.
            with HeaderCache() as cache:
                cache.store(new_rows)

    tracker.report(total, total, "Grouping series")
    patients = _group(headers, skipped)
    skipped.sort(key=lambda s: s.path)
    tracker.report(total, total, "Done", force=True)
    return StudyIndex(
        roots=roots,
        patients=patients,
        skipped=skipped,
        n_files=total,
        n_cached=n_cached,
        elapsed_s=time.perf_counter() - t0,
    )


# -- output --------------------------------------------------------------------------------------------------


def _date(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) >= 8 and da[:8].isdigit() else da


def _time(tm: str) -> str:
    digits = tm.split(".")[0]
    if len(digits) >= 4 and digits.isdigit():
        return ":".join(digits[i : i + 2] for i in range(0, min(len(digits), 6), 2))
    return tm


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _quoted(text: str) -> str:
    return f'"{text}"' if text else "(no description)"


def format_index(index: StudyIndex) -> str:
    """The index as the text ``gru-viewer index`` prints: patients → studies → series → stacks, then skips
    (file names that are not valid UTF-8 shown with :func:`viewer.errors.printable`)."""
    series = list(index.series())
    n_studies = sum(len(p.studies) for p in index.patients)
    lines = [
        ", ".join(index.roots),
        f"{_plural(len(index.patients), 'patient')}, {_plural(n_studies, 'study', 'studies')}, "
        f"{_plural(len(series), 'series', 'series')}, {_plural(sum(s.n_images for s in series), 'image')}; "
        f"{_plural(index.n_files, 'file')} ({index.n_cached} from cache), {len(index.skipped)} skipped; "
        f"{index.elapsed_s:.2f} s",
    ]
    for patient in index.patients:
        extra = "  ".join(v for v in (_date(patient.birth_date), patient.sex) if v)
        lines.append("")
        lines.append(
            f"Patient {patient.name or '(no name)'}  ID {patient.patient_id or '(none)'}  {extra}".rstrip()
        )
        for study in patient.studies:
            when = " ".join(v for v in (_date(study.date), _time(study.time)) if v) or "(no date)"
            acc = f"  accession {study.accession_number}" if study.accession_number else ""
            lines.append(f"  Study {when}  {_quoted(study.description)}{acc}  [{study.study_uid}]")
            for s in study.series:
                number = f"#{s.number}" if s.number is not None else "#?"
                lines.append(
                    f"    Series {number}  {s.modality or '??'}  {_quoted(s.description)}  {_date(s.date)}  "
                    f"{_plural(s.n_images, 'image')}  {s.columns}×{s.rows}  [{s.series_uid}]"
                )
                for stack in s.stacks:
                    spacing = f"  spacing {stack.spacing:.2f} mm" if stack.spacing else ""
                    slices = _plural(stack.n_slices, "slice")
                    lines.append(f"      stack {stack.label}: {slices}{spacing}  [{stack.uid}]")
                    lines.extend(f"        ! {w.message}" for w in stack.warnings)
    if index.skipped:
        by_reason = Counter(s.reason for s in index.skipped)
        summary = "; ".join(f"{n} {reason}" for reason, n in by_reason.most_common(5))
        more = f"; {len(by_reason) - 5} other reasons" if len(by_reason) > 5 else ""
        lines.append("")
        lines.append(f"Skipped {_plural(len(index.skipped), 'entry', 'entries')} ({summary}{more}):")
        lines.extend(f"  {_shown_path(s.path, index.roots)}: {s.reason}" for s in index.skipped)
    return printable("\n".join(lines))


def _shown_path(path: str, roots: list[str]) -> str:
    """A path relative to the folder scanned (or the DICOMDIR's folder) when it lies inside it."""
    for root in roots:
        base = root if os.path.isdir(root) else os.path.dirname(root)
        if path.startswith(base.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, base)
    return path


def _stack_dict(stack: Stack) -> dict[str, Any]:
    return {
        "uid": stack.uid,
        "label": stack.label,
        "n_slices": stack.n_slices,
        "rows": stack.rows,
        "columns": stack.columns,
        "orientation": [float(v) for v in stack.orientation] if stack.orientation is not None else None,
        "spacing": float(stack.spacing) if stack.spacing is not None else None,
        "tilt_deg": float(stack.tilt_deg),
        "warnings": [{"kind": w.kind, "message": w.message} for w in stack.warnings],
        "files": stack.files,
    }


def index_to_dict(index: StudyIndex) -> dict[str, Any]:
    """The index as JSON-serialisable data (for ``--json``): the tree, each stack's files, the skips."""
    return {
        "roots": list(index.roots),
        "n_files": index.n_files,
        "n_cached": index.n_cached,
        "elapsed_s": round(index.elapsed_s, 4),
        "patients": [
            {
                "patient_id": p.patient_id,
                "name": p.name,
                "birth_date": p.birth_date,
                "sex": p.sex,
                "studies": [
                    {
                        "study_uid": st.study_uid,
                        "date": st.date,
                        "time": st.time,
                        "description": st.description,
                        "accession_number": st.accession_number,
                        "series": [
                            {
                                "series_uid": se.series_uid,
                                "number": se.number,
                                "description": se.description,
                                "modality": se.modality,
                                "date": se.date,
                                "n_images": se.n_images,
                                "n_files": len(se.headers),
                                "rows": se.rows,
                                "columns": se.columns,
                                "stacks": [_stack_dict(k) for k in se.stacks],
                            }
                            for se in st.series
                        ],
                    }
                    for st in p.studies
                ],
            }
            for p in index.patients
        ],
        "skipped": [{"path": s.path, "reason": s.reason} for s in index.skipped],
    }
