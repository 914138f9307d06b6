"""How the model's study AUROC moves when the acquisition changes: ``gru-viewer evaluate --robustness``.

Every labelled series is loaded once with the viewer's loader, scored as it is (the baseline), then changed by
each :class:`Condition` (the transforms of :mod:`viewer.model.perturb`, with their ground truth carried along) and
scored again. Conditions that only mean something to the loader (missing slices, feet first, a gantry tilt) are
written as DICOM and loaded back (:mod:`viewer.model.roundtrip`). The tilt resamples between slices; a
half-slice resampling without tilt is its control, so the two effects can be told apart. Only the prediction is computed: the slice
encoder, the GRU and the pooling under ``no_grad``, the same numbers the viewer's analysis shows, without the
explanations.

Each row reports the study AUROC, its change from the baseline on the same series, sensitivity and specificity
at the card's operating threshold, and the slice AUROC. The issue's goal: the study AUROC drops by at most
:data:`GOAL_MAX_DROP` under +5 HU of noise and under ±10 HU offsets. A change that cannot be made from the
folder's series (slices thinner than the source's) is reported as not measurable, never approximated.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewer.dicom.geometry import normal_from_orientation
from viewer.dicom.volume import Volume
from viewer.errors import CancelledError, ViewerError
from viewer.model.card import ModelCard, card_path_for, current_card, write_card
from viewer.model.dataset import LabelledStack, iter_volumes
from viewer.model.metrics import auroc, sensitivity_specificity
from viewer.model.network import SliceGRUNet
from viewer.model.perturb import (
    NotMeasurable,
    Sample,
    add_noise,
    change_fov,
    drop_slices,
    every_nth,
    gantry_tilt,
    offset_hu,
    resample_matrix,
    shift_slices,
    thicken,
)
from viewer.model.preprocess import Preprocessor
from viewer.model.roundtrip import through_dicom
from viewer.model.weights import load_weights
from viewer.model.workflow import Dataset, open_dataset, portable_command
from viewer.progress import CancelFn, ProgressFn

#: The largest study AUROC drop the issue accepts under +5 HU of noise and ±10 HU offsets.
GOAL_MAX_DROP = 0.02

Transform = Callable[[Sample, np.random.Generator], Sample]


@dataclass(frozen=True)
class Condition:
    """One acquisition change: what it is called and how it is made.

    Attributes
    ----------
    key:
        Stable name (JSON, card).
    label:
        What the table shows.
    transform:
        ``transform(sample, rng)``; ``rng`` is seeded per series and condition.
    through_dicom:
        Write the changed series as DICOM and load it back before scoring.
    feet_first:
        Write it as a feet-first series (with ``through_dicom``).
    goal_max_drop:
        The largest AUROC drop this row may show, or None when the issue sets no goal.
    note:
        What the table should say about how the change was made.
    """

    key: str
    label: str
    transform: Transform
    through_dicom: bool = False
    feet_first: bool = False
    goal_max_drop: float | None = None
    note: str = ""


_MATRIX_NOTE = "antialiased bilinear resampling, field of view kept; the model itself resizes every slice to its input size"


def _same(sample: Sample, _rng: np.random.Generator) -> Sample:
    return sample


def default_conditions() -> list[Condition]:
    """The conditions of issue #14, in the order the table lists them."""

    def noise(sd: float) -> Transform:
        return lambda s, rng: add_noise(s, sd, rng)

    def offset(delta: float) -> Transform:
        return lambda s, _rng: offset_hu(s, delta)

    def thickness(mm: float) -> Transform:
        return lambda s, _rng: thicken(s, mm)

    def matrix(px: int) -> Transform:
        return lambda s, _rng: resample_matrix(s, px)

    def fov(mm: float) -> Transform:
        return lambda s, _rng: change_fov(s, mm)

    def tilt(deg: float) -> Transform:
        return lambda s, _rng: gantry_tilt(s, deg)

    def shift(fraction: float) -> Transform:
        return lambda s, _rng: shift_slices(s, fraction)

    def missing(s: Sample, _rng: np.random.Generator) -> Sample:
        return drop_slices(s, every_nth(s.n_slices, 10))

    goal = GOAL_MAX_DROP
    return [
        Condition("noise_5", "added noise +5 HU SD", noise(5.0), goal_max_drop=goal),
        Condition("noise_10", "added noise +10 HU SD", noise(10.0)),
        Condition("offset_-10", "HU offset −10", offset(-10.0), goal_max_drop=goal),
        Condition("offset_+10", "HU offset +10", offset(10.0), goal_max_drop=goal),
        Condition("thickness_2.5", "slice thickness 2.5 mm", thickness(2.5)),
        Condition("thickness_5", "slice thickness 5 mm", thickness(5.0)),
        Condition("thickness_10", "slice thickness 10 mm", thickness(10.0)),
        Condition(
            "missing_10pct",
            "10 % of slices missing",
            missing,
            through_dicom=True,
            note="every tenth slice dropped, the rest at their true positions, written as DICOM and loaded back",
        ),
        Condition(
            "feet_first",
            "feet first",
            _same,
            through_dicom=True,
            feet_first=True,
            note="written as DICOM with PatientPosition FFS, the row direction flipped (mirrored pixels) and the "
            "files from the vertex down, then loaded back",
        ),
        Condition(
            "tilt_15",
            "gantry tilt 15°",
            tilt(15.0),
            through_dicom=True,
            note="slices resampled (trilinear) on planes tilted 15° about the left-right axis at the same table "
            "positions, labels recomputed from the resampled mask, written as DICOM and loaded back",
        ),
        Condition(
            "shift_half",
            "half-slice resampling (tilt control)",
            shift(0.5),
            note="control for the tilt: the same linear interpolation between slices, no tilt (each slice the "
            "mean of two neighbours, at the same spacing)",
        ),
        Condition("matrix_256", "matrix 256²", matrix(256), note=_MATRIX_NOTE),
        Condition("matrix_512", "matrix 512²", matrix(512), note=_MATRIX_NOTE),
        Condition("fov_180", "field of view 180 mm", fov(180.0)),
        Condition("fov_250", "field of view 250 mm", fov(250.0)),
        Condition("fov_300", "field of view 300 mm", fov(300.0)),
    ]


