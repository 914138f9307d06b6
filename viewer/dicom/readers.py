"""Two readers behind one interface: ours (pydicom + chosen decoders) and SimpleITK's ``ImageSeriesReader``.

Both take a :class:`~viewer.dicom.stacks.Stack` (slices already sorted along the normal by our own code, never
by ``GetGDCMSeriesFileNames``) and return a :class:`~viewer.dicom.volume.Volume`. A test loads the same phantom
with both and compares array and geometry, as 3D Slicer's ``DICOMReaders.py::test_AlternateReaders`` does.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol

import numpy as np

from viewer.dicom import decode_pool
from viewer.dicom.codec_guard import native_stderr_captured
from viewer.dicom.geometry import GeometryWarning, VolumeGeometry, build_geometry, normal_from_orientation
from viewer.dicom.headers import InstanceHeader
from viewer.dicom.identifiers import SeriesIdentifiers
from viewer.dicom.memory import refuse_if_too_large
from viewer.dicom.modality_dtype import ModalityPlan, PlanBroken, check_frame, plan_for
from viewer.dicom.native_scan import DirectSource, compressed_source, direct_source
from viewer.dicom.pixels import (
    DecodeError,
    SourceFile,
    decoder_choice,
    decoder_order,
    robust_window,
)
from viewer.dicom.prefault import prefault
from viewer.dicom.stacks import SliceRef, Stack
from viewer.dicom.volume import Volume
from viewer.errors import CancelledError, ViewerError
from viewer.progress import CancelFn, ProgressFn

SliceFn = Callable[[int, np.ndarray], None]

MAX_WORKERS = 4
MAX_STACK_SLICES = 2000
"""The most slices a stack may have to be loaded (``GRU_VIEWER_MAX_STACK_SLICES`` overrides it). Whatever the
matrix, each slice costs its own work and memory on the way to an analysis (about 0.5 MB each at the model's
input size), so a folder of thousands of tiny slices would take gigabytes; a head CT has a few hundred."""
MAX_STACK_SLICES_ENV = "GRU_VIEWER_MAX_STACK_SLICES"

log = logging.getLogger(__name__)


def default_workers() -> int:
    """Threads for the direct read of uncompressed data.

    A slice's read is a ``pread`` (no GIL) with a few tens of microseconds of Python and numpy around it, and the
    GIL hand-offs between two threads cost about as much as they save: on 2 cores (300 × 512², session 8, with
    the indexed layout and the page-mapping thread of :mod:`viewer.dicom.prefault`) one thread took 46 ms and two
    55 ms. So threads are used only where cores are left over.
    """
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(MAX_WORKERS, cores // 2)


COLOUR_WINDOW = (127.5, 255.0)


class VolumeReader(Protocol):
    """What :func:`load_stack` needs from a reader."""

    name: str

    def read(
        self,
        stack: Stack,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        on_slice: SliceFn | None = None,
    ) -> Volume:
        """Load ``stack`` into a :class:`~viewer.dicom.volume.Volume`; arguments as in :func:`load_stack`."""


def max_stack_slices() -> int:
    """The most slices a stack may have to be loaded: ``$GRU_VIEWER_MAX_STACK_SLICES``, else
    :data:`MAX_STACK_SLICES`."""
    try:
        value = int(os.environ.get(MAX_STACK_SLICES_ENV, ""))
    except ValueError:
        return MAX_STACK_SLICES
    return value if value > 0 else MAX_STACK_SLICES


def get_reader(name: str, *, workers: int | None = None) -> VolumeReader:
    """``"pydicom"`` (ours) or ``"simpleitk"``."""
    key = name.lower().replace("_", "")
    if key in ("pydicom", "ours", "auto"):
        return PydicomReader(workers=workers)
    if key in ("simpleitk", "sitk"):
        return SimpleITKReader()
    raise ValueError(f"unknown reader {name!r}: use 'pydicom' or 'simpleitk'")


# ---------------------------------------------------------------------------------------------------------------
# What both readers share: naming the stack, metadata, window, units
# ---------------------------------------------------------------------------------------------------------------


def stack_name(stack: Stack) -> str:
    """How errors name a stack: series number, description, label and uid."""
    h = stack.first
    number = f"series {h.series_number}" if h.series_number is not None else "series"
    desc = f" “{h.series_description}”" if h.series_description else ""
    return f"{number}{desc} ({stack.label}, {stack.uid})"


def _identifiers(header: InstanceHeader, source: SourceFile | None) -> SeriesIdentifiers:
    institution = ""
    if source is not None:
        institution = str(source.ds.get("InstitutionName", "") or "").strip()
    return SeriesIdentifiers.from_header(header, institution=institution)


def _window(
    source: SourceFile | None, frame: int, header: InstanceHeader, array: np.ndarray, colour: bool
) -> tuple[float, float]:
    if colour:
        return COLOUR_WINDOW
    voi = source.voi(frame) if source is not None else None
    if voi is None and header.window_center is not None and header.window_width and header.window_width > 0:
        voi = (header.window_center, header.window_width)
    return voi if voi is not None else robust_window(array)


def _units(modality: str, source: SourceFile | None, frame: int) -> str:
    """ "HU" for CT with a rescale (RescaleType empty, HU or US: the CT IOD defines HU), "Gy" for RT Dose."""
    if source is None:
        return ""
    params = source.modality_params(frame)
    if modality == "CT":
        return "HU" if params.has_rescale and params.rescale_type in ("", "HU", "US") else ""
    if modality == "RTDOSE" and params.rescale_type == "GY":
        return "Gy"
    return ""


def _slice_thickness(refs: list[SliceRef]) -> float | None:
    for r in refs:
        if r.geometry.slice_thickness:
            return float(r.geometry.slice_thickness)
    return None


def _pixel_spacing(refs: list[SliceRef], warnings: list[str]) -> tuple[float, float] | None:
    spacings = {r.geometry.pixel_spacing for r in refs if r.geometry.pixel_spacing}
    if not spacings:
        warnings.append("no pixel spacing in the files: distances are in pixels, not mm")
        return None
    if len(spacings) > 1:
        warnings.append("pixel spacing differs between slices: the first slice's spacing is used")
    return refs[0].geometry.pixel_spacing or next(iter(spacings))


def _derived_positions(stack: Stack, source: SourceFile) -> tuple[list, tuple[float, ...] | None] | None:
    """Positions of a classic multi-frame file's frames (e.g. RT Dose): IPP + GridFrameOffsetVector × normal.

    PS3.3 C.8.8.3.2: offsets are relative to IPP when the first offset is 0, otherwise they are z values along
    the normal and IPP's own projection is subtracted.
    """
    files = stack.files
    if len(files) != 1 or any(r.geometry.position is not None for r in stack.slices):
        return None
    ds = source.ds
    ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    offsets = ds.get("GridFrameOffsetVector")
    if ipp is None or iop is None or offsets is None or len(offsets) != source.n_frames:
        return None
    orientation = tuple(float(v) for v in iop)
    origin = np.asarray([float(v) for v in ipp])
    normal = normal_from_orientation(orientation)
    off = np.asarray([float(v) for v in offsets])
    if off[0] != 0:
        off = off - float(origin @ normal)
    positions = [origin + normal * off[r.frame] for r in stack.slices]
    return positions, orientation


# ---------------------------------------------------------------------------------------------------------------
# Our reader
# ---------------------------------------------------------------------------------------------------------------


class _Sources:
    """Parsed files shared by the slices (frames) that come from them; each is dropped after its last slice."""

    def __init__(self, refs: Sequence[SliceRef]) -> None:
        self._remaining = Counter(r.header.path for r in refs)
        self._cache: dict[str, SourceFile | DirectSource | DecodeError] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(
        self, ref: SliceRef, parsed: bool = False, dest: np.ndarray | None = None
    ) -> SourceFile | DirectSource:
        """The file of ``ref``: a :class:`DirectSource` (no pydicom parse) where its indexed header and a scan of
        its elements suffice, else (and always with ``parsed``) a :class:`SourceFile`. ``dest`` is the buffer a
        direct read of ``ref`` will fill (see :func:`~viewer.dicom.native_scan.direct_source`)."""
        path = ref.header.path
        with self._lock:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            found = self._cache.get(path)
            if parsed and isinstance(found, SourceFile | DirectSource) and _quick(found):
                found = None
            if found is None and not parsed:
                found = direct_source(ref.header, dest) or compressed_source(ref.header)
            if found is None:
                try:
                    found = SourceFile(path, ref.header.transfer_syntax_uid, ref.header)
                except DecodeError as exc:
                    found = exc
                except Exception as exc:  # a damaged element fails when pydicom first converts its value
                    found = DecodeError(f"damaged header ({type(exc).__name__}: {exc})"[:300])
                self._cache[path] = found
        if isinstance(found, DecodeError):
            raise found
        return found

    def done(self, ref: SliceRef) -> None:
        path = ref.header.path
        with self._lock:
            self._remaining[path] -= 1
            if self._remaining[path] <= 0:
                self._cache.pop(path, None)
                self._locks.pop(path, None)


class _SliceDecoder:
    """Decodes slice ``k`` of a stack into ``array[k]``; safe to call from several threads at once.

    Each transfer syntax keeps its decoder order, and a fallback that worked goes first for the next slices
    (one failure per stack, not per slice). Uncompressed frames reuse a scratch buffer per thread.
    """

    def __init__(
        self,
        refs: Sequence[SliceRef] | dict[int, SliceRef],
        sources: _Sources,
        array: np.ndarray,
        colour: bool,
        plan: ModalityPlan | None = None,
    ) -> None:
        self.refs = refs
        self.sources = sources
        self.array = array
        self.colour = colour
        self.plan = plan
        self.accept = partial(check_frame, plan) if plan is not None and plan.params is not None else None
        self.rows, self.cols = int(array.shape[1]), int(array.shape[2])
        self.stop = threading.Event()
        self._order_by_ts: dict[str, tuple[str, ...]] = {}
        self._ts_lock = threading.Lock()
        self._local = threading.local()
        self._dest_kinds: dict[tuple[int, int], tuple[np.dtype | None, bool]] = {}

    def _plugins_for(self, ts: str) -> tuple[str, ...]:
        with self._ts_lock:
            if ts not in self._order_by_ts:
                self._order_by_ts[ts] = decoder_order(ts)
            return self._order_by_ts[ts]

    def _promote(self, ts: str, used: str) -> None:
        with self._ts_lock:
            current = self._order_by_ts.get(ts, ())
            if current and current[0] != used and used in current:
                self._order_by_ts[ts] = (used,) + tuple(p for p in current if p != used)

    def _scratch(self, source: SourceFile | DirectSource) -> np.ndarray | None:
        """This thread's buffer for a direct read of ``source`` (None when it is not read directly)."""
        return self._scratch_of(source.stored_dtype) if source.direct else None

    def _scratch_of(self, dtype: np.dtype) -> np.ndarray:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None or scratch.dtype != dtype or scratch.shape != (self.rows, self.cols):
            scratch = self._local.scratch = np.empty((self.rows, self.cols), dtype=dtype)
        return scratch

    def _direct_dest(self, k: int, ref: SliceRef) -> np.ndarray | None:
        """Where a direct read of slice ``k`` puts its stored values, as the sources' ``grey_into`` chooses:
        the volume's slice itself when the stored and volume types have one width, else this thread's scratch."""
        h = ref.header
        key = (h.bits_allocated, h.pixel_representation)
        kind = self._dest_kinds.get(key)
        if kind is None:
            kind = self._dest_kinds[key] = self._dest_kind(*key)
        stored, in_place = kind
        if stored is None:
            return None
        return self.array[k].view(stored) if in_place else self._scratch_of(stored)

    def _dest_kind(self, bits_allocated: int, pixel_representation: int) -> tuple[np.dtype | None, bool]:
        """The stored type of such slices and whether they are read into the volume's own memory."""
        if self.colour or bits_allocated not in (8, 16, 32):
            return None, False
        stored = np.dtype(f"<{'i' if pixel_representation == 1 else 'u'}{bits_allocated // 8}")
        out = self.array.dtype
        return stored, out.kind in "iu" and out.itemsize == stored.itemsize and out.isnative

    def decode(self, k: int) -> str:
        """Decode slice ``k`` and return the decoder that did it ("" once :attr:`stop` is set).

        Raises
        ------
        DecodeError
            When the slice cannot be decoded (a damaged value in its header included).
        PlanBroken
            When the slice's modality values do not fit the volume's type.
        """
        if self.stop.is_set():
            return ""
        ref = self.refs[k]
        try:
            source = self.sources.get(ref, parsed=self.colour, dest=self._direct_dest(k, ref))
            try:
                return self._into(k, ref, source)
            except DecodeError:
                if not _quick(source):
                    raise
                # What the quick path could not do, the whole header may (or it says why not).
                return self._into(k, ref, self.sources.get(ref, parsed=True))
        except (DecodeError, PlanBroken):
            raise
        except Exception as exc:  # a value (rescale, LUT, palette) pydicom cannot convert: a damaged slice
            raise DecodeError(f"damaged header ({type(exc).__name__}: {exc})"[:300]) from None
        finally:
            self.sources.done(ref)

    def _into(self, k: int, ref: SliceRef, source: SourceFile | DirectSource) -> str:
        """Decode ``ref`` from ``source`` into slice ``k``; the decoder used."""
        if (source.rows, source.columns) != (self.rows, self.cols):
            raise DecodeError(
                f"image is {source.rows}×{source.columns}, the stack's are {self.rows}×{self.cols}"
            )
        plugins = self._plugins_for(source.transfer_syntax)
        if isinstance(source, SourceFile) and self.colour:
            used = source.colour_into(ref.frame, self.array[k], plugins)
        else:
            used = source.grey_into(
                ref.frame, self.array[k], plugins, self._scratch(source), accept=self.accept
            )
        if used not in ("direct",):
            self._promote(source.transfer_syntax, used)
        return used


