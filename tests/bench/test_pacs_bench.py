"""The PACS benchmark runs end to end on a tiny series (Orthanc in its own namespace), or says why it cannot."""

from __future__ import annotations

import pytest

from viewer.bench import pacs as bench


@pytest.mark.pacs
def test_pacs_bench_times_every_operation_against_the_baseline():
    why = bench.unavailable()
    if why:
        assert bench.run_pacs_benchmark(n_slices=3, matrix=32, repeats=1) == {"skipped": why}
        pytest.skip(f"no test PACS: {why}")
    result = bench.run_pacs_benchmark(n_slices=3, matrix=32, repeats=1)
    print(result)
    assert result["data"] == {"instances": 3, "matrix": 32, "megabytes": pytest.approx(0.0, abs=0.1)}
    for name in ("c_store", "c_find", "c_get", "wado_rs"):
        assert result[name]["ours_s"] > 0 and result[name]["goal"].startswith("not judged")
    if bench.dcmtk_missing():
        assert result["baseline"].startswith("skipped: dcmtk")
    else:
        for name in ("c_store", "c_get"):
            assert result[name]["dcmtk_s"] > 0 and result[name]["ratio"] > 0