#: The conditions a thin-slice source is for (see :func:`robustness_folder`).
THICKNESS_KEYS = ("thickness_2.5", "thickness_5", "thickness_10")


def select_conditions(keys: Sequence[str] | None) -> list[Condition]:
    """The default conditions named by ``keys`` (all for None), in the table's order.

    Raises
    ------
    ViewerError
        A key names no condition.
    """
    everything = default_conditions()
    if keys is None:
        return everything
    wanted = {k.strip() for k in keys if k.strip()}
    unknown = sorted(wanted - {c.key for c in everything})
    if unknown or not wanted:
        raise ViewerError(
            "Unknown robustness condition",
            f"{', '.join(unknown) or 'none given'}; choose from {', '.join(c.key for c in everything)}",
        )
    return [c for c in everything if c.key in wanted]


def sample_from_volume(volume: Volume, item: LabelledStack) -> Sample:
    """A loaded labelled series as a :class:`Sample`, with its slice labels and mask in the volume's order."""
    return Sample(
        hu=np.asarray(volume.array, dtype=np.float32),
        spacing=tuple(float(s) for s in volume.spacing),  # type: ignore[arg-type]
        positions=np.asarray(volume.positions, dtype=np.float64),
        orientation=tuple(float(v) for v in volume.orientation),
        thickness=float(volume.slice_thickness or volume.spacing[0]),
        label=int(item.label.label),
        slice_labels=item.label.slice_labels(volume.sop_uids),
        mask=item.label.mask(volume.sop_uids),
    )


@dataclass
class Prediction:
    """What the model said about one (changed) series, with the ground truth it was scored against."""

    series_uid: str
    label: int
    probability: float
    slice_labels: np.ndarray | None
    slice_probabilities: np.ndarray
    unchanged: bool = False
    reversed_order: bool = False