def slice_decoder(
    refs: dict[int, SliceRef], array: np.ndarray, colour: bool, plan: ModalityPlan | None
) -> _SliceDecoder:
    """A decoder of some slices of a stack (``refs`` by slice index) into ``array``: what a decoding process
    (:mod:`viewer.dicom.decode_pool`) runs on its chunk."""
    return _SliceDecoder(refs, _Sources(list(refs.values())), array, colour, plan)


def decode_chunk(
    spec: decode_pool.LoadSpec, items: list[tuple[int, SliceRef]]
) -> list[decode_pool.SliceOutcome]:
    """In a decoding process: decode the ``(slice, ref)`` pairs into the load's shared array, one outcome each."""
    array = decode_pool.attach(spec)
    if array is None:
        return [(k, "error", "the load was cancelled") for k, _ in items]
    decoder = slice_decoder(dict(items), array, spec.colour, spec.plan)
    return [_outcome(decoder, k) for k, _ in items]


def _outcome(decoder: _SliceDecoder, k: int) -> decode_pool.SliceOutcome:
    """Decode slice ``k`` and say how it went, as a value (it crosses a process boundary): the decoder used, the
    reason it failed, or the plan a slice that does not fit the volume's type asks for."""
    try:
        return (k, "ok", decoder.decode(k))
    except DecodeError as exc:
        return (k, "error", str(exc))
    except PlanBroken as broken:
        return (k, "plan", (str(broken), broken.fallback))


