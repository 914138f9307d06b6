"""CPU threads per analysis: the cores other programs leave free, never fewer than one."""

from __future__ import annotations

from pathlib import Path

import torch

from viewer.model.device import _runnable_elsewhere, cpu_threads_for_now, use_cpu_threads


def test_threads_are_the_cores_left_free() -> None:
    assert cpu_threads_for_now(cores=2, busy=0) == 2
    assert cpu_threads_for_now(cores=2, busy=1) == 1
    assert cpu_threads_for_now(cores=2, busy=2) == 1  # never zero: the analysis still has to run
    assert cpu_threads_for_now(cores=8, busy=3) == 5
    assert cpu_threads_for_now() >= 1


def test_runnable_threads_come_from_proc_stat_without_the_caller(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4\nctxt 5\nprocs_running 3\nprocs_blocked 0\n")
    assert _runnable_elsewhere(samples=2, stat=stat) == 2
    stat.write_text("cpu  1 2 3 4\n")
    assert _runnable_elsewhere(samples=1, stat=stat) is None
    assert _runnable_elsewhere(samples=1, stat=tmp_path / "absent") is None


def test_use_cpu_threads_sets_torch_and_says_how_many() -> None:
    before = torch.get_num_threads()
    try:
        assert use_cpu_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_device_name_counts_threads_in_words() -> None:
    from viewer.model.device import describe_device

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu")) == "CPU (1 thread)"
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "CPU (2 threads)"
    finally:
        torch.set_num_threads(before)
