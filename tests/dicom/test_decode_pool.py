"""Compressed series decoded in worker processes into shared memory: the same volume as on one thread, damaged
slices skipped alike, a dead worker survived, cancel honoured, and nothing left in /dev/shm."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from viewer.dicom import decode_pool
from viewer.dicom.index import scan
from viewer.dicom.readers import PydicomReader
from viewer.errors import CancelledError
from viewer.synth.simple import write_bench_series

pytestmark = pytest.mark.skipif(decode_pool.unavailable() is not None, reason=str(decode_pool.unavailable()))


@pytest.fixture(scope="module", autouse=True)
def _pool():
    """One pool for the module, stopped after it: other tests keep decoding in their own process (their
    monkeypatched decoders would not reach a worker)."""
    decode_pool.pool()
    yield
    decode_pool.shutdown()


def _ours() -> list[Path]:
    return sorted(decode_pool.SHM_DIR.glob(f"{decode_pool._PREFIX}{os.getpid()}-*"))


def _stack(folder: Path, syntax: str, n: int = 12, matrix: int = 96):
    write_bench_series(folder, n, matrix, syntax)
    return next(scan([str(folder)], workers=1).stacks())


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=["rle", "jpegls", "j2k"]
)
def test_processes_give_the_volume_one_thread_gives(tmp_path: Path, syntax: str) -> None:
    stack = _stack(tmp_path / "s", syntax)
    seen: list[int] = []
    here = PydicomReader(processes=False).read(stack)
    there = PydicomReader().read(stack, on_slice=lambda k, _image: seen.append(k))
    assert decode_pool.is_warm() and decode_pool.should_use(stack.n_slices)
    assert seen == list(range(stack.n_slices))  # display order, on the caller's thread
    assert there.array.dtype == here.array.dtype and np.array_equal(there.array, here.array)
    assert there.decoders == here.decoders
    assert np.allclose(np.asarray(there.positions), np.asarray(here.positions))
    assert not _ours()  # the shared file is unlinked when the load ends; the memory lives with the array


def test_a_damaged_slice_is_skipped_with_its_reason(tmp_path: Path) -> None:
    paths = write_bench_series(tmp_path / "s", 12, 96, RLELossless)
    ds = pydicom.dcmread(paths[5])
    ds.PixelData = encapsulate(
        [b"\x07" * 64 + b"\xff" * 1000]
    )  # an RLE header naming 7 segments past the end
    ds.save_as(paths[5])
    stack = next(scan([str(tmp_path / "s")], workers=1).stacks())
    here = PydicomReader(processes=False).read(stack)
    there = PydicomReader().read(stack)
    assert there.n_slices == here.n_slices == 11
    # The reasons are the decoder's words; pytest turns pydicom's warnings into errors in this process only.
    assert [p for p, _ in there.skipped] == [str(paths[5])] == [p for p, _ in here.skipped]
    assert there.skipped[0][1]
    assert np.array_equal(there.array, here.array)


def test_a_worker_that_dies_costs_only_speed(tmp_path: Path) -> None:
    stack = _stack(tmp_path / "s", JPEGLSLossless, n=20)
    here = PydicomReader(processes=False).read(stack)
    executor = decode_pool.pool()

    def kill_workers(k: int, _image: np.ndarray) -> None:
        if k == 0:  # as a native decoder aborting would: the process is gone, mid-series
            for pid in list(executor._processes):
                os.kill(pid, signal.SIGKILL)

    there = PydicomReader().read(stack, on_slice=kill_workers)
    assert np.array_equal(there.array, here.array) and not there.skipped
    assert decode_pool.pool() is not executor  # a new pool for the next load
    again = PydicomReader().read(stack)
    assert np.array_equal(again.array, here.array)
    assert not _ours()


def test_cancel_stops_the_load_and_leaves_nothing(tmp_path: Path) -> None:
    stack = _stack(tmp_path / "s", RLELossless, n=30)
    seen: list[int] = []
    with pytest.raises(CancelledError):
        PydicomReader().read(stack, on_slice=lambda k, _i: seen.append(k), cancel=lambda: len(seen) >= 2)
    assert len(seen) == 2
    assert not _ours()


def test_without_room_in_dev_shm_the_load_stays_in_process(tmp_path: Path, monkeypatch) -> None:
    stack = _stack(tmp_path / "s", RLELossless)

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(decode_pool.os, "statvfs", lambda _path: Full())
    assert decode_pool.shared_array((12, 96, 96), np.dtype(np.int16)) is None
    volume = PydicomReader().read(stack)
    assert volume.array.flags.owndata  # an ordinary array, decoded here
    assert np.array_equal(volume.array, PydicomReader(processes=False).read(stack).array)


def test_short_series_do_not_start_a_pool_and_the_environment_turns_it_off(monkeypatch) -> None:
    monkeypatch.setattr(decode_pool, "_pool", None)
    assert not decode_pool.should_use(decode_pool.MIN_SLICES_COLD - 1)
    assert decode_pool.should_use(decode_pool.MIN_SLICES_COLD)
    monkeypatch.setenv(decode_pool.ENV, "0")
    assert "GRU_VIEWER_DECODE_PROCESSES=0" in str(decode_pool.unavailable())
    assert not decode_pool.should_use(1000)


def test_files_left_by_a_dead_viewer_are_removed() -> None:
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    stale = decode_pool.SHM_DIR / f"{decode_pool._PREFIX}{dead}-0123456789ab"
    mine = decode_pool.SHM_DIR / f"{decode_pool._PREFIX}{os.getpid()}-0123456789ab"
    stale.write_bytes(b"x")
    mine.write_bytes(b"x")
    try:
        assert decode_pool.remove_stale() >= 1
        assert not stale.exists() and mine.exists()
    finally:
        stale.unlink(missing_ok=True)
        mine.unlink(missing_ok=True)


def test_chunks_put_the_first_slice_alone() -> None:
    assert decode_pool.chunks([]) == []
    assert decode_pool.chunks(range(10)) == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


def test_workers_that_cannot_start_leave_decoding_here(tmp_path: Path, monkeypatch) -> None:
    stack = _stack(tmp_path / "s", RLELossless)

    def cannot_start():
        raise OSError("fork server refused")

    monkeypatch.setattr(decode_pool, "_pool", None)
    monkeypatch.setattr(decode_pool, "_start_failed", "")
    monkeypatch.setattr(decode_pool, "pool", cannot_start)
    monkeypatch.setattr(decode_pool, "MIN_SLICES_COLD", 2)
    volume = PydicomReader().read(stack)
    assert not volume.skipped
    assert np.array_equal(volume.array, PydicomReader(processes=False).read(stack).array)
    assert "fork server refused" in decode_pool._start_failed
    assert not decode_pool.should_use(1000)  # not tried again on every load


def test_closing_waits_for_a_warm_up_and_forbids_a_later_one(monkeypatch) -> None:
    decode_pool.shutdown()
    monkeypatch.setattr(decode_pool, "_start_failed", "")
    decode_pool.warm_up()  # a warm-up under way when the viewer quits
    decode_pool.close()
    try:
        assert not decode_pool.is_warm()
        decode_pool.warm_up()
        assert not decode_pool.is_warm()
        assert decode_pool.running_pool() is None and not decode_pool.should_use(1000)
    finally:
        decode_pool._closed = False  # not monkeypatch: its teardown would put back the True close() set


def test_a_cold_pool_does_not_hold_back_the_first_image(tmp_path: Path) -> None:
    """With no pool running, the first slice is decoded in this process while the workers start, and the
    rest goes to them once they are up: the same volume, slices still in display order."""
    stack = _stack(tmp_path / "s", JPEG2000Lossless, n=decode_pool.MIN_SLICES_COLD)
    here = PydicomReader(processes=False).read(stack)
    decode_pool.shutdown()
    warm_at: list[bool] = []
    there = PydicomReader().read(stack, on_slice=lambda k, _image: warm_at.append(decode_pool.is_warm()))
    assert warm_at[0] is False  # shown before any worker was up
    assert warm_at[-1] is True and decode_pool.is_warm()  # the rest decoded by the workers
    assert len(warm_at) == stack.n_slices and np.array_equal(there.array, here.array)
    assert not _ours()


def test_workers_that_cannot_start_leave_the_whole_load_here(tmp_path: Path, monkeypatch) -> None:
    stack = _stack(tmp_path / "s", RLELossless, n=decode_pool.MIN_SLICES_COLD)
    decode_pool.shutdown()

    def cannot_start() -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(decode_pool, "pool", cannot_start)
    monkeypatch.setattr(decode_pool, "_start_failed", None)
    seen: list[int] = []
    volume = PydicomReader().read(stack, on_slice=lambda k, _image: seen.append(k))
    assert seen == list(range(stack.n_slices))
    assert np.array_equal(volume.array, PydicomReader(processes=False).read(stack).array)
    assert decode_pool._start_failed is not None and not _ours()


def test_a_syntax_faster_here_than_handed_over_stays_in_this_process(tmp_path: Path) -> None:
    """JPEG baseline frames decode in about 0.5 ms: even with the workers up the series is decoded here."""
    from pydicom.uid import JPEGBaseline8Bit

    from viewer.synth.codec_series import write_codec_series

    series = write_codec_series(tmp_path / "s", decode_pool.MIN_SLICES_COLD, 64, JPEGBaseline8Bit)
    stack = next(scan([str(series.paths[0].parent)], workers=1).stacks())
    decode_pool.pool()
    volume = PydicomReader().read(stack)
    assert volume.array.flags.owndata and not volume.skipped  # an ordinary array: decoded in this process
    assert not _ours()


_VIEWER = """
import sys, time
from viewer.dicom import decode_pool
if __name__ == "__main__":
    executor = decode_pool.pool()
    pids = {executor.submit(decode_pool._ready).result() for _ in range(8)}
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(120)
"""


def test_the_workers_and_their_fork_server_end_with_a_viewer_killed_outright(tmp_path: Path) -> None:
    """SIGKILL (or a crash) runs no cleanup: the workers watch the viewer's process and end with it, and the fork
    server, which stays while any worker lives, ends after them. Before, both stayed for good."""
    import subprocess
    import sys

    import psutil

    script = tmp_path / "viewer_like.py"
    script.write_text(_VIEWER)
    viewer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [psutil.Process(int(p)) for p in viewer.stdout.readline().split()]
        assert workers
        server = psutil.Process(workers[0].ppid())
        assert "forkserver" in " ".join(server.cmdline())
    finally:
        viewer.kill()
        viewer.wait()
        viewer.stdout.close()
    gone, alive = psutil.wait_procs([*workers, server], timeout=20)
    assert not alive, f"still running: {[p.pid for p in alive]}"
