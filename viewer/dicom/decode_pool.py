"""Compressed slices decoded in worker processes, straight into a volume in shared memory.

Every decoder but GDCM's JPEG 2000 path holds the GIL for a whole frame (measured in :mod:`viewer.dicom.pixels`),
so decoding threads run one at a time, and while one decodes, the GUI thread waits for the GIL too: each Python
call of an event-loop turn (a paint, a progress slot) can wait a whole frame's decode, which added up to GUI
stalls of 65–98 ms during compressed loads. Worker processes have a GIL each: the slices decode on every core
and the viewer's own process stays free.

How a load goes (:func:`decode_into`): the volume is allocated in a file under ``/dev/shm`` mapped by this
process (:func:`shared_array`); the slices go to the workers in small chunks in display order (the first chunk is
one slice, so the first image shows after one decode); each worker maps the same file, decodes its slices into
their places with the same decoder chain as the in-process reader, and returns only what happened per slice.
The file is unlinked as soon as the load ends, so the memory lives exactly as long as the volume's array in this
process; the pixel buffer is written once, never pickled.

A worker that dies (a native decoder aborting on a corrupt codestream, the out-of-memory killer) breaks the pool:
the slices it had not returned are decoded in this process and the next load starts a new pool. Where worker
processes cannot be used (not Linux, a frozen bundle, one core, ``/dev/shm`` missing or too small,
``GRU_VIEWER_DECODE_PROCESSES=0``) :func:`unavailable` says why and the reader decodes on its own thread as before.

The workers are started by a fork server that imports this module once (about 0.6 s on this 2-core machine, once
per process); pools after the first start in about 15 ms. :func:`warm_up` starts it ahead of need (the viewer
does at start-up); a load that finds no pool running uses one only when the series is long enough
(:data:`MIN_SLICES_COLD`) to repay the start.
"""

from __future__ import annotations

import atexit
import logging
import mmap
import multiprocessing
import os
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
ENV = "GRU_VIEWER_DECODE_PROCESSES"
MAX_PROCESSES = 8
#: A series shorter than this does not start a pool (its start costs about as much as decoding 40–60 slices on
#: one core); an already running pool takes any series of two slices or more.
MIN_SLICES_COLD = 64
#: Slices per task after the first: enough that inter-process calls cost little (about 0.2 ms each), few enough
#: that slices reach the screen in order without waiting on a long chunk.
CHUNK = 4
_PREFIX = "gru-viewer-"

SliceOutcome = tuple[
    int, str, Any
]  # (slice, "ok" | "error" | "plan", decoder used | reason | (reason, plan))

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_start_failed = ""
_closed = False
START_TIMEOUT_S = 30.0


def processes() -> int:
    """Worker processes a pool would have: the cores, at most :data:`MAX_PROCESSES` (or the environment's)."""
    cores = os.cpu_count() or 1
    wanted = os.environ.get(ENV, "").strip()
    if wanted.isdigit():
        return min(int(wanted), MAX_PROCESSES)
    return min(cores, MAX_PROCESSES)