def predict(model: SliceGRUNet, prep: Preprocessor, sample: Sample, series_uid: str = "") -> Prediction:
    """Study and slice probabilities of ``sample``: the viewer's preprocessing and the network's forward only."""
    inputs = prep(sample.hu, sample.spacing)
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(inputs.tensor.to(device))
    return Prediction(
        series_uid,
        sample.label,
        float(out.study_probability[0]),
        sample.slice_labels,
        inputs.mapping.to_original(out.slice_probabilities[0]),
    )


def _rng(seed: int, series_uid: str, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{series_uid}|{key}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence([seed, int.from_bytes(digest[:16], "little")]))


def _reads_downwards(loaded: Sample, source: Sample) -> bool:
    """Whether the loaded slices run against the source's slice normal (the vertex first, for a head CT)."""
    step = loaded.positions[-1] - loaded.positions[0]
    return bool(step @ normal_from_orientation(source.orientation) < 0)


def perturbed_prediction(
    model: SliceGRUNet,
    prep: Preprocessor,
    sample: Sample,
    condition: Condition,
    rng: np.random.Generator,
    baseline: Prediction,
    workdir: Path | None = None,
) -> Prediction:
    """Apply ``condition`` to ``sample`` and score it; the baseline is reused when nothing changed.

    Raises
    ------
    NotMeasurable
        The condition cannot be made from this series.
    """
    changed = condition.transform(sample, rng)
    if changed is sample and not condition.through_dicom:
        return Prediction(
            baseline.series_uid,
            baseline.label,
            baseline.probability,
            baseline.slice_labels,
            baseline.slice_probabilities,
            unchanged=True,
        )
    if condition.through_dicom:
        with tempfile.TemporaryDirectory(prefix="gru-robustness-", dir=workdir) as tmp:
            loaded = through_dicom(changed, Path(tmp), feet_first=condition.feet_first)
        result = predict(model, prep, loaded, baseline.series_uid)
        result.reversed_order = _reads_downwards(loaded, sample)
        return result
    return predict(model, prep, changed, baseline.series_uid)


def _scores(predictions: Sequence[Prediction], threshold: float) -> dict[str, float]:
    labels = np.asarray([p.label for p in predictions], dtype=float)
    probs = np.asarray([p.probability for p in predictions], dtype=float)
    sens, spec = sensitivity_specificity(labels, probs, threshold)
    with_slices = [p for p in predictions if p.slice_labels is not None]
    slice_auc = (
        auroc(
            np.concatenate([p.slice_labels for p in with_slices]),  # type: ignore[misc]
            np.concatenate([p.slice_probabilities for p in with_slices]),
        )
        if with_slices
        else float("nan")
    )
    return {
        "studies": float(len(predictions)),
        "studies_with_bleed": float(labels.sum()),
        "study_auroc": auroc(labels, probs),
        "sensitivity": sens,
        "specificity": spec,
        "slice_auroc": slice_auc,
    }


