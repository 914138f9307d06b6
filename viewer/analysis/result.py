"""What one analysis of one series found, as plain data the GUI, the CLI and the report all read.

Everything per slice is on the series' original slices, in the loaded volume's order (index 0 = smallest
position along the slice normal), so slice ``k`` of any track is slice ``k`` of the image view. A result names
its series (stack UID, series UID, SOP UIDs and geometry); :meth:`AnalysisResult.matches` is how a viewer makes
sure it never draws a result over another series.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from viewer.model.intended_use import UseWarning, is_assessable
from viewer.model.misses import GroupRate

#: What a result outside the model's intended use says instead of a finding.
NOT_ASSESSED = "Not assessed: outside the model's intended use"
#: The label over the plots of a result that is not assessed (viewer and report say the same words).
STUDY_ONLY = (
    "For study only: outside intended use. The plots show the model's output on a series it was not made for; "
    "they are not a finding."
)

#: ``(units, n_model)`` matrices are shown against original slices through this map.
GATE_KEYS: tuple[str, ...] = ("z_mean_forward", "z_mean_reverse", "r_mean_forward", "r_mean_reverse")
MATRIX_KEYS: tuple[str, ...] = ("z_forward", "z_reverse", "r_forward", "r_reverse")
#: The hidden-state track per direction, each with its direct and carried parts.
HIDDEN_KEYS: tuple[str, ...] = tuple(
    f"{d}{part}" for d in ("forward", "reverse", "combined") for part in ("", "_direct", "_carried")
)


@dataclass(frozen=True)
class SeriesIdentity:
    """Which series a result belongs to, precisely enough to refuse showing it on any other."""

    stack_uid: str
    series_uid: str
    study_uid: str
    n_slices: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    sop_digest: str

    @classmethod
    def of(cls, volume: Any) -> SeriesIdentity:
        """The identity of a loaded :class:`~viewer.dicom.volume.Volume`."""
        digest = hashlib.sha256("\n".join(volume.sop_uids).encode()).hexdigest()[:16]
        return cls(
            stack_uid=str(volume.stack_uid),
            series_uid=str(volume.series_uid),
            study_uid=str(volume.study_uid),
            n_slices=int(volume.array.shape[0]),
            shape=tuple(int(s) for s in volume.array.shape),  # type: ignore[arg-type]
            spacing=tuple(float(s) for s in volume.spacing),  # type: ignore[arg-type]
            sop_digest=digest,
        )


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str


#: Pixel saliency of an original slice index, or None when there is none (e.g. ``AnalysisSession.pixel_map``).
PixelMapFn = Callable[[int], np.ndarray | None]


@dataclass
class AnalysisResult:
    """One series' finding and its evidence.

    Attributes
    ----------
    identity:
        The series analysed.
    probability:
        Study probability of a bleed.
    threshold:
        The model's operating threshold; ``positive`` is ``probability >= threshold``.
    slice_probabilities:
        ``(n_slices,)`` per-slice bleed probability.
    gates:
        :data:`GATE_KEYS` → ``(n_slices,)`` mean update / reset gate per slice and direction.
    gate_matrices:
        :data:`MATRIX_KEYS` → ``(units, n_slices)`` per-unit gates (columns repeat within a slab of a thin
        series).
    hidden_saliency:
        :data:`HIDDEN_KEYS` → ``(n_slices,)`` signed contribution of each slice's hidden state to the study logit
        (logit units, one scale for every series; positive = towards a bleed, negative = towards no bleed,
        against the model's reference normal series). ``combined`` is ``forward + reverse``; each splits into
        ``*_direct`` (read by the slice head at this slice) and ``*_carried`` (passed on in the reader's state to
        the slices it reads later). Summed over slices it overshoots the change of the study logit by about 10 %
        (a one-step estimate; docs/model.md).
    key_slices:
        Original slice indices carrying the largest shares of the pooled study score (the slices the finding
        rests on), largest first.
    pixel_saliency:
        Original slice index → ``(y, x)`` signed attribution (computed for the key slices; an open
        :class:`~viewer.analysis.session.AnalysisSession` adds more on demand).
    pixel_method:
        Name of the pixel method and what its map means.
    pixel_label:
        How the overlay legend names the map.
    warnings:
        Intended-use warnings (empty when the series is what the model was made for); a disqualifying one makes
        the result not :attr:`assessed`.
    model:
        Name, version and SHA-256 of the weights.
    device:
        Where it ran (``"CPU (2 threads)"``, ``"CUDA (…)"``); ``device_notice`` says why it fell back, if it did.
    timings:
        Seconds per step: ``preprocess``, ``forward``, ``gates``, ``pixel``, ``total``.
    finished_at:
        When the analysis finished (local time, with its UTC offset).
    known_misses:
        The groups of bleeds the model most often missed in its card's evaluations
        (:func:`~viewer.model.misses.weakest_groups`), said beside a negative finding.
    """

    identity: SeriesIdentity
    probability: float
    threshold: float
    slice_probabilities: np.ndarray
    gates: dict[str, np.ndarray]
    gate_matrices: dict[str, np.ndarray]
    hidden_saliency: dict[str, np.ndarray]
    key_slices: list[int]
    pixel_saliency: dict[int, np.ndarray]
    pixel_method: str
    pixel_label: str
    warnings: list[UseWarning]
    model: ModelIdentity
    device: str
    device_notice: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    finished_at: datetime | None = None
    known_misses: list[GroupRate] = field(default_factory=list)

    @property
    def assessed(self) -> bool:
        """False when a disqualifying intended-use warning withholds the finding (the plots are for study only)."""
        return is_assessable(self.warnings)

    @property
    def reasons(self) -> list[str]:
        """Why the result is not assessed: the disqualifying warnings' sentences (empty when assessed)."""
        return [w.message for w in self.warnings if w.disqualifying]

    @property
    def positive(self) -> bool:
        """The model's output against its threshold; a finding only when :attr:`assessed`."""
        return self.probability >= self.threshold

    @property
    def finding(self) -> str:
        """The finding in the words a clinician reads at a glance (:data:`NOT_ASSESSED` outside intended use)."""
        if not self.assessed:
            return NOT_ASSESSED
        return "Bleed suspected" if self.positive else "No bleed detected"

    def matches(self, volume: Any) -> bool:
        """True when ``volume`` is exactly the series this result was computed on."""
        return volume is not None and SeriesIdentity.of(volume) == self.identity

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (pixel maps are left out; they are images, see the report)."""

        def arr(values: np.ndarray) -> list[float]:
            return [round(float(v), 6) for v in np.asarray(values).ravel()]

        ident = self.identity
        return {
            "series": {
                "stack_uid": ident.stack_uid,
                "series_uid": ident.series_uid,
                "study_uid": ident.study_uid,
                "n_slices": ident.n_slices,
                "shape": list(ident.shape),
                "spacing_mm": list(ident.spacing),
            },
            "probability": round(self.probability, 6),
            "threshold": round(self.threshold, 6),
            "assessed": self.assessed,
            "positive": self.positive if self.assessed else None,
            "finding": self.finding,
            "warnings": [
                {"code": w.code, "message": w.message, "disqualifying": w.disqualifying}
                for w in self.warnings
            ],
            "model": {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256},
            "known_misses": [
                {"group": r.group, "series": r.series, "found": r.correct} for r in self.known_misses
            ],
            "device": self.device,
            "device_notice": self.device_notice,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "finished_at": self.finished_at.isoformat(timespec="seconds") if self.finished_at else None,
            "key_slices": list(self.key_slices),
            "slice_probabilities": arr(self.slice_probabilities),
            "hidden_saliency": {k: arr(v) for k, v in self.hidden_saliency.items()},
            "gates": {k: arr(v) for k, v in self.gates.items()},
            "pixel_method": self.pixel_method,
        }
