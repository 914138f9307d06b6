"""Phantom datasets on disk: studies written as real DICOM series with their ground truth beside them.

:func:`write_phantom_dataset` is what ``gru-viewer demo-data`` runs; :func:`dataset_study` makes one of its
studies in memory only. Each study is drawn by :func:`viewer.synth.study.generate_study`, given an invented
patient, and written with :mod:`viewer.synth.writer`; ``labels.json`` and the masks are
:mod:`viewer.synth.labels`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from viewer.errors import CancelledError, ViewerError
from viewer.synth.labels import PhantomManifest, StudyLabels, write_labels
from viewer.synth.other import generate_other_study
from viewer.synth.study import FAMILIES, PhantomStudy, generate_study
from viewer.synth.writer import (
    SeriesMeta,
    axial_geometry,
    series_folder_name,
    sop_instance_uid,
    write_ct_series,
)

_FIRST_NAMES = (
    "ALICE", "BORIS", "CLARA", "DMITRI", "EDITH", "FELIX", "GRETA", "HUGO", "INES", "JONAS", "KAREN", "LEON",
    "MARTA", "NIKO", "OLGA", "PAVEL", "QUINN", "ROSA", "SVEN", "TILDA", "ULRIK", "VERA", "WILMA", "XAVIER",
    "YARA", "ZENO", "AMIR", "BEATA", "CYRIL", "DAGNY", "EMIL", "FRIDA", "GUNNAR", "HEDDA", "IVAN", "JUNO",
)  # fmt: skip


# Each family's study generator: generate(rng, matrix=..., bleed=..., clear=...) -> PhantomStudy.
_GENERATORS: dict[str, Callable[..., PhantomStudy]] = {
    **{f: partial(generate_study, family=f) for f in FAMILIES},
    "other": generate_other_study,
}
PHANTOM_FAMILIES = tuple(_GENERATORS)


def _study_uid(seed: int, index: int, what: str, family: str = "classic") -> str:
    # The classic family's UIDs stay what they always were; another family's differ from them at every seed.
    tag = "gru-viewer-phantom" if family == "classic" else f"gru-viewer-phantom-{family}"
    return str(generate_uid(entropy_srcs=[tag, str(seed), str(index), what]))


def _meta(rng: np.random.Generator, seed: int, index: int, family: str = "classic") -> SeriesMeta:
    year = 2024
    birth_year = int(rng.integers(1935, 2004))
    study_day = np.datetime64(f"{year}-01-01") + np.timedelta64(int(rng.integers(0, 365)), "D")
    birth_day = np.datetime64(f"{birth_year}-01-01") + np.timedelta64(int(rng.integers(0, 365)), "D")
    age = int((study_day - birth_day).astype(int) // 365.25)
    seconds = int(rng.integers(7 * 3600, 22 * 3600))
    name = _FIRST_NAMES[int(rng.integers(len(_FIRST_NAMES)))]
    return SeriesMeta(
        patient_name=f"PHANTOM^{name}",
        patient_id=f"PH{seed:03d}-{index + 1:04d}",
        birth_date=str(birth_day).replace("-", ""),
        sex=str(rng.choice(["F", "M"])),
        patient_age=f"{age:03d}Y",
        study_uid=_study_uid(seed, index, "study", family),
        study_date=str(study_day).replace("-", ""),
        study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        study_description="CT HEAD WO CONTRAST",
        accession_number=f"PA{seed % 1000:03d}{index + 1:06d}",
        series_uid=_study_uid(seed, index, "series", family),
        series_number=2,
        series_description="HEAD 5mm AXIAL",
        frame_of_reference_uid=_study_uid(seed, index, "frame", family),
        kvp=float(rng.choice([100.0, 120.0])),
        tube_current_ma=int(rng.integers(200, 350)),
        image_comments="Synthetic phantom made by GRU Viewer - not a patient",
    )


def bleed_plan(seed: int, studies: int) -> list[bool]:
    """Balanced bleed flags: one of each pair has bleeds (order drawn from the seed); study 0 always does."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    flags: list[bool] = []
    for pair in range(0, studies, 2):
        first = True if pair == 0 else bool(rng.uniform() < 0.5)
        flags.extend([first, not first])
    return flags[:studies]


def _dataset_study(
    seq: np.random.SeedSequence,
    seed: int,
    index: int,
    bleed: bool,
    matrix: int,
    family: str,
    slice_mm: float | None = None,
) -> tuple[PhantomStudy, SeriesMeta]:
    rng = np.random.default_rng(seq)
    meta = _meta(rng, seed, index, family)
    fixed = {} if slice_mm is None else {"slice_mm": slice_mm}
    study = _GENERATORS[family](rng, matrix=matrix, bleed=bleed, clear=index == 0, **fixed)
    if family != "classic":
        meta = replace(meta, series_description=f"HEAD {study.spacing[0]:g}mm AXIAL")
    return study, meta


def _check_family(family: str, slice_mm: float | None = None) -> None:
    if family not in _GENERATORS:
        raise ValueError(f"family must be one of {', '.join(_GENERATORS)}")
    if slice_mm is not None and family == "classic":
        raise ValueError("the classic family is always 5 mm; slice_mm is for the wide and other families")


def dataset_study(
    seed: int, index: int, matrix: int = 512, family: str = "classic"
) -> tuple[PhantomStudy, SeriesMeta]:
    """Study ``index`` of the set ``write_phantom_dataset(seed=seed, matrix=matrix, family=family)`` writes, in
    memory only.

    ``dataset_study(0, 0)`` is the demo study ``make run`` opens.
    """
    if index < 0:
        raise ValueError("index must be at least 0")
    _check_family(family)
    seq = np.random.SeedSequence(seed).spawn(index + 1)[index]
    return _dataset_study(seq, seed, index, bleed_plan(seed, index + 1)[index], matrix, family)