@dataclass
class RobustnessReport:
    """The baseline and every condition's predictions, and the table made from them."""

    threshold: float
    conditions: list[Condition]
    baseline: list[Prediction]
    predictions: dict[str, list[Prediction]]
    not_measurable: dict[str, list[tuple[str, str]]]
    seconds: dict[str, float]
    failed: list[str]
    source: str
    total_seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rows:
            self.rows = [self._baseline_row(), *(self._row(c) for c in self.conditions)]

    def _baseline_row(self) -> dict[str, Any]:
        scores = _scores(self.baseline, self.threshold)
        return {
            "key": "baseline",
            "condition": "unperturbed",
            **_json_scores(scores),
            "delta_auroc": 0.0,
            "goal_max_drop": None,
            "meets_goal": None,
            "note": "",
            "seconds": round(self.seconds.get("baseline", 0.0), 1),
        }

    def _row(self, condition: Condition) -> dict[str, Any]:
        measured = self.predictions.get(condition.key, [])
        skipped = self.not_measurable.get(condition.key, [])
        row: dict[str, Any] = {
            "key": condition.key,
            "condition": condition.label,
            "goal_max_drop": condition.goal_max_drop,
            "seconds": round(self.seconds.get(condition.key, 0.0), 1),
        }
        if not measured:
            reasons = sorted({why for _, why in skipped}) or ["no series could be scored"]
            row.update(dict.fromkeys(_SCORE_KEYS))
            row.update(delta_auroc=None, meets_goal=None, note="not measurable: " + "; ".join(reasons))
            return row
        uids = {p.series_uid for p in measured}
        base = _scores([p for p in self.baseline if p.series_uid in uids], self.threshold)
        scores = _scores(measured, self.threshold)
        delta = scores["study_auroc"] - base["study_auroc"]
        meets = None
        if condition.goal_max_drop is not None and np.isfinite(delta):
            meets = bool(-delta <= condition.goal_max_drop + 1e-12)
        row.update(_json_scores(scores), delta_auroc=_finite(delta), meets_goal=meets)
        row["note"] = self._note(condition, measured, skipped)
        return row

    def _note(self, condition: Condition, measured: list[Prediction], skipped: list[tuple[str, str]]) -> str:
        parts = [condition.note] if condition.note else []
        unchanged = sum(p.unchanged for p in measured)
        if unchanged == len(measured):
            parts.append(
                f"the folder's series are already like this ({self.source}): identical to unperturbed"
            )
        elif unchanged:
            parts.append(f"{unchanged} of {len(measured)} series are already like this and stay unchanged")
        if condition.feet_first:
            reversed_ = sum(p.reversed_order for p in measured)
            parts.append(f"{reversed_} of {len(measured)} series reached the model vertex first")
        base_labels = {p.series_uid: p.label for p in self.baseline}
        lost = sum(1 for p in measured if base_labels.get(p.series_uid) == 1 and p.label == 0)
        if lost:
            parts.append(f"{lost} bleed series no longer show a bleed and count as normal")
        if skipped:
            reasons = "; ".join(sorted({why for _, why in skipped}))
            parts.append(
                f"{len(skipped)} series not measurable ({reasons}): Δ against the baseline of the others"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The table, the source, and every series' probability per condition (``--json``)."""
        return {
            "threshold": self.threshold,
            "source": self.source,
            "seconds": round(self.total_seconds, 1),
            "rows": self.rows,
            "failed": list(self.failed),
            "series": {
                key: [
                    {"series_uid": p.series_uid, "label": p.label, "probability": p.probability}
                    for p in predictions
                ]
                for key, predictions in {"baseline": self.baseline, **self.predictions}.items()
            },
            "not_measurable": {
                key: [{"series_uid": uid, "reason": why} for uid, why in items]
                for key, items in self.not_measurable.items()
                if items
            },
        }


_SCORE_KEYS = ("studies", "studies_with_bleed", "study_auroc", "sensitivity", "specificity", "slice_auroc")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _json_scores(scores: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {k: _finite(scores[k]) for k in _SCORE_KEYS}
    out["studies"] = int(scores["studies"])
    out["studies_with_bleed"] = int(scores["studies_with_bleed"])
    return out


@dataclass(frozen=True)
class SourceShape:
    """What the table's notes say about one source series: slice thickness, matrix and field of view."""

    thickness: float
    rows: int
    cols: int
    fov_mm: float

    @classmethod
    def of(cls, sample: Sample) -> SourceShape:
        """The shape of ``sample``."""
        return cls(sample.thickness, int(sample.hu.shape[1]), int(sample.hu.shape[2]), sample.fov_mm)


def describe_source(shapes: Sequence[SourceShape]) -> str:
    """The folder's slice thickness, matrices and field of view, e.g. ``5 mm slices, 512×512 matrix, 220–250 mm
    field of view``."""
    if not shapes:
        return "no series"

    def span(values: list[float], unit: str) -> str:
        lo, hi = min(values), max(values)
        return f"{lo:g} {unit}" if abs(hi - lo) < 0.05 else f"{lo:g}–{hi:g} {unit}"

    thickness = span([round(s.thickness, 2) for s in shapes], "mm slices")
    matrices = sorted({f"{s.rows}×{s.cols}" for s in shapes})
    fov = span([round(s.fov_mm, 1) for s in shapes], "mm field of view")
    return f"{thickness}, {', '.join(matrices)} matrix, {fov}"


def evaluate_robustness(
    model: SliceGRUNet,
    items: Sequence[LabelledStack],
    *,
    threshold: float,
    conditions: Sequence[Condition] | None = None,
    seed: int = 0,
    workdir: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> RobustnessReport:
    """Score every labelled series as it is and under each condition (see the module docstring)."""
    started = time.perf_counter()
    conditions = list(default_conditions() if conditions is None else conditions)
    model = model.eval()
    prep = Preprocessor.from_config(model.config)
    baseline: list[Prediction] = []
    predictions: dict[str, list[Prediction]] = {c.key: [] for c in conditions}
    skipped: dict[str, list[tuple[str, str]]] = {c.key: [] for c in conditions}
    seconds: dict[str, float] = dict.fromkeys(["baseline", *predictions], 0.0)
    failed: list[str] = []
    sources: list[SourceShape] = []
    for k, (item, volume, reason) in enumerate(iter_volumes(items, cancel)):
        uid = item.label.series_uid
        if progress is not None:
            progress(k, len(items), "Robustness")
        if volume is None:
            failed.append(f"series {uid}: {reason}")
            continue
        sample = sample_from_volume(volume, item)
        del volume
        sources.append(SourceShape.of(sample))
        t0 = time.perf_counter()
        base = predict(model, prep, sample, uid)
        seconds["baseline"] += time.perf_counter() - t0
        baseline.append(base)
        for condition in conditions:
            if cancel is not None and cancel():
                raise CancelledError("Robustness evaluation cancelled")
            t0 = time.perf_counter()
            try:
                predictions[condition.key].append(
                    perturbed_prediction(
                        model, prep, sample, condition, _rng(seed, uid, condition.key), base, workdir
                    )
                )
            except NotMeasurable as exc:
                skipped[condition.key].append((uid, str(exc)))
            seconds[condition.key] += time.perf_counter() - t0
    if progress is not None:
        progress(len(items), len(items), "Robustness evaluated")
    return RobustnessReport(
        threshold,
        conditions,
        baseline,
        predictions,
        skipped,
        seconds,
        failed,
        describe_source(sources),
        time.perf_counter() - started,
    )


def robustness_folder(
    model_path: str | Path,
    data: str | Path,
    *,
    labels: str | Path | None = None,
    device: torch.device | None = None,
    conditions: Sequence[str] | None = None,
    update_card: bool = False,
    thin_source: bool = False,
    command: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[RobustnessReport, ModelCard, Dataset]:
    """The robustness table of the weights at ``model_path`` on a labelled folder; with ``update_card`` the card
    records it (rows, data, source series, the command with portable paths) in its ``robustness`` section.
    ``conditions`` picks conditions by key (default: all of :func:`default_conditions`).

    ``thin_source``: the folder holds thin slices, the source the thickness rows need (a 5 mm folder cannot show
    2.5 mm). Only the thickness conditions run, each against this folder's own unperturbed AUROC, and the card
    keeps them beside the main table (``robustness["thin_source"]``) instead of replacing it.
    """
    if thin_source:
        conditions = list(conditions) if conditions else list(THICKNESS_KEYS)
        other = [key for key in conditions if key not in THICKNESS_KEYS]
        if other:
            raise ViewerError(
                "Cannot run these conditions on a thin source",
                f"a thin source is for the thickness rows only, not {', '.join(other)}",
            )
    chosen = select_conditions(conditions)
    model, card = load_weights(model_path, device=device or "cpu")
    dataset = open_dataset(data, labels, progress)
    report = evaluate_robustness(
        model, dataset.items, threshold=card.operating_threshold, conditions=chosen, progress=progress
    )
    if update_card:
        card = current_card(model_path, card)
        section = {
            "data": dataset.description,
            "source": report.source,
            "threshold": card.operating_threshold,
            "command": portable_command(command) if command else "",
            "rows": report.rows,
            "failed": list(report.failed),
        }
        if thin_source:
            card.robustness = {**card.robustness, "thin_source": section}
        else:
            goal = f"study AUROC drop ≤ {GOAL_MAX_DROP:g} under +5 HU noise and ±10 HU offsets"
            kept = {"thin_source": card.robustness["thin_source"]} if "thin_source" in card.robustness else {}
            card.robustness = {**section, "goal": goal, **kept}
        write_card(card, card_path_for(model_path))
    return report, card, dataset