def unavailable() -> str | None:
    """Why compressed slices cannot be decoded in worker processes here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "worker processes share volumes through /dev/shm, which only Linux has"
    if getattr(sys, "frozen", False):
        return "a frozen bundle cannot start the fork server's interpreter"
    if processes() < 2:
        return f"{ENV}={os.environ.get(ENV)} or a single core"
    if not (SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)):
        return f"{SHM_DIR} is missing or not writable"
    return None


def is_warm() -> bool:
    """Whether a pool is running now (a load then uses it whatever its length)."""
    return _pool is not None


def should_use(n_slices: int) -> bool:
    """Whether a compressed stack of ``n_slices`` is worth decoding in worker processes."""
    if n_slices < 2 or unavailable() is not None or _start_failed or _closed:
        return False
    return is_warm() or n_slices >= MIN_SLICES_COLD


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "viewer.dicom.readers"])
    return ctx


def _ready() -> int:
    return os.getpid()


def _exit_with(viewer_pid: int) -> None:
    """In each worker: end it when the viewer's process ends, however it ends.

    A worker waits on its task queue, whose writing end it holds itself, and the fork server stays while any
    worker lives: a viewer killed outright (SIGKILL, a crash) left the fork server and its workers running for
    good (seen: three of each, 50–75 MB apiece). A pidfd names that very process (no PID reuse), and a thread
    waiting on it costs nothing until it fires."""
    import select

    try:
        pidfd = os.pidfd_open(viewer_pid)
    except (AttributeError, OSError):  # no pidfd (Linux < 5.3), or the viewer is already gone
        if not _alive(viewer_pid):
            os._exit(0)
        return

    def watch() -> None:
        select.select([pidfd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-viewer", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pool() -> ProcessPoolExecutor:
    """The running pool, started (and its workers up) when there is none.

    Raises
    ------
    OSError, RuntimeError, BrokenProcessPool
        When the workers cannot start; :func:`running_pool` turns that into None.
    """
    global _pool
    with _lock:
        if _closed:
            raise RuntimeError("the decoding processes were closed for good (the viewer is quitting)")
        if _pool is None:
            executor = ProcessPoolExecutor(
                processes(), mp_context=_context(), initializer=_exit_with, initargs=(os.getpid(),)
            )
            try:
                for f in [executor.submit(_ready) for _ in range(processes())]:
                    f.result(timeout=START_TIMEOUT_S)
            except BaseException:
                executor.shutdown(wait=False, cancel_futures=True)
                raise
            _pool = executor
        return _pool


def running_pool() -> ProcessPoolExecutor | None:
    """:func:`pool`, or None (said once in the log) when the workers cannot start: the load then decodes here."""
    global _start_failed
    if _start_failed:
        return None
    try:
        return pool()
    except Exception as exc:
        _start_failed = f"{type(exc).__name__}: {exc}"
        log.warning("decoding in this process: the decoding processes could not start (%s)", _start_failed)
        return None


def warm_up() -> None:
    """Start the pool on a background thread, so the first compressed series does not wait for it."""
    if unavailable() is None and _pool is None and not _closed:
        threading.Thread(target=_warm, name="decode-pool-warm-up", daemon=True).start()


def _warm() -> None:
    try:
        remove_stale()
        pool()
    except Exception as exc:  # a pool that cannot start leaves decoding on this process's thread
        log.info("decoding processes could not start: %s", exc)


def discard(broken: ProcessPoolExecutor) -> None:
    """Forget a pool whose worker died; the next load starts a new one."""
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


@atexit.register
def shutdown() -> None:
    """Stop the workers (at exit, and in tests); a later load starts them again."""
    global _pool
    with _lock:
        executor, _pool = _pool, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def close() -> None:
    """Stop the workers for good, before the interpreter shuts down (the viewer calls it when its window has
    closed). A warm-up under way is waited for rather than cut off: a worker still starting while its parent
    tears down the pool's semaphores prints a traceback of its own."""
    global _closed
    with _lock:
        _closed = True
    shutdown()


# ---------------------------------------------------------------------------------------------------------------
# The shared volume
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SharedVolume:
    """A volume's array in a ``/dev/shm`` file; :meth:`release` unlinks the file once no worker needs it."""

    array: np.ndarray
    path: Path

    def release(self) -> None:
        """Unlink the file; the memory stays mapped here until the array is freed."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def shared_array(shape: Sequence[int], dtype: np.dtype) -> SharedVolume | None:
    """A zero-filled array in shared memory, or None when ``/dev/shm`` lacks the room (the caller allocates
    normally: writing past a full tmpfs would kill the process with SIGBUS, so the room is checked first)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if nbytes == 0:
        return None
    try:
        stats = os.statvfs(SHM_DIR)
    except OSError:
        return None
    if stats.f_bavail * stats.f_frsize < nbytes + (64 << 20):
        log.info("decoding in this process: %s has under %d MB free", SHM_DIR, (nbytes >> 20) + 64)
        return None
    path = SHM_DIR / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, nbytes)
        mapped = mmap.mmap(fd, nbytes)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        return None
    os.close(fd)
    array = np.frombuffer(mapped, dtype=dtype).reshape(tuple(int(s) for s in shape))
    return SharedVolume(array, path)


