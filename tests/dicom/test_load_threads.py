"""Uncompressed series read on several threads, and the thread that maps a new volume's pages ahead of the read:
the same volume as one thread reads, damaged slices skipped alike, slices handed over in display order, cancel
honoured, and no thread left behind."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from viewer.dicom import prefault as prefault_module
from viewer.dicom.index import scan
from viewer.dicom.prefault import prefault
from viewer.dicom.readers import PydicomReader
from viewer.errors import CancelledError
from viewer.synth.simple import write_bench_series


def _stack(folder: Path, n: int = 24, matrix: int = 64):
    paths = write_bench_series(folder, n, matrix)
    return paths, next(scan([str(folder)], workers=1).stacks())


def _load_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("load-")]


def test_threads_give_the_volume_one_thread_gives(tmp_path: Path) -> None:
    paths, stack = _stack(tmp_path / "s")
    paths[5].write_bytes(paths[5].read_bytes()[:-100])  # truncated after indexing: that slice fails alike
    one = PydicomReader(workers=1, processes=False).read(stack)
    seen: list[int] = []
    three = PydicomReader(workers=3, processes=False).read(stack, on_slice=lambda k, _image: seen.append(k))
    assert seen == [k for k in range(stack.n_slices) if k != 5]  # display order, on the caller's thread
    assert three.array.dtype == one.array.dtype and np.array_equal(three.array, one.array)
    assert three.skipped == one.skipped and len(one.skipped) == 1
    assert not _load_threads()


def test_cancel_stops_the_threads(tmp_path: Path) -> None:
    _, stack = _stack(tmp_path / "s")
    seen: list[int] = []
    with pytest.raises(CancelledError):
        PydicomReader(workers=2, processes=False).read(
            stack, on_slice=lambda k, _image: seen.append(k), cancel=lambda: len(seen) >= 3
        )
    assert len(seen) == 3 and not _load_threads()


def test_a_slice_out_of_the_integer_range_reloads_as_float_on_threads(tmp_path: Path) -> None:
    """A slice whose rescale leaves int16 raises the plan's fallback on a worker thread; the caller's thread
    loads the stack again as float32, as on one thread."""
    import pydicom

    paths, stack = _stack(tmp_path / "s", n=8)
    ds = pydicom.dcmread(paths[6])
    ds.RescaleIntercept = 40000
    ds.save_as(paths[6])
    stack = next(scan([str(tmp_path / "s")], workers=1).stacks())
    one = PydicomReader(workers=1, processes=False).read(stack)
    two = PydicomReader(workers=2, processes=False).read(stack)
    assert one.array.dtype == two.array.dtype == np.float32
    assert np.array_equal(one.array, two.array)


def test_prefault_keeps_what_is_written_before_and_during_it() -> None:
    """Mapping pages never changes their contents: a page written before the thread reaches it, and pages
    written while it runs, keep their values."""
    volume = np.empty((96, 512, 512), np.int16)  # 48 MiB, above MIN_BYTES
    volume[0] = 7  # written before the thread starts
    filling = prefault(volume)
    if filling is None:
        pytest.skip("pages are not mapped ahead on this machine (not Linux, or one core)")
    for k in range(1, 96):
        volume[k] = k
    filling.stop()
    assert (volume[0] == 7).all()
    assert all((volume[k] == k).all() for k in range(1, 96))


def test_prefault_maps_the_whole_array() -> None:
    """Left to run, the thread maps every page: the process's resident memory grows by the array's size before
    anything is written to it."""
    psutil = pytest.importorskip("psutil")
    volume = np.empty((96, 512, 512), np.int16)
    before = psutil.Process().memory_info().rss
    filling = prefault(volume)
    if filling is None:
        pytest.skip("pages are not mapped ahead on this machine (not Linux, or one core)")
    filling._thread.join()
    if prefault_module._supported is False:
        pytest.skip("this kernel does not know MADV_POPULATE_WRITE (Linux < 5.14)")
    assert psutil.Process().memory_info().rss - before > 0.9 * volume.nbytes


def test_no_prefault_for_small_arrays() -> None:
    assert prefault(np.empty((4, 64, 64), np.int16)) is None
