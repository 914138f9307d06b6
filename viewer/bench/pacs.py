"""Benchmark of the PACS client against a real archive: Orthanc in a private network namespace (as the PACS tests
run it), a synthetic CT series (100 × 512² by default), and dcmtk's ``storescu``/``getscu`` as the baseline on
the same data in the same run.

Measured, each the median of ``repeats`` runs: C-STORE of the series (ours: read the files and
:func:`viewer.pacs.send.c_store`; dcmtk: ``storescu``), a STUDY-level C-FIND (ours), C-GET of the series into a
fresh private store, indexed as it arrives (ours: :func:`viewer.pacs.dimse.get`; dcmtk: ``getscu`` into a folder)
and WADO-RS of it (ours). Both sides set TCP_NODELAY (ours in :mod:`viewer.pacs.dimse`, dcmtk through its
``TCP_NODELAY=1`` variable), as Orthanc does here. The study is deleted from Orthanc before every C-STORE, so
each run stores anew. The issue's goals (2 cores, loopback) are printed as met or missed.

Library code: it returns numbers and prints nothing. Skipped, saying why, without Orthanc, root (for the
namespace) or, for the baselines only, dcmtk.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from viewer.dicom.cache import CACHE_DIR_ENV

#: The issue's goals, in seconds.
GOALS_S = {"c_store": 2.0, "c_get": 3.0, "c_find": 0.5, "wado_rs": 5.0}
DCMTK = ("storescu", "getscu")


def unavailable() -> str | None:
    """Why the suite cannot run here, or None."""
    from viewer.pacs import netns, testserver

    return netns.unavailable() or testserver.unavailable()


def dcmtk_missing() -> str | None:
    """Why the dcmtk baselines cannot run here, or None."""
    missing = [tool for tool in DCMTK if shutil.which(tool) is None]
    return f"dcmtk's {', '.join(missing)} not installed (apt-get install dcmtk)" if missing else None


def _median_s(fn: Callable[[], Any], repeats: int, before: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def _write_series(folder: Path, n_slices: int, matrix: int) -> tuple[list[Path], str, str]:
    """A CT series with noise in every pixel (nothing a transfer could shortcut); (files, study, series UID)."""
    from viewer.synth.writer import SeriesMeta, axial_geometry, write_ct_series

    rng = np.random.default_rng(0)
    hu = rng.normal(40.0, 30.0, (n_slices, matrix, matrix)).astype(np.float32)
    meta = SeriesMeta.invented("Bench^Pacs", "BENCH-PACS", "Axial", series_number=1, study_date="20240101")
    positions, orientation = axial_geometry(n_slices, 1.0, (0.5, 0.5), matrix)
    files = write_ct_series(
        hu,
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(0.5, 0.5),
        slice_thickness=1.0,
        meta=meta,
    )
    return files, meta.study_uid, meta.series_uid


def _run(cmd: list[str], what: str) -> None:
    env = dict(os.environ, TCP_NODELAY="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-800:]}")


def _ratio(ours: float, baseline: float | None) -> float | None:
    return round(ours / baseline, 2) if baseline else None


def _goal(name: str, seconds: float, judged: bool) -> str:
    goal = GOALS_S[name]
    if not judged:
        return f"not judged (≤ {goal:g} s is for 100 × 512²)"
    return f"{'met' if seconds <= goal else 'missed'} (≤ {goal:g} s)"


def run_pacs_benchmark(n_slices: int = 100, matrix: int = 512, repeats: int = 3) -> dict[str, Any]:
    """Start Orthanc in a private namespace, time each operation ``repeats`` times, stop it.

    Returns
    -------
    dict
        ``data`` (what was moved), then per operation ``ours_s`` and, where there is one, ``dcmtk_s`` and
        ``ratio`` (ours / dcmtk), and ``goal``; or ``skipped`` with the reason.
    """
    why = unavailable()
    if why:
        return {"skipped": why}
    import pydicom

    from viewer.pacs import dimse, netns, send, testserver, web
    from viewer.pacs.nodes import Node
    from viewer.pacs.query import StudyQuery
    from viewer.pacs.store import LocalStore

    baseline_missing = dcmtk_missing()
    base = Path(tempfile.mkdtemp(prefix="gru-viewer-bench-pacs-"))
    previous_cache = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(base / "cache")  # the header index of the retrieves: private, thrown away
    try:
        files, study_uid, series_uid = _write_series(base / "series", n_slices, matrix)
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        ns = netns.enter()
        try:
            server = testserver.start(base / "orthanc")
            try:
                node = Node(
                    "bench",
                    ae_title=testserver.AET,
                    host="127.0.0.1",
                    port=testserver.DICOM_PORT,
                    calling_ae=testserver.OUR_AET,
                    web_url=server.web_url,
                    auth="basic",
                    username=testserver.USER,
                ).validated()
                scu = [
                    "-aet",
                    testserver.OUR_AET,
                    "-aec",
                    testserver.AET,
                    "127.0.0.1",
                    str(testserver.DICOM_PORT),
                ]

                def forget() -> None:
                    try:
                        server.rest(f"/studies/{server.lookup(study_uid)}", "DELETE")
                    except KeyError:
                        pass

                def store_ours() -> None:
                    sent = send.c_store(node, [pydicom.dcmread(p) for p in files])
                    if not sent.ok or len(sent.stored) != len(files):
                        raise RuntimeError(f"C-STORE: {sent.summary()}")

                result: dict[str, Any] = {
                    "data": {"instances": len(files), "matrix": matrix, "megabytes": round(size_mb, 1)},
                    "repeats": repeats,
                }
                ours = _median_s(store_ours, repeats, before=forget)
                dcmtk = None
                if not baseline_missing:
                    dcmtk = _median_s(
                        lambda: _run(["storescu", *scu, *map(str, files)], "storescu"), repeats, before=forget
                    )
                result["c_store"] = {"ours_s": ours, "dcmtk_s": dcmtk, "ratio": _ratio(ours, dcmtk)}

                def find() -> None:
                    rows = dimse.find_studies(node, StudyQuery(), 500).rows
                    if not any(r.study_uid == study_uid for r in rows):
                        raise RuntimeError("C-FIND did not find the study")

                result["c_find"] = {"ours_s": _median_s(find, repeats)}

                runs = iter(range(10 * repeats))

                def get_ours() -> None:
                    got = dimse.get(node, LocalStore(base / f"store-{next(runs)}"), study_uid, series_uid)
                    if not got.ok or len(got.files) != len(files):
                        raise RuntimeError(f"C-GET: {got.summary()}")

                def get_dcmtk() -> None:
                    out = base / f"getscu-{next(runs)}"
                    out.mkdir()
                    keys = ["-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study_uid}"]
                    keys += ["-k", f"SeriesInstanceUID={series_uid}"]
                    _run(["getscu", "-S", *keys, "-od", str(out), *scu], "getscu")
                    if len(list(out.iterdir())) != len(files):
                        raise RuntimeError("getscu did not fetch every instance")

                ours = _median_s(get_ours, repeats)
                dcmtk = None if baseline_missing else _median_s(get_dcmtk, repeats)
                result["c_get"] = {"ours_s": ours, "dcmtk_s": dcmtk, "ratio": _ratio(ours, dcmtk)}

                def wado() -> None:
                    got = web.retrieve(
                        node,
                        testserver.PASSWORD,
                        LocalStore(base / f"wado-{next(runs)}"),
                        study_uid,
                        series_uid,
                    )
                    if not got.ok or len(got.files) != len(files):
                        raise RuntimeError(f"WADO-RS: {got.summary()}")

                result["wado_rs"] = {"ours_s": _median_s(wado, repeats)}
            finally:
                server.stop()
        finally:
            ns.leave()
        for name in GOALS_S:
            result[name]["goal"] = _goal(name, result[name]["ours_s"], (n_slices, matrix) == (100, 512))
        if baseline_missing:
            result["baseline"] = f"skipped: {baseline_missing}"
        return result
    finally:
        if previous_cache is None:
            os.environ.pop(CACHE_DIR_ENV, None)
        else:
            os.environ[CACHE_DIR_ENV] = previous_cache
        shutil.rmtree(base, ignore_errors=True)