def remove_stale() -> int:
    """Unlink volume files left in ``/dev/shm`` by viewer processes that no longer run (a crash mid-load)."""
    removed = 0
    for path in SHM_DIR.glob(f"{_PREFIX}*"):
        pid = path.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            removed += 1
        except PermissionError:
            continue
    return removed


# ---------------------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """What a worker needs to decode slices of one load (sent with each chunk; the slices' refs travel apart)."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    colour: bool
    plan: Any  # ModalityPlan | None


def attach(spec: LoadSpec) -> np.ndarray | None:
    """In a worker: the load's shared array (None when the load has ended). The mapping lives as long as the
    array and the views taken of it, and goes when the chunk's work drops them."""
    try:
        fd = os.open(spec.path, os.O_RDWR)
    except FileNotFoundError:  # the load ended (cancelled) before this chunk ran
        return None
    try:
        mapped = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    return np.frombuffer(mapped, dtype=np.dtype(spec.dtype)).reshape(spec.shape)


# ---------------------------------------------------------------------------------------------------------------
# Main side
# ---------------------------------------------------------------------------------------------------------------


def chunks(indices: Sequence[int]) -> list[list[int]]:
    """The slices in display order: the first alone (the first image at once), then :data:`CHUNK` at a time."""
    items = list(indices)
    if not items:
        return []
    out = [items[:1]]
    out += [items[i : i + CHUNK] for i in range(1, len(items), CHUNK)]
    return out


def decode_into(
    shared: SharedVolume,
    refs: Sequence[Any],
    colour: bool,
    plan: Any,
    todo: Sequence[int],
    work: Callable[[LoadSpec, list[tuple[int, Any]]], list[SliceOutcome]],
    on_outcome: Callable[[SliceOutcome], None],
    cancelled: Callable[[], bool],
    fallback: Callable[[int], SliceOutcome],
) -> None:
    """Decode slices ``todo`` of ``refs`` into ``shared.array`` on the workers, each chunk by ``work`` (a
    module-level function, run in a worker with the chunk's ``(slice, ref)`` pairs); ``on_outcome`` sees each
    slice's outcome in display order on this thread. Slices a dead worker did not return go to ``fallback``
    (decoding here).

    Raises
    ------
    CancelledError
        When ``cancelled()`` turns true (chunks not started are dropped; the file is unlinked by the caller).
    """
    from viewer.errors import CancelledError

    executor = pool()  # started by the caller (running_pool) before it hands the slices over
    array = shared.array
    spec = LoadSpec(str(shared.path), tuple(array.shape), array.dtype.str, colour, plan)
    parts = chunks(todo)
    futures: list[Future[list[SliceOutcome]]] = [
        executor.submit(work, spec, [(k, refs[k]) for k in part]) for part in parts
    ]
    broken = False
    try:
        for part, future in zip(parts, futures, strict=True):
            if cancelled():
                raise CancelledError()
            outcomes: list[SliceOutcome]
            if broken:
                outcomes = [fallback(k) for k in part]
            else:
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    log.warning("a decoding process died; the rest of the series is decoded in this process")
                    broken = True
                    discard(executor)
                    outcomes = [fallback(k) for k in part]
            for outcome in outcomes:
                if cancelled():
                    raise CancelledError()
                on_outcome(outcome)
    finally:
        for future in futures:
            future.cancel()
