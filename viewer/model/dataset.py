"""Labelled DICOM series for training and evaluation.

A dataset is a folder of DICOM studies plus a labels file naming, per series, the study label (bleed present or
absent) and optionally a label per slice and a bleed mask:

- the phantom generator's ``labels.json`` (``gru-viewer demo-data`` writes one beside the DICOM), or any JSON
  with a ``studies`` list of ``{"series_uid", "label", "slice_labels_by_sop"?, "mask"?}`` objects;
- a CSV with a header row holding ``series_uid`` and ``label`` (study labels only).

Slice labels and masks are keyed by SOP Instance UID, never by file name or order, so they follow the slices
whatever order the files come in. Series are found with the ordinary index (:func:`viewer.dicom.index.scan`) and
read with the ordinary loader, so training sees exactly what the viewer shows.

For training, each series is kept as its model slices resized to the model's in-plane size, in HU (float16:
the windows are applied on the fly, which keeps a 1,000-study set near 1 GB). That array is cached on disk
outside the data folder (study folders are read-only), keyed by the series and the preprocessing.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewer.dicom.cache import cache_dir
from viewer.dicom.index import StudyIndex, scan
from viewer.dicom.readers import load_stack
from viewer.dicom.stacks import Stack
from viewer.dicom.volume import Volume
from viewer.errors import CancelledError, ViewerError
from viewer.model.hu_centring import HuCentring, soft_tissue_median
from viewer.model.preprocess import Preprocessor, SliceMapping
from viewer.progress import CancelFn, ProgressFn

_CACHE_VERSION = 1


@dataclass
class SeriesLabel:
    """Ground truth of one series.

    Attributes
    ----------
    series_uid:
        SeriesInstanceUID.
    label:
        1 when the series holds a bleed.
    slice_labels_by_sop:
        SOP Instance UID → 0/1, or None when only the study label is known.
    mask_path:
        ``.npz`` with ``mask`` (z, y, x) bool and ``sop_uids`` (z,), or None.
    lesions:
        The bleeds as phantom labels describe them (``kind``, ``volume_ml``, ``contrast_hu``, ...), for the
        per-kind rates of :mod:`viewer.model.misses`; empty when unknown.
    """

    series_uid: str
    label: int
    slice_labels_by_sop: dict[str, int] | None = None
    mask_path: Path | None = None
    lesions: tuple[dict[str, Any], ...] = ()

    def slice_labels(self, sop_uids: Sequence[str]) -> np.ndarray | None:
        """Labels in the order of ``sop_uids`` (a loaded volume's slices); None when not all are labelled."""
        if self.slice_labels_by_sop is None:
            return None
        try:
            return np.asarray([self.slice_labels_by_sop[uid] for uid in sop_uids], dtype=np.uint8)
        except KeyError:
            return None

    def mask(self, sop_uids: Sequence[str]) -> np.ndarray | None:
        """The bleed mask reordered to ``sop_uids``; None without a mask or when its slices do not match."""
        if self.mask_path is None:
            return None
        try:
            with np.load(self.mask_path) as data:
                mask = data["mask"].astype(bool)
                uids = [str(u) for u in data["sop_uids"]]
        except (OSError, KeyError, ValueError):
            return None
        where = {uid: k for k, uid in enumerate(uids)}
        if any(uid not in where for uid in sop_uids):
            return None
        return mask[[where[uid] for uid in sop_uids]]


def _inside(root: Path, rel: str, source: Path) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise ViewerError("Cannot read the labels", f"path {rel!r} leaves the labels' folder", source)
    return path


def read_labels(path: str | Path) -> list[SeriesLabel]:
    """Read a labels file (JSON or CSV, see the module docstring); :class:`ViewerError` when it is unusable."""
    path = Path(path)
    what = "Cannot read the labels"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ViewerError(what, exc.strerror or str(exc), path) from exc
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or not {"series_uid", "label"} <= set(rows[0]):
            raise ViewerError(what, "a labels CSV needs a header with series_uid and label columns", path)
        try:
            return [SeriesLabel(r["series_uid"].strip(), int(r["label"])) for r in rows]
        except ValueError as exc:
            raise ViewerError(what, f"a label is not 0 or 1 ({exc})", path) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ViewerError(what, f"it is not valid JSON ({exc})", path) from exc
    studies = doc.get("studies") if isinstance(doc, dict) else None
    if not isinstance(studies, list):
        raise ViewerError(what, "the JSON has no 'studies' list", path)
    root = path.parent.resolve()
    labels = []
    try:
        for s in studies:
            by_sop = s.get("slice_labels_by_sop")
            mask = s.get("mask")
            labels.append(
                SeriesLabel(
                    str(s["series_uid"]),
                    int(s["label"]),
                    {str(k): int(v) for k, v in by_sop.items()} if by_sop else None,
                    _inside(root, str(mask), path) if mask else None,
                    tuple(dict(les) for les in s.get("lesions") or ()),
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ViewerError(what, f"a study entry is malformed ({exc})", path) from exc
    if any(lab.label not in (0, 1) for lab in labels):
        raise ViewerError(what, "study labels must be 0 or 1", path)
    return labels


def default_labels_path(data: str | Path) -> Path:
    """``DIR/labels.json``, where the phantom generator puts it."""
    return Path(data) / "labels.json"


@dataclass
class LabelledStack:
    """A labelled series found in a folder: its stack and its labels."""

    label: SeriesLabel
    stack: Stack


def find_labelled(
    data: str | Path,
    labels: Sequence[SeriesLabel],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[list[LabelledStack], list[str]]:
    """Index ``data`` and pair each labelled series with its largest stack.

    Returns the pairs (in the labels' order) and one message per labelled series that is missing.
    """
    index: StudyIndex = scan([str(data)], progress=progress, cancel=cancel)
    found: list[LabelledStack] = []
    missing: list[str] = []
    for lab in labels:
        series = index.find_series(lab.series_uid)
        if series is None or not series.stacks:
            missing.append(f"series {lab.series_uid} is in the labels but not under {data}")
            continue
        stack = max(series.stacks, key=lambda s: s.n_slices)
        found.append(LabelledStack(lab, stack))
    return found, missing


@dataclass
class TrainingSeries:
    """One series ready for training: resized model slices in HU and their labels.

    Attributes
    ----------
    series_uid:
        Which series.
    hu:
        ``(n_model, S, S)`` float16: model slices (slabs for thin series) resized and padded, before windowing.
    slice_labels:
        ``(n_model,)`` float32, 1 where any original slice of the slab is a bleed slice; NaN when unknown.
    label:
        Study label.
    """

    series_uid: str
    hu: np.ndarray
    slice_labels: np.ndarray
    label: int

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])

    @property
    def has_slice_labels(self) -> bool:
        return bool(np.all(np.isfinite(self.slice_labels)))


def model_slice_labels(original: np.ndarray | None, mapping: SliceMapping) -> np.ndarray:
    """Per model slice: the max of its original slices' labels (NaN everywhere when ``original`` is None)."""
    if original is None:
        return np.full(mapping.n_model, np.nan, dtype=np.float32)
    return np.asarray(
        [float(original[list(mapping.original_slices(j))].max()) for j in range(mapping.n_model)],
        dtype=np.float32,
    )


def resized_model_slices(volume: Volume, preprocessor: Preprocessor) -> tuple[np.ndarray, SliceMapping]:
    """A volume's model slices resized to the model's size, in HU (float16), and the slab mapping."""
    hu = np.asarray(volume.array, dtype=np.float32)
    dz, dy, dx = volume.spacing
    mapping = preprocessor.slabs.mapping(hu.shape[0], dz)
    slabs = np.stack(
        [hu[mapping.starts[j] : mapping.stops[j]].mean(0) for j in range(mapping.n_model)]
    ).astype(np.float32)
    with torch.no_grad():
        resized = preprocessor.resize(torch.from_numpy(slabs), (dy, dx))
    return resized.numpy().astype(np.float16), mapping


def recentred(series: Sequence[TrainingSeries], centring: HuCentring) -> list[TrainingSeries]:
    """The series with a model's HU re-centring applied, as the viewer applies it before the windows.

    The median is read from the prepared (resized) slabs, which are what training keeps; it lies within a few
    tenths of a HU of the original volume's."""
    out = []
    for item in series:
        shift = centring.shift_for(soft_tissue_median(item.hu))
        if shift:
            item = replace(item, hu=(item.hu.astype(np.float32) + np.float32(shift)).astype(item.hu.dtype))
        out.append(item)
    return out


def training_cache_dir() -> Path:
    """Where prepared training series are kept: ``<cache dir>/training``."""
    return cache_dir() / "training"


def _cache_key(stack: Stack, preprocessor: Preprocessor, size: int) -> str:
    files = [(s.header.path, s.header.size, s.header.mtime_ns, s.header.ctime_ns) for s in stack.slices]
    doc = json.dumps(
        [_CACHE_VERSION, stack.uid, files, size, preprocessor.slabs.target_spacing], sort_keys=True
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def prepare_series(
    items: Sequence[LabelledStack],
    preprocessor: Preprocessor,
    size: int,
    cache: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[list[TrainingSeries], list[str]]:
    """Load and resize every labelled series (from the cache when it holds them).

    Returns the prepared series and one message per series that could not be loaded (the rest go on).
    """
    cache = training_cache_dir() if cache is None else Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    out: list[TrainingSeries] = []
    failed: list[str] = []
    for k, item in enumerate(items):
        if cancel is not None and cancel():
            raise CancelledError("Preparing the training data was cancelled")
        if progress is not None:
            progress(k, len(items), "Preparing series")
        entry = cache / f"{_cache_key(item.stack, preprocessor, size)}.npz"
        try:
            with np.load(entry) as data:
                hu, labels = data["hu"], data["slice_labels"]
        except (OSError, KeyError, ValueError):
            try:
                volume = load_stack(item.stack)
            except ViewerError as exc:
                failed.append(f"series {item.label.series_uid}: {exc.what}: {exc.why}")
                continue
            hu, mapping = resized_model_slices(volume, preprocessor)
            labels = model_slice_labels(item.label.slice_labels(volume.sop_uids), mapping)
            tmp = entry.with_suffix(".tmp.npz")
            np.savez(tmp, hu=hu, slice_labels=labels)
            tmp.replace(entry)
        out.append(TrainingSeries(item.label.series_uid, hu, labels, item.label.label))
    if progress is not None:
        progress(len(items), len(items), "Series prepared")
    return out, failed


def iter_volumes(
    items: Sequence[LabelledStack], cancel: CancelFn | None = None
) -> Iterator[tuple[LabelledStack, Volume | None, str | None]]:
    """Load each labelled series in turn: ``(item, volume, None)`` or ``(item, None, reason)``."""
    for item in items:
        if cancel is not None and cancel():
            raise CancelledError("Cancelled")
        try:
            yield item, load_stack(item.stack), None
        except ViewerError as exc:
            yield item, None, f"{exc.what}: {exc.why}"
