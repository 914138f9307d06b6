"""A :class:`~viewer.model.perturb.Sample` written as a DICOM series and read back through the viewer's own path.

Some acquisition changes only mean something to the loader: slices missing from a series (the loader measures
the spacing and closes the gap), a series written feet first, a gantry tilt. Writing the sample as real CT
files and indexing and loading them again (:func:`viewer.dicom.index.scan`, :func:`viewer.dicom.readers.load_stack`)
puts the real sort along the slice normal and the real geometry checks between the change and the model.
Labels travel by SOP Instance UID, as a labels file would carry them, so they follow the slices through the sort.

HU are stored as integers (rescale intercept −1024), as a scanner stores them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from viewer.dicom.index import scan
from viewer.dicom.readers import load_stack
from viewer.errors import ViewerError
from viewer.model.perturb import Sample
from viewer.synth.writer import SeriesMeta, sop_instance_uid, write_ct_series


def feet_first_layout(sample: Sample) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray]:
    """Pixels, positions, orientation and slice order of ``sample`` as a scanner writes a feet-first series.

    With the patient in feet first, the scanner's x axis runs to the patient's right: the row direction is
    flipped (so the slice normal points to the feet) and each image holds the mirrored pixels, every voxel keeping
    its place in the patient. The files are written from the vertex down. Returns ``(hu, positions, orientation,
    order)`` with ``order[k]`` the sample slice written as file ``k``.
    """
    cols = sample.hu.shape[2]
    row = sample.row_dir
    order = np.arange(sample.n_slices)[::-1]
    hu = np.ascontiguousarray(np.asarray(sample.hu)[order, :, ::-1])
    positions = sample.positions[order] + row * (cols - 1) * sample.spacing[2]
    orientation = tuple(float(v) for v in (*(-row), *sample.col_dir))
    return hu, positions, orientation, order


def write_sample(sample: Sample, folder: Path, *, feet_first: bool = False) -> tuple[str, list[str]]:
    """Write ``sample`` as one CT series under ``folder``; returns its Series Instance UID and, per sample slice,
    its SOP Instance UID."""
    meta = SeriesMeta.invented(
        "ROBUSTNESS^PHANTOM",
        "ROBUSTNESS",
        "robustness round trip",
        patient_position="FFS" if feet_first else "HFS",
        image_comments="Perturbed synthetic phantom made by GRU Viewer - not a patient",
    )
    if feet_first:
        hu, positions, orientation, order = feet_first_layout(sample)
    else:
        hu, positions, orientation = sample.hu, sample.positions, sample.orientation
        order = np.arange(sample.n_slices)
    write_ct_series(
        hu,
        folder,
        positions=positions,
        orientation=orientation,
        pixel_spacing=(sample.spacing[1], sample.spacing[2]),
        slice_thickness=sample.thickness,
        meta=meta,
    )
    sop_uids = [""] * sample.n_slices
    for k, index in enumerate(order):
        sop_uids[int(index)] = str(sop_instance_uid(meta.series_uid, k))
    return meta.series_uid, sop_uids


def read_sample(folder: Path, series_uid: str, sop_uids: list[str], truth: Sample) -> Sample:
    """Index and load the series ``series_uid`` under ``folder`` with the viewer's loader; the ground truth of
    ``truth`` (whose slice ``i`` was written as ``sop_uids[i]``) follows the slices by SOP Instance UID."""
    index = scan([str(folder)], use_cache=False, workers=1)
    series = index.find_series(series_uid)
    if series is None or not series.stacks:
        raise ViewerError("Cannot read the perturbed series back", "the index did not find it", str(folder))
    volume = load_stack(max(series.stacks, key=lambda s: s.n_slices), workers=1)
    where = {uid: i for i, uid in enumerate(sop_uids)}
    order = np.asarray([where[uid] for uid in volume.sop_uids], dtype=int)
    mask = None if truth.mask is None else truth.mask[order]
    if mask is not None and _mirrored(truth, volume.orientation):
        mask = mask[:, :, ::-1]
    return replace(
        truth,
        hu=np.asarray(volume.array, dtype=np.float32),
        spacing=tuple(float(s) for s in volume.spacing),  # type: ignore[arg-type]
        positions=np.asarray(volume.positions, dtype=np.float64),
        orientation=tuple(float(v) for v in volume.orientation),
        slice_labels=None if truth.slice_labels is None else truth.slice_labels[order],
        mask=mask,
    )


def _mirrored(truth: Sample, orientation: tuple[float, ...]) -> bool:
    """Whether the loaded images run along the other row direction than ``truth``'s (a feet-first layout)."""
    return float(np.dot(truth.row_dir, np.asarray(orientation[:3], dtype=np.float64))) < 0


def through_dicom(sample: Sample, folder: Path, *, feet_first: bool = False) -> Sample:
    """``sample`` as the viewer loads it after writing it as DICOM under ``folder`` (see the module docstring)."""
    series_uid, sop_uids = write_sample(sample, folder, feet_first=feet_first)
    return read_sample(folder, series_uid, sop_uids, sample)