def write_phantom_dataset(
    out: Path,
    *,
    studies: int = 1,
    seed: int = 0,
    matrix: int = 512,
    family: str = "classic",
    slice_mm: float | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    workers: int = 1,
) -> PhantomManifest:
    """Write ``studies`` phantom head CTs under ``out``, with ``labels.json`` and masks beside them.

    Layout: ``out/<PatientID>/<SeriesNumber>_<description>/IM0001.dcm …`` (one patient, study and axial series
    each; IM0001 is the most inferior slice), ``out/labels.json`` and ``out/masks/<SeriesInstanceUID>.npz``
    (``mask``: bool (z, y, x) ascending along the slice normal; ``sop_uids``: the slices' SOP Instance UIDs in
    the same order). Study ``i`` is the same whatever ``studies`` is; study 0 is the demo, a clearly visible
    bleed, and every pair of studies holds one with and one without bleeds. DICOM files left in a series
    folder by an earlier run are removed first so a series never mixes runs; nothing is written outside ``out``.

    Parameters
    ----------
    family:
        Which generator draws the studies (:data:`PHANTOM_FAMILIES`): ``classic`` (the default, 5 mm),
        ``wide`` (more bleed kinds, small and faint bleeds, slice thickness 0.625–10 mm and confounders;
        :func:`viewer.synth.study.generate_study`), ``other`` (an independently written generator with its
        own anatomy and rendering, for cross-generator validation; :mod:`viewer.synth.other`).
    slice_mm:
        Wide and other families: every study at this slice thickness instead of a drawn one (e.g. a thin-slice
        set for the robustness table's thickness rows).
    workers:
        Processes drawing and writing studies at once (each study depends only on the seed and its index, so
        the data set is the same for any number: a training set made on a 16-core machine in minutes).
    progress:
        Called as ``progress(done, total, text)`` before each study and once at the end.
    cancel:
        Checked before each study; when it returns True the studies finished so far are listed in
        ``labels.json`` and :class:`~viewer.errors.CancelledError` is raised.
    """
    if studies < 1:
        raise ValueError("studies must be at least 1")
    _check_family(family, slice_mm)
    root = Path(out).resolve()
    plan = bleed_plan(seed, studies)
    children = np.random.SeedSequence(seed).spawn(studies)
    done: list[StudyLabels] = []
    jobs = [(root, children[i], seed, i, plan[i], matrix, family, slice_mm) for i in range(studies)]
    pool = (
        ProcessPoolExecutor(min(workers, studies), mp_context=multiprocessing.get_context("spawn"))
        if workers > 1 and studies > 1
        else None
    )
    try:
        (root / "masks").mkdir(parents=True, exist_ok=True)
        made = pool.map(_make_study, jobs) if pool is not None else map(_make_study, jobs)
        for i in range(studies):
            if cancel is not None and cancel():
                write_labels(root, seed, matrix, done, family, slice_mm)
                raise CancelledError("Phantom generation cancelled")
            if progress is not None:
                progress(i, studies, f"Phantom study {i + 1}/{studies}")
            done.append(next(made))
        write_labels(root, seed, matrix, done, family, slice_mm)
    except OSError as err:
        raise ViewerError(
            "Cannot write the phantom dataset", str(err.strerror or err), str(err.filename or root)
        ) from err
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if progress is not None:
        progress(studies, studies, f"Wrote {studies} phantom studies to {root}")
    return PhantomManifest(root, seed, matrix, done, family)


def _make_study(
    job: tuple[Path, np.random.SeedSequence, int, int, bool, int, str, float | None],
) -> StudyLabels:
    """Draw study ``index`` and write it under ``root`` (in this process or a worker's)."""
    root, seq, seed, index, bleed, matrix, family, slice_mm = job
    study, meta = _dataset_study(seq, seed, index, bleed, matrix, family, slice_mm)
    return _write_study(root, study, meta)


def _write_study(root: Path, study: PhantomStudy, meta: SeriesMeta) -> StudyLabels:
    dz, dy, dx = study.spacing
    n, rows, cols = study.hu.shape
    origin = (-(cols - 1) / 2.0 * dx, -(rows - 1) / 2.0 * dy, study.z0_mm)
    positions, orientation = axial_geometry(n, dz, (dy, dx), (rows, cols), origin=origin)
    series_dir = root / meta.patient_id / series_folder_name(meta)
    if series_dir.is_dir():
        for old in series_dir.glob("IM*.dcm"):
            old.unlink()
    write_ct_series(
        study.hu,
        series_dir,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(dy, dx),
        slice_thickness=dz,
        meta=meta,
    )
    uids = [str(sop_instance_uid(meta.series_uid, k)) for k in range(n)]
    order = np.argsort(positions @ np.cross(orientation[:3], orientation[3:]), kind="stable")
    sop_sorted = [uids[k] for k in order]
    mask = study.mask[order]
    mask_path = root / "masks" / f"{meta.series_uid}.npz"
    np.savez_compressed(mask_path, mask=mask, sop_uids=np.array(sop_sorted))
    return StudyLabels(
        patient_id=meta.patient_id,
        patient_name=meta.patient_name,
        study_uid=meta.study_uid,
        series_uid=meta.series_uid,
        series_dir=series_dir,
        label=study.label,
        kind=study.kind,
        contrast_hu=study.contrast_hu,
        size_mm=study.size_mm,
        noise_hu=study.noise_hu,
        lesions=list(study.lesions),
        sop_uids=sop_sorted,
        slice_labels=study.slice_labels[order].astype(np.uint8),
        mask_path=mask_path,
    )
