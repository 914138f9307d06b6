"""Ground truth of a written phantom dataset: ``labels.json`` and the bleed masks beside it, written and read.

``labels.json`` lists each study's identifiers, label, bleed kinds and lesions, and per-slice labels keyed by
SOP Instance UID; ``masks/<SeriesInstanceUID>.npz`` holds the per-voxel mask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.errors import ViewerError

LABELS_FORMAT = "gru-viewer-phantom-labels"
LABELS_VERSION = 1


@dataclass(frozen=True, slots=True)
class LesionInfo:
    """One bleed of a study: its kind, contrast above brain, and extent of its mask."""

    kind: str
    contrast_hu: float
    size_mm: float  # largest extent of its mask along x, y or z
    volume_ml: float
    first_slice: int  # slice indices (ascending along the normal, i.e. inferior to superior)
    last_slice: int

    def to_dict(self) -> dict[str, object]:
        """The lesion as ``labels.json`` keeps it (rounded)."""
        return {
            "kind": self.kind,
            "contrast_hu": round(self.contrast_hu, 2),
            "size_mm": round(self.size_mm, 2),
            "volume_ml": round(self.volume_ml, 3),
            "first_slice": self.first_slice,
            "last_slice": self.last_slice,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> LesionInfo:
        """A lesion read back from :meth:`to_dict`'s form."""
        return cls(
            str(d["kind"]),
            float(d["contrast_hu"]),  # type: ignore[arg-type]
            float(d["size_mm"]),  # type: ignore[arg-type]
            float(d["volume_ml"]),  # type: ignore[arg-type]
            int(d["first_slice"]),  # type: ignore[call-overload]
            int(d["last_slice"]),  # type: ignore[call-overload]
        )


@dataclass
class StudyLabels:
    """Ground truth of one written phantom study, as kept in ``labels.json``."""

    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    series_dir: Path
    label: int
    kind: str
    contrast_hu: float | None
    size_mm: float | None
    noise_hu: float
    lesions: list[LesionInfo]
    sop_uids: list[str]  # ascending along the slice normal
    slice_labels: np.ndarray  # (z,) uint8, same order as sop_uids
    mask_path: Path

    @property
    def slice_labels_by_sop(self) -> dict[str, int]:
        """Slice label (0 or 1) by SOP Instance UID."""
        return {uid: int(v) for uid, v in zip(self.sop_uids, self.slice_labels, strict=True)}

    def load_mask(self) -> np.ndarray:
        """The (z, y, x) bool bleed mask, slices ascending along the normal like ``sop_uids``."""
        with np.load(self.mask_path) as data:
            return data["mask"].astype(bool)

    def to_dict(self, root: Path) -> dict[str, object]:
        """The study as ``labels.json`` keeps it, paths relative to ``root``."""
        return {
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "series_dir": self.series_dir.relative_to(root).as_posix(),
            "label": self.label,
            "kind": self.kind,
            "contrast_hu": None if self.contrast_hu is None else round(self.contrast_hu, 2),
            "size_mm": None if self.size_mm is None else round(self.size_mm, 2),
            "noise_hu": round(self.noise_hu, 2),
            "lesions": [les.to_dict() for les in self.lesions],
            "n_slices": len(self.sop_uids),
            "sop_uids": list(self.sop_uids),
            "slice_labels": [int(v) for v in self.slice_labels],
            "slice_labels_by_sop": self.slice_labels_by_sop,
            "mask": self.mask_path.relative_to(root).as_posix(),
        }


@dataclass
class PhantomManifest:
    """Everything ``labels.json`` says about a phantom dataset; paths are absolute."""

    root: Path
    seed: int
    matrix: int
    studies: list[StudyLabels]
    family: str = "classic"

    @property
    def labels_path(self) -> Path:
        """Where ``labels.json`` is."""
        return self.root / "labels.json"

    def by_series(self, series_uid: str) -> StudyLabels:
        """The study of the series ``series_uid``; KeyError when there is none."""
        for s in self.studies:
            if s.series_uid == series_uid:
                return s
        raise KeyError(series_uid)


def write_labels(
    root: Path,
    seed: int,
    matrix: int,
    studies: list[StudyLabels],
    family: str = "classic",
    slice_mm: float | None = None,
) -> None:
    """Write ``root/labels.json`` for ``studies``, replacing any earlier one in one step."""
    doc = {
        "format": LABELS_FORMAT,
        "version": LABELS_VERSION,
        "seed": seed,
        "matrix": matrix,
        "family": family,
        **({} if slice_mm is None else {"slice_mm": slice_mm}),
        "note": "Synthetic phantoms for software testing and model development; not patient data.",
        "studies": [s.to_dict(root) for s in studies],
    }
    tmp = root / "labels.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(root / "labels.json")


def load_labels(path: Path) -> PhantomManifest:
    """Read ``labels.json`` (or the folder holding it) back into a :class:`PhantomManifest`."""
    path = Path(path)
    if path.is_dir():
        path = path / "labels.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ViewerError("Cannot read phantom labels", str(err.strerror or err), str(path)) from err
    except json.JSONDecodeError as err:
        raise ViewerError("Cannot read phantom labels", f"not valid JSON ({err})", str(path)) from err
    if doc.get("format") != LABELS_FORMAT:
        raise ViewerError("Cannot read phantom labels", "not a GRU Viewer phantom labels file", str(path))
    if int(doc.get("version", 0)) > LABELS_VERSION:
        raise ViewerError(
            "Cannot read phantom labels", f"format version {doc['version']} is newer than this app", str(path)
        )
    root = path.parent.resolve()

    def inside(rel: str) -> Path:
        p = (root / rel).resolve()
        if not p.is_relative_to(root):
            raise ViewerError(
                "Cannot read phantom labels", f"path {rel!r} leaves the dataset folder", str(path)
            )
        return p

    studies = [
        StudyLabels(
            patient_id=s["patient_id"],
            patient_name=s["patient_name"],
            study_uid=s["study_uid"],
            series_uid=s["series_uid"],
            series_dir=inside(s["series_dir"]),
            label=int(s["label"]),
            kind=s["kind"],
            contrast_hu=s["contrast_hu"],
            size_mm=s["size_mm"],
            noise_hu=float(s["noise_hu"]),
            lesions=[LesionInfo.from_dict(d) for d in s["lesions"]],
            sop_uids=list(s["sop_uids"]),
            slice_labels=np.asarray(s["slice_labels"], dtype=np.uint8),
            mask_path=inside(s["mask"]),
        )
        for s in doc["studies"]
    ]
    return PhantomManifest(
        root, int(doc["seed"]), int(doc["matrix"]), studies, str(doc.get("family", "classic"))
    )
