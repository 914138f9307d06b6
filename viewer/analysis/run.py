"""Analyse one loaded series: intended-use check, preprocessing, the slice-GRU, its gates and saliency.

Runs anywhere (a worker thread of the viewer, the CLI, a test); reports ``progress(done, total, text)`` and checks
``cancel()`` between steps and between chunks of slices, so a cancel takes effect within a chunk's time (well
under a second on a CPU). A device failure (CUDA out of memory, a driver error) reruns the analysis on the CPU
and says so in ``device_notice``; it never ends the analysis by itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch

from viewer.analysis.result import HIDDEN_KEYS, AnalysisResult, ModelIdentity, SeriesIdentity
from viewer.dicom.volume import Volume
from viewer.errors import CancelledError, ViewerError
from viewer.model.card import ModelCard
from viewer.model.device import describe_device, pick_device, use_cpu_threads
from viewer.model.explanations import (
    DEFAULT_PIXEL_METHOD,
    DEFAULT_PIXEL_TARGET,
    EXPLAINERS,
    Explanation,
    analyse_sequence,
)
from viewer.model.intended_use import UseWarning, check_series, size_refusal
from viewer.model.misses import weakest_groups
from viewer.model.network import SliceGRUNet, lse_weights
from viewer.model.preprocess import Preprocessed, Preprocessor
from viewer.progress import CancelFn, ProgressFn

log = logging.getLogger(__name__)


KEY_SLICES = 4
_CHUNK = 16


class DeviceFailure(RuntimeError):
    """The accelerator failed (out of memory, driver); the analysis is repeated on the CPU."""


@dataclass
class AnalysisOptions:
    """How to analyse: device preference, key slices, pixel method, CPU threads (None: the cores free now)."""

    device: str = "auto"
    key_slices: int = KEY_SLICES
    pixel_method: str = DEFAULT_PIXEL_METHOD
    pixel_target: str = DEFAULT_PIXEL_TARGET
    cpu_threads: int | None = None


def _is_device_error(exc: BaseException) -> bool:
    if isinstance(exc, (DeviceFailure, torch.cuda.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        w in text for w in ("cuda", "cudnn", "mps", "hip", "device-side")
    )


def place(model: SliceGRUNet, device: torch.device) -> SliceGRUNet:
    """Move the model to ``device``: the one place an accelerator is touched first (and tests make fail)."""
    return model.to(device)


class _Steps:
    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None, total: int) -> None:
        self.progress, self.cancel, self.total, self.done = progress, cancel, total, 0

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise CancelledError("Analysis cancelled")

    def advance(self, text: str, amount: int = 1) -> None:
        self.check()
        self.done = min(self.total, self.done + amount)
        if self.progress is not None:
            self.progress(self.done, self.total, text)


def key_slices_from(scores: np.ndarray, inputs: Preprocessed, count: int) -> list[int]:
    """The ``count`` model slices with the highest scores, as original slice indices (a slab's middle slice)."""
    order = np.argsort(-np.asarray(scores), kind="stable")[: max(0, count)]
    mapping = inputs.mapping
    return [int((mapping.starts[j] + mapping.stops[j] - 1) // 2) for j in order]


@dataclass
class SliceExplainer:
    """What pixel saliency of more slices needs once an analysis ran: the model (on its device), its inputs and
    their slice features. An :class:`~viewer.analysis.session.AnalysisSession` holds one while it is open."""

    model: SliceGRUNet
    inputs: Preprocessed
    features: torch.Tensor
    method: str
    target: str

    def explain(self, index: int) -> Explanation:
        """The pixel method's explanation of original slice ``index``."""
        if self.features.device.type == "cpu":
            use_cpu_threads()
        return EXPLAINERS[self.method](
            self.model, self.inputs, slices=[index], target=self.target, features=self.features
        )

    def __call__(self, index: int) -> np.ndarray:
        """Pixel saliency of original slice ``index`` (signed, at the original resolution)."""
        return self.explain(index).pixel_maps[index]


def _run(
    volume: Volume,
    model: SliceGRUNet,
    card: ModelCard,
    device: torch.device,
    options: AnalysisOptions,
    steps: _Steps,
) -> tuple[AnalysisResult, SliceExplainer]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if device.type == "cpu":
        use_cpu_threads(options.cpu_threads)  # default: the cores other programs leave free now
    warnings = check_series(
        volume.array,
        volume.spacing,
        modality=volume.modality,
        units=volume.units,
        orientation=volume.orientation,
        target_spacing_mm=model.config.target_spacing_mm,
        positions=volume.positions,
    )
    model = place(model, device).eval()
    prep = Preprocessor.from_config(model.config)
    t0 = time.perf_counter()
    inputs = prep(volume.array, volume.spacing)
    note = prep.centring.note_for(inputs.hu_median) if prep.centring is not None else ""
    if note:
        warnings.append(UseWarning("hu_offset", note, disqualifying=False))
    timings["preprocess"] = time.perf_counter() - t0
    steps.advance("Preprocessed")

    t0 = time.perf_counter()
    chunks = []
    with torch.no_grad():
        for part in inputs.tensor.split(_CHUNK):
            steps.check()
            chunks.append(model.encode(part.to(device)))
            steps.advance("Reading slices", 0)
    features = torch.cat(chunks)
    timings["forward"] = time.perf_counter() - t0
    steps.advance("Model run")

    t0 = time.perf_counter()
    sequence = analyse_sequence(model, inputs, features=features)
    out, gates, hidden = sequence.output, sequence.gates, sequence.hidden_saliency
    timings["gates"] = time.perf_counter() - t0
    steps.advance("Gates and hidden-state saliency")

    mapping = inputs.mapping
    # Key slices carry the largest shares of the pooled study score. The hidden-state saliency is not used: its
    # total derivative also credits the slices whose state the recurrence carries to a bleed (docs/model.md).
    shares = lse_weights(out.slice_logits[0], model.config.lse_sharpness).cpu().numpy()
    key = key_slices_from(shares, inputs, options.key_slices)
    explainer = SliceExplainer(model, inputs, features, options.pixel_method, options.pixel_target)

    t0 = time.perf_counter()
    pixel_maps: dict[int, np.ndarray] = {}
    label = ""
    for index in key:
        steps.check()
        expl = explainer.explain(index)
        pixel_maps[index] = expl.pixel_maps[index]
        label = expl.labels.get("pixel", options.pixel_method)
        steps.advance(f"Pixel saliency {len(pixel_maps)}/{len(key)}")
    timings["pixel"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started

    result = AnalysisResult(
        identity=SeriesIdentity.of(volume),
        probability=float(out.study_probability[0]),
        threshold=float(card.operating_threshold),
        slice_probabilities=mapping.to_original(out.slice_probabilities[0]).astype(np.float32),
        gates={k: gates.on_original_slices(k).astype(np.float32) for k in gates.slice_values},
        gate_matrices={
            k: mapping.to_original(v, axis=1).astype(np.float32)
            for k, v in gates.matrices.items()
            if k[0] in "zr"
        },
        hidden_saliency={
            k: hidden.on_original_slices(k).astype(np.float32)
            for k in HIDDEN_KEYS
            if k in hidden.slice_values
        },
        key_slices=key,
        pixel_saliency=pixel_maps,
        pixel_method=options.pixel_method,
        pixel_label=label or options.pixel_method,
        warnings=warnings,
        model=ModelIdentity(card.name, card.version, card.sha256),
        device=describe_device(device),
        timings=timings,
        finished_at=datetime.now().astimezone(),
        known_misses=weakest_groups([card.evaluation, *card.evaluations]),
    )
    return result, explainer


def run_analysis(
    volume: Volume,
    model: SliceGRUNet,
    card: ModelCard,
    *,
    options: AnalysisOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[AnalysisResult, SliceExplainer]:
    """Analyse a loaded series with ``model``; the result and what computing more pixel maps needs.

    See the module docstring; :class:`~viewer.analysis.session.AnalysisSession` is the usual way in.

    Raises
    ------
    CancelledError
        ``cancel()`` returned True.
    ViewerError
        The series cannot be prepared for the model (no slices, broken geometry, non-finite values), or its size
        is refused before preprocessing (:func:`~viewer.model.intended_use.size_refusal`: images under
        ``MIN_MATRIX_PX`` pixels a side, more than ``MAX_SLICES`` slices).
    """
    options = options or AnalysisOptions()
    if volume is None or getattr(volume, "array", None) is None or volume.array.ndim != 3:
        raise ViewerError("Cannot analyse the series", "it is not a loaded image volume")
    if volume.is_colour:
        raise ViewerError("Cannot analyse the series", "it holds colour images, not CT slices")
    refusal = size_refusal(volume.array.shape)
    if refusal:
        raise ViewerError("Cannot analyse the series", refusal)
    device = pick_device(options.device)
    steps = _Steps(progress, cancel, 3 + options.key_slices)
    try:
        return _run(volume, model, card, device, options, steps)
    except (CancelledError, ViewerError):
        raise
    except Exception as exc:
        if device.type == "cpu" or not _is_device_error(exc):
            raise
        log.warning("analysis on %s failed (%s); repeating on the CPU", device, type(exc).__name__)
        model.to("cpu")
        if device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
        steps = _Steps(progress, cancel, 3 + options.key_slices)
        result, explainer = _run(volume, model, card, torch.device("cpu"), options, steps)
        result.device_notice = f"The {describe_device(device)} failed ({_short_reason(exc)}); the analysis ran on the CPU instead."
        return result, explainer


def analyze_volume(
    volume: Volume,
    model: SliceGRUNet,
    card: ModelCard,
    *,
    options: AnalysisOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> AnalysisResult:
    """One analysis of a loaded series that keeps nothing open: :func:`run_analysis` without its explainer."""
    result, _explainer = run_analysis(volume, model, card, options=options, progress=progress, cancel=cancel)
    return result


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of memory"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first[:120]
