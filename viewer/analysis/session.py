"""One analysis of one volume, kept open for pixel saliency of more slices: what Analyze and the CLI run.

An :class:`AnalysisSession` runs the analysis (:func:`~viewer.analysis.run.run_analysis`) and then owns what
computing another slice's pixel map needs: the model, the volume and the model inputs (preprocessed slices and
their features). Its :attr:`~AnalysisSession.result` is plain data. :meth:`~AnalysisSession.close` lets go of
the model and inputs (what was computed stays in the result); the owner decides when: the CLI closes each
session as soon as its series is done, the viewer keeps the few most recently shown open.

Nothing here knows of threads: the functions that take ``progress`` and ``cancel`` are what the viewer's
workers run.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from viewer.analysis.display import slice_weight, to_display_map
from viewer.dicom.volume import Volume
from viewer.errors import CancelledError, ViewerError
from viewer.progress import CancelFn, ProgressFn

if TYPE_CHECKING:
    from viewer.analysis.run import AnalysisOptions, SliceExplainer
    from viewer.model.card import ModelCard
    from viewer.model.network import SliceGRUNet

log = logging.getLogger(__name__)


class AnalysisSession:
    """The analysis of ``volume`` by ``model``, run on construction, open for more pixel maps until closed.

    Parameters
    ----------
    volume, model, card:
        The loaded series, the network and its model card (``card.operating_threshold`` decides the finding).
    options:
        Device, key slices and pixel method (default :class:`~viewer.analysis.run.AnalysisOptions`).
    progress, cancel:
        As every headless job takes them; a cancel raises :class:`~viewer.errors.CancelledError`.
    """

    def __init__(
        self,
        volume: Volume,
        model: SliceGRUNet,
        card: ModelCard,
        options: AnalysisOptions | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> None:
        from viewer.analysis.run import run_analysis  # torch loads on the first analysis, not with the window

        self.card = card
        self.result, explainer = run_analysis(
            volume, model, card, options=options, progress=progress, cancel=cancel
        )
        self._explainer: SliceExplainer | None = explainer
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        volume: Volume,
        model_path: str | Path | None = None,
        options: AnalysisOptions | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> AnalysisSession:
        """Load the model at ``model_path`` (default: the shipped weights; cached after the first time) and
        analyse ``volume`` with it."""
        from viewer.analysis.model_cache import load_model

        if progress is not None:
            progress(0, 0, "Loading the model")
        model, card = load_model(model_path)
        if cancel is not None and cancel():
            raise CancelledError("Analysis cancelled")
        return cls(volume, model, card, options, progress=progress, cancel=cancel)

    @property
    def is_open(self) -> bool:
        """True until :meth:`close`: slices without a map can still get one."""
        return self._explainer is not None

    def pixel_map(self, k: int) -> np.ndarray | None:
        """Pixel saliency of original slice ``k`` (signed, at the image's resolution), computed on first request
        and kept in the result; None when ``k`` has none and the session is closed or ``k`` is no slice."""
        known = self.result.pixel_saliency.get(k)
        if known is not None:
            return known
        explainer = self._explainer
        if explainer is None or not 0 <= k < self.result.identity.n_slices:
            return None
        with self._lock:  # one slice at a time: the model's autograd state is not shared between threads
            raw = explainer(k)
        self.result.pixel_saliency[k] = raw
        return raw

    def display_map(self, k: int, scaling: str = "series") -> np.ndarray | None:
        """:meth:`pixel_map` of slice ``k`` as the overlay draws it (:func:`~viewer.analysis.display.to_display_map`),
        scaled to the series (at the slice's bleed probability) or, with ``scaling="slice"``, per slice."""
        raw = self.pixel_map(k)
        weight = slice_weight(self.result.slice_probabilities, k, scaling)
        return None if raw is None else to_display_map(raw, weight)

    def close(self) -> None:
        """Let go of the model, volume and inputs; the result, with every map computed so far, stays."""
        self._explainer = None


@dataclass
class AnalysisOutcome:
    """What the viewer's analysis worker returns: the session and its key slices' maps as the overlay draws them."""

    session: AnalysisSession
    display_maps: dict[int, np.ndarray] = field(default_factory=dict)
    scaling: str = "series"


def analyse_for_display(
    volume: Volume,
    model_path: str | Path | None,
    device: str,
    *,
    progress: ProgressFn,
    cancel: CancelFn,
    scaling: str = "series",
) -> AnalysisOutcome:
    """Open a session on ``volume`` on ``device`` and scale the key slices' maps for display (``scaling`` as in
    :meth:`AnalysisSession.display_map`)."""
    from viewer.analysis.run import AnalysisOptions

    session = AnalysisSession.open(
        volume, model_path, AnalysisOptions(device=device), progress=progress, cancel=cancel
    )
    probabilities = session.result.slice_probabilities
    maps = {
        k: to_display_map(m, slice_weight(probabilities, k, scaling))
        for k, m in session.result.pixel_saliency.items()
    }
    return AnalysisOutcome(session, maps, scaling)


def slice_display_map(
    session: AnalysisSession, k: int, *, progress: ProgressFn, cancel: CancelFn, scaling: str = "series"
) -> tuple[int, np.ndarray | None]:
    """Slice ``k``'s pixel map of ``session`` scaled for display, on demand (None when it cannot be computed)."""
    return k, session.display_map(k, scaling)


def analysis_error(exc: BaseException) -> ViewerError:
    """A failed analysis as the user reads it: what and why in plain words, never a traceback (logged instead)."""
    if isinstance(exc, ViewerError):
        return exc
    if isinstance(exc, MemoryError):
        return ViewerError(
            "The analysis failed",
            "not enough memory; close other programs or lower the series cache in Preferences, then try again",
        )
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(frames[-4:]))
    log.error("analysis failed with %s at %s", type(exc).__name__, where or "?")
    return ViewerError(
        "The analysis failed",
        f"the model stopped with an internal error ({type(exc).__name__}). The viewer is still usable; "
        "try again, or choose 'CPU only' under Tools ▸ Preferences",
    )