def _quick(source: SourceFile | DirectSource) -> bool:
    """Whether ``source`` was made without a pydicom parse of its file (:mod:`viewer.dicom.native_scan`)."""
    return isinstance(source, DirectSource) or source.minimal


def _first_readable(
    stack: Stack, refs: list[SliceRef], sources: _Sources, failed: dict[int, str], cancel: CancelFn | None
) -> tuple[SourceFile, int]:
    """The first file that parses (for what the headers do not hold: bits stored, LUTs, frames) and its index.

    Files that fail on the way are recorded in ``failed``.

    Raises
    ------
    ViewerError
        When no file of the stack parses.
    """
    for k, r in enumerate(refs):
        if cancel is not None and cancel():
            raise CancelledError()
        try:
            source = sources.get(r, parsed=True)
            assert isinstance(source, SourceFile)
            return source, k
        except DecodeError as exc:
            failed[k] = str(exc)
            sources.done(r)
    raise ViewerError(
        "Could not load " + stack_name(stack), f"none of its {len(refs)} images can be read: {failed[0]}"
    )


def _ordered_slices(
    stack: Stack, refs: list[SliceRef], source: SourceFile, derived_allowed: bool
) -> tuple[list[SliceRef], list, tuple[float, ...] | None, bool]:
    """Slices, their positions and the orientation, in display order.

    A multi-frame file without per-frame positions gets them from its GridFrameOffsetVector (when
    ``derived_allowed``) and is re-sorted along the normal. The last item says whether positions were derived.
    """
    positions: list = [r.geometry.position for r in refs]
    orientation = stack.orientation
    derived = _derived_positions(stack, source) if derived_allowed else None
    if derived is None:
        return refs, positions, orientation, False
    positions, orientation = derived
    order = np.argsort([float(np.asarray(p) @ _normal(orientation)) for p in positions], kind="stable")
    return [refs[i] for i in order], [positions[i] for i in order], orientation, True


def _allocate(stack: Stack, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The volume's array, allocated once; a clear error when memory is short."""
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        kind = "RGB" if len(shape) == 4 else str(dtype)
        raise ViewerError(
            "Could not load " + stack_name(stack),
            f"not enough memory for {' × '.join(str(v) for v in shape[:3])} {kind} voxels",
        ) from None


def _volume_layout(
    stack: Stack, refs: list[SliceRef], source: SourceFile, frame: int, plan: ModalityPlan | None
) -> tuple[tuple[int, ...], np.dtype, ModalityPlan | None]:
    """Shape, type and (greyscale) modality plan of the volume, refused when it would take too much memory."""
    n, rows, cols = len(refs), source.rows, source.columns
    if source.is_colour:
        shape: tuple[int, ...] = (n, rows, cols, 3)
        dtype = np.dtype(np.uint8)
        plan = None
    else:
        shape = (n, rows, cols)
        plan = plan if plan is not None else plan_for(source, frame, refs)
        dtype = plan.dtype
        log.debug("load: %s as %s", stack.label, plan.why)
    refuse_if_too_large(stack_name(stack), int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    return shape, dtype, plan


def _decode_all(
    decoder: _SliceDecoder,
    stack: Stack,
    workers: int,
    threaded: bool,
    failed: dict[int, str],
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    on_slice: SliceFn | None,
) -> Counter[str]:
    """Decode every slice not yet in ``failed`` (on ``workers`` threads when ``threaded``), in display order.

    Slices that fail are added to ``failed``; ``on_slice`` and ``progress`` are called from this thread, slice
    by slice in order. Returns how many slices each decoder did.
    """
    n = len(decoder.refs)
    used_counts: Counter[str] = Counter()
    slices = _SliceThreads(decoder, workers, set(failed)) if threaded else None
    try:
        for k in range(n):
            if cancel is not None and cancel():
                raise CancelledError()
            if k not in failed:
                try:
                    used = slices.result(k, cancel) if slices is not None else decoder.decode(k)
                    used_counts[used] += 1
                    if on_slice is not None:
                        on_slice(k, decoder.array[k])
                except DecodeError as exc:
                    failed[k] = str(exc)
            if progress is not None:
                progress(k + 1, n, f"{stack.label}: slice {k + 1} of {n}")
    finally:
        decoder.stop.set()
        if slices is not None:
            slices.join()
    return used_counts


class _SliceThreads:
    """Threads that each take the next slice not yet taken and decode it: one loop per thread rather than a task
    per slice, since a direct read is a few tens of microseconds of Python around a ``pread`` and a task's
    hand-off through a pool (and the GIL hand-offs it brings) cost as much as the read."""

    def __init__(self, decoder: _SliceDecoder, workers: int, skip: set[int]) -> None:
        self._decoder = decoder
        self._skip = skip
        self._next = iter(range(len(decoder.refs)))  # next() on a range iterator is atomic under the GIL
        self._results: list[str | BaseException | None] = [None] * len(decoder.refs)
        self._done = [threading.Event() for _ in decoder.refs]
        self._threads = [
            threading.Thread(target=self._work, name=f"load-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        decoder = self._decoder
        for k in self._next:
            if decoder.stop.is_set():
                return
            if k not in self._skip:
                try:
                    self._results[k] = decoder.decode(k)
                except BaseException as exc:  # handed to the caller's thread, which raises it there
                    self._results[k] = exc
            self._done[k].set()

    def result(self, k: int, cancel: CancelFn | None) -> str:
        """The decoder used for slice ``k`` once it is done; its exception raised here."""
        while not self._done[k].wait(0.05):
            if cancel is not None and cancel():
                raise CancelledError()
        result = self._results[k]
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result

    def join(self) -> None:
        """Wait for the threads (each stops at its next slice once the decoder's ``stop`` is set)."""
        for thread in self._threads:
            thread.join()


def _decode_in_processes(
    decoder: _SliceDecoder,
    shared: decode_pool.SharedVolume,
    stack: Stack,
    failed: dict[int, str],
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    on_slice: SliceFn | None,
) -> Counter[str]:
    """:func:`_decode_all` with the decoding in worker processes (:mod:`viewer.dicom.decode_pool`): the same
    outcomes, ``on_slice`` and ``progress`` in display order on this thread."""
    n = len(decoder.refs)
    used_counts: Counter[str] = Counter()

    def outcome(result: decode_pool.SliceOutcome) -> None:
        k, kind, value = result
        if kind == "ok":
            used_counts[value] += 1
            if on_slice is not None:
                on_slice(k, decoder.array[k])
        elif kind == "error":
            failed[k] = value
        else:
            why, fallback = value
            raise PlanBroken(why, fallback)
        if progress is not None:
            progress(k + 1, n, f"{stack.label}: slice {k + 1} of {n}")

    todo = [k for k in range(n) if k not in failed]
    if todo and not decode_pool.is_warm():
        # The first image at once: decoded here while the workers start (0.6 s, more on a busy machine).
        outcome(_outcome(decoder, todo.pop(0)))
    if decode_pool.running_pool() is None:  # the workers cannot start: the rest is decoded here too
        for k in todo:
            if cancel is not None and cancel():
                raise CancelledError()
            outcome(_outcome(decoder, k))
        return used_counts
    decode_pool.decode_into(
        shared,
        decoder.refs,
        decoder.colour,
        decoder.plan,
        todo,
        decode_chunk,
        outcome,
        (lambda: bool(cancel())) if cancel is not None else (lambda: False),
        partial(_outcome, decoder),
    )
    return used_counts


def _drop_failed(stack: Stack, array: np.ndarray, failed: dict[int, str]) -> tuple[np.ndarray, list[int]]:
    """Close the gaps of failed slices in place; returns the shortened array and the kept indices.

    Raises
    ------
    ViewerError
        When no slice decoded.
    """
    n = int(array.shape[0])
    keep = [k for k in range(n) if k not in failed]
    if not keep:
        first = failed[min(failed)]
        raise ViewerError("Could not load " + stack_name(stack), f"none of its {n} images decodes: {first}")
    if failed:
        for new, old in enumerate(keep):
            if new != old:
                array[new] = array[old]
        array = array[: len(keep)]
    return array, keep


def _slice_warnings(kept: list[SliceRef], skipped: list[tuple[str, str]], warnings: list[str]) -> None:
    """Append the warnings about the loaded slices themselves: mixed photometrics, skipped files."""
    photometrics = {r.header.photometric_interpretation for r in kept}
    if len(photometrics) > 1:
        warnings.append("slices differ in photometric interpretation: " + ", ".join(sorted(photometrics)))
    for path, why in skipped:
        warnings.append(f"skipped {path}: {why}")


class PydicomReader:
    """Our reader: one preallocated array, slices decoded straight into it.

    Uncompressed little-endian frames are read from their known offset and rescaled into the volume, on threads
    where cores are spare (:func:`default_workers`); after the stack's first file (parsed by pydicom for what the
    index does not hold) each file's pixel data is found by :func:`viewer.dicom.native_scan.direct_source`
    without a pydicom parse, and read straight into its slice where the stored and volume types have one width. Compressed frames go
    to the decoder chosen per transfer syntax (:data:`viewer.dicom.pixels.DECODERS`), falling back along its
    list; the first fallback that works is tried first for the remaining slices.
    A damaged slice is skipped and reported; the geometry is then recomputed from the slices that loaded.
    """

    name = "pydicom"

    def __init__(self, workers: int | None = None, processes: bool = True) -> None:
        self.workers = workers if workers else default_workers()
        self.processes = processes

    def read(
        self,
        stack: Stack,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        on_slice: SliceFn | None = None,
    ) -> Volume:
        """Load ``stack`` into a :class:`~viewer.dicom.volume.Volume`; see :func:`load_stack` for the arguments.

        Steps: parse the first readable file, put the slices in display order, choose the volume's type
        (:func:`viewer.dicom.modality_dtype.plan_for`), allocate the array, decode the slices into it, drop the
        damaged ones and compute the geometry of those that loaded. When a slice does not fit the chosen integer
        type the stack is loaded again with the plan's fallback (``on_slice`` then sees those slices again).
        """
        plan: ModalityPlan | None = None
        while True:
            try:
                return self._read(stack, plan, progress, cancel, on_slice)
            except PlanBroken as broken:
                log.debug("load: %s; loading again as %s", broken, broken.fallback.dtype)
                plan = broken.fallback

    def _read(
        self,
        stack: Stack,
        plan: ModalityPlan | None,
        progress: ProgressFn | None,
        cancel: CancelFn | None,
        on_slice: SliceFn | None,
    ) -> Volume:
        refs = list(stack.slices)
        n = len(refs)
        if n == 0:
            raise ViewerError("Could not load " + stack_name(stack), "the stack has no images")
        sources = _Sources(refs)
        failed: dict[int, str] = {}
        ref_source, ref_index = _first_readable(stack, refs, sources, failed, cancel)
        ref_frame = refs[ref_index].frame
        refs, positions, orientation, derived = _ordered_slices(stack, refs, ref_source, not failed)

        colour = ref_source.is_colour
        shape, dtype, plan = _volume_layout(stack, refs, ref_source, ref_frame, plan)
        choice = decoder_choice(ref_source.transfer_syntax)
        shared = None
        if self.processes and choice.plugins and choice.processes and decode_pool.should_use(n):
            decode_pool.warm_up()  # a pool not yet running starts meanwhile; the first slice is decoded here
            shared = decode_pool.shared_array(shape, dtype)
        array = shared.array if shared is not None else _allocate(stack, shape, dtype)
        filling = prefault(array) if shared is None else None
        decoder = _SliceDecoder(refs, sources, array, colour, plan)
        try:
            if shared is not None:
                decoders_used = _decode_in_processes(
                    decoder, shared, stack, failed, progress, cancel, on_slice
                )
            else:
                threaded = self.workers > 1 and n > 1 and choice.threads
                decoders_used = _decode_all(
                    decoder, stack, self.workers, threaded, failed, progress, cancel, on_slice
                )
        finally:
            if filling is not None:
                filling.stop()
            if shared is not None:
                shared.release()

        skipped = _skipped(refs, failed)
        array, keep = _drop_failed(stack, array, failed)
        kept = [refs[k] for k in keep]
        kept_positions = [positions[k] for k in keep]

        warnings: list[str] = []
        pixel_spacing = _pixel_spacing(kept, warnings)
        recheck = bool(failed) or derived
        geometry = build_geometry(
            kept_positions, orientation, pixel_spacing, _slice_thickness(kept), check=recheck
        )
        geo_warnings = _stack_warnings(stack, geometry, recheck)
        _slice_warnings(kept, skipped, warnings)
        return _assemble(
            self.name,
            stack,
            array,
            geometry,
            kept,
            ref_source,
            ref_frame,  # the parsed file's frame; ``refs`` may have been re-sorted since
            colour=colour,
            invert=ref_source.photometric == "MONOCHROME1",
            warnings=geo_warnings + warnings,
            skipped=skipped,
            decoders=tuple(sorted(decoders_used)),
        )


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray:
    return normal_from_orientation(orientation) if orientation is not None else np.array([0.0, 0.0, 1.0])


def _skipped(refs: list[SliceRef], failed: dict[int, str]) -> list[tuple[str, str]]:
    """One entry per damaged file (a multi-frame file lists its failed frames once)."""
    by_path: dict[str, list[tuple[int, str]]] = {}
    for k in sorted(failed):
        by_path.setdefault(refs[k].header.path, []).append((refs[k].frame, failed[k]))
    frames = {r.header.path: r.header.number_of_frames for r in refs}
    out = []
    for path, items in by_path.items():
        why = items[0][1]
        if frames[path] > 1:
            why = f"{len(items)} of its {frames[path]} frames skipped: {why}"
        out.append((path, why))
    return out


def _stack_warnings(stack: Stack, geometry: VolumeGeometry, rechecked: bool) -> list[str]:
    """The stack's geometry warnings, or the recomputed ones when slices were dropped or positions derived."""
    if not rechecked:
        return [w.message for w in stack.warnings]
    kept: list[GeometryWarning] = [w for w in stack.warnings if w.kind == "no_geometry"]
    return [w.message for w in kept + geometry.warnings]


# ---------------------------------------------------------------------------------------------------------------
# SimpleITK reader
# ---------------------------------------------------------------------------------------------------------------


SITK_KEPT_TYPES = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32))


class SimpleITKReader:
    """``sitk.ImageSeriesReader`` fed with our file order; geometry taken from SimpleITK's own image.

    It reads whole files, so a stack made of some frames of a multi-frame file is refused. It is the baseline of
    the load benchmark and the second opinion in the reader-agreement test.
    """

    name = "simpleitk"

    def read(
        self,
        stack: Stack,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        on_slice: SliceFn | None = None,
    ) -> Volume:
        """Load ``stack`` with SimpleITK (``ImageFileReader`` for one file); arguments as in :func:`load_stack`.

        Raises
        ------
        ViewerError
            For a stack that is not made of whole files (some frames of a multi-frame file), or when
            SimpleITK cannot read it.
        """
        import SimpleITK as sitk

        refs = list(stack.slices)
        files = stack.files
        multi = any(r.header.number_of_frames > 1 for r in refs)
        if multi and (
            len(files) != 1 or [r.frame for r in refs] != list(range(refs[0].header.number_of_frames))
        ):
            raise ViewerError(
                "Could not load " + stack_name(stack) + " with SimpleITK",
                "SimpleITK reads whole files: this stack is part of a multi-frame file or in another frame order",
            )
        if not multi and len(refs) != len(files):
            raise ViewerError(
                "Could not load " + stack_name(stack) + " with SimpleITK", "frames and files differ"
            )

        h = refs[0].header
        voxels = len(refs) * h.rows * h.columns
        refuse_if_too_large(stack_name(stack), voxels * (3 if h.is_colour else 4))

        # One file (a multi-frame object or a single image) goes to ImageFileReader: the series reader would stack
        # a multi-frame file into a 4D image.
        reader = sitk.ImageFileReader() if len(files) == 1 else sitk.ImageSeriesReader()
        if len(files) == 1:
            reader.SetFileName(files[0])
        else:
            reader.SetFileNames(files)
        total = len(files)

        def on_progress() -> None:
            if cancel is not None and cancel():
                reader.Abort()
            elif progress is not None:
                done = int(round(reader.GetProgress() * total))
                progress(done, total, f"{stack.label}: SimpleITK {done} of {total}")

        reader.AddCommand(sitk.sitkProgressEvent, on_progress)
        try:
            # ITK's warnings and GDCM's messages go to the debug log, not the process's stderr; this holds the
            # capture for the whole series (SimpleITK decodes it in one call).
            with native_stderr_captured("simpleitk", tuple(files)):
                image = reader.Execute()
        except RuntimeError as exc:
            if cancel is not None and cancel():
                raise CancelledError() from None
            raise ViewerError(
                "Could not load " + stack_name(stack) + " with SimpleITK", str(exc).strip().splitlines()[-1]
            ) from None
        finally:
            reader.RemoveAllCommands()
        if cancel is not None and cancel():
            raise CancelledError()

        colour = image.GetNumberOfComponentsPerPixel() > 1
        view = sitk.GetArrayViewFromImage(image)
        if view.ndim == 2 or (colour and view.ndim == 3):
            view = view[None]
        if colour:
            array = np.array(view[..., :3], dtype=np.uint8)  # a copy: the view dies with the image
        elif view.dtype in SITK_KEPT_TYPES:
            array = np.array(view)  # SimpleITK's own integer type for the rescaled values, as ours keeps one
        else:
            array = np.array(view, dtype=np.float32)
        del view
        origin = np.asarray(image.GetOrigin(), float)
        sx, sy, sz = (float(v) for v in image.GetSpacing())
        direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
        del image
        row, col, slice_dir = direction[:, 0], direction[:, 1], direction[:, 2]
        n = array.shape[0]
        positions = origin[None, :] + np.arange(n)[:, None] * (slice_dir * sz)[None, :]
        orientation = tuple(float(v) for v in (*row, *col))
        geometry = build_geometry(list(positions), orientation, (sy, sx), _slice_thickness(refs), check=False)

        source: SourceFile | None
        try:
            source = SourceFile(files[0], refs[0].header.transfer_syntax_uid, refs[0].header)
        except DecodeError:
            source = None
        for k in range(n):
            if on_slice is not None:
                on_slice(k, array[k])
        if progress is not None:
            progress(total, total, f"{stack.label}: loaded")
        return _assemble(
            self.name,
            stack,
            array,
            geometry,
            refs,
            source,
            0,
            colour=colour,
            invert=refs[0].header.photometric_interpretation == "MONOCHROME1",
            warnings=[w.message for w in stack.warnings],
            skipped=[],
            decoders=("simpleitk",),
        )


def _assemble(
    reader: str,
    stack: Stack,
    array: np.ndarray,
    geometry: VolumeGeometry,
    refs: list[SliceRef],
    source: SourceFile | None,
    frame: int,
    *,
    colour: bool,
    invert: bool,
    warnings: list[str],
    skipped: list[tuple[str, str]],
    decoders: tuple[str, ...],
) -> Volume:
    """The one place both readers turn decoded pixels and geometry into a :class:`Volume`."""
    h = refs[0].header
    return Volume(
        array=array,
        spacing=geometry.spacing,
        origin=geometry.origin,
        orientation=geometry.orientation,
        positions=geometry.positions,
        affine=geometry.affine,
        stack_uid=stack.uid,
        series_uid=stack.series_uid,
        study_uid=h.study_instance_uid,
        sop_uids=[r.header.sop_instance_uid for r in refs],
        modality=h.modality,
        units="" if colour else _units(h.modality, source, frame),
        window=_window(source, frame, h, array, colour),
        invert=invert and not colour,
        is_colour=colour,
        slice_thickness=_slice_thickness(refs),
        identifiers=_identifiers(h, source),
        warnings=warnings,
        skipped=skipped,
        sources=[(r.header.path, r.frame) for r in refs],
        reader=reader,
        decoders=decoders,
    )


def load_stack(
    stack: Stack,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    on_slice: SliceFn | None = None,
    reader: str = "auto",
    workers: int | None = None,
) -> Volume:
    """Load one stack into a :class:`Volume`.

    Parameters
    ----------
    stack:
        From :func:`viewer.dicom.stacks.split_series` (slices already in display order).
    progress:
        ``progress(done, total, text)`` after each slice.
    cancel:
        Checked between slices; when it returns True the load stops with :class:`~viewer.errors.CancelledError`.
    on_slice:
        ``on_slice(k, slice_array)`` as each slice is ready, in display order, so a viewer can show the first
        slices at once. ``slice_array`` is a view into the volume being filled: copy it to keep it. ``k`` is the
        index in ``stack.slices``; if a damaged slice is skipped, the final volume has fewer slices.
    reader:
        ``"auto"`` or ``"pydicom"`` (ours: decoder chosen per transfer syntax, direct reads, one preallocated
        array) or ``"simpleitk"`` (``ImageSeriesReader`` on the same file order).
    workers:
        Threads for decoders that release the GIL (default: up to 4).

    Raises
    ------
    ViewerError
        When no slice of the stack can be loaded, naming the series and why; or when the stack has more
        slices than :func:`max_stack_slices`, before anything is read.
    CancelledError
        When ``cancel()`` returned True.
    """
    limit = max_stack_slices()
    if stack.n_slices > limit:
        raise ViewerError(
            "Could not load " + stack_name(stack),
            f"it has {stack.n_slices} slices, more than the {limit} a stack may have ({MAX_STACK_SLICES_ENV})",
        )
    name = "pydicom" if reader == "auto" else reader
    with _warnings_to_debug_log():
        return get_reader(name, workers=workers).read(
            stack, progress=progress, cancel=cancel, on_slice=on_slice
        )


# -- warnings while loading ----------------------------------------------------------------------------------

_WITHHELD = "text withheld: it may quote header values"
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved: tuple[warnings.catch_warnings, bool] | None = None


def _show_in_debug_log(message: Any, category: type[Warning], filename: str, lineno: int, *_: Any) -> None:
    log.debug("load: %s from %s:%d (%s)", category.__name__, os.path.basename(filename), lineno, _WITHHELD)


class _PydicomToDebugLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log.debug(
            "load: pydicom %s from %s:%d (%s)", record.levelname, record.module, record.lineno, _WITHHELD
        )


_pydicom_handler = _PydicomToDebugLog()


@contextmanager
def _warnings_to_debug_log() -> Iterator[None]:
    """While a load runs, warnings (pydicom's, decoders') and pydicom's log records go to this module's debug
    log as their kind and origin only, never to stderr and never with their text, which may quote header values
    (patient data). Process-wide while any load runs, as any warnings filter is; loads may overlap."""
    global _quiet_depth, _saved
    pydicom_log = logging.getLogger("pydicom")
    with _quiet_lock:
        if _quiet_depth == 0:
            catcher = warnings.catch_warnings()
            catcher.__enter__()  # left by the last load to finish, which may not be this one
            _saved = (catcher, pydicom_log.propagate)
            warnings.simplefilter("always")
            warnings.showwarning = _show_in_debug_log
            pydicom_log.addHandler(_pydicom_handler)
            pydicom_log.propagate = False
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved is not None:
                catcher, propagate = _saved
                catcher.__exit__(None, None, None)
                pydicom_log.removeHandler(_pydicom_handler)
                pydicom_log.propagate = propagate
                _saved = None
