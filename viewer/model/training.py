"""Training the slice-GRU in three stages, resumable after any epoch.

Training the CNN and the GRU end to end from scratch on a few hundred series does not work on a CPU budget: the
study label says little about which of ~35 slices to look at, and a run of several minutes stayed near chance
(slice AUROC 0.59 on phantoms). So, as in the RSNA 2019 intracranial-haemorrhage solutions (a 2D slice CNN, then
a sequence model over its features):

1. ``encoder``: the slice CNN with a temporary linear head learns bleed / no bleed per slice, on balanced
   batches of single slices (every bleed slice each epoch, ``negatives_per_positive`` times as many others),
   with flips and small shifts.
2. ``sequence``: the encoder is frozen, its features are computed once per series (plain and mirrored; the
   validation series' too, and kept on disk by :class:`~viewer.model.feature_cache.FeatureCache` when a feature
   cache is given, so a later run over the same encoder skips them), and the bidirectional GRU and the slice
   head learn on whole series, with the slice loss plus the study loss on the pooled logit.
3. ``finetune``: everything together at a low learning rate on whole series, BatchNorm statistics frozen.

A negative study's slices are all negative, so it teaches stage 1 without slice labels; a positive study without
slice labels only teaches stages 2 and 3 (through the study loss).

Early stopping (``patience`` > 0): a stage ends when its validation score (study AUROC, slice AUROC for the
encoder) has not improved for ``patience`` epochs, and the weights of its best epoch go on to the next stage.

After every epoch the model, the optimiser and the progress (with the best epoch's weights when stopping early)
are written to a checkpoint (safetensors plus JSON metadata; no pickles); a new run with the same settings
continues from it. Each epoch draws its own random numbers from ``(seed, stage, epoch)``, so a resumed run makes
the same draws as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from viewer.errors import CancelledError, ViewerError
from viewer.model.config import ModelConfig
from viewer.model.dataset import TrainingSeries
from viewer.model.feature_cache import FeatureCache, encode_series, encoder_digest
from viewer.model.metrics import auroc, youden_threshold
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import AIR_HU, WindowStack
from viewer.model.reference import build_reference
from viewer.progress import CancelFn, ProgressFn

LogFn = Callable[[str], None]

STAGES: tuple[str, ...] = ("encoder", "sequence", "finetune")
_CHECKPOINT_FORMAT = "gru-viewer-checkpoint-1"
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run besides the data (stored in the checkpoint and the card).

    ``patience``: epochs without a better validation score before a stage stops early, keeping its best epoch's
    weights; 0 runs every epoch and keeps the last weights.

    ``precision``: ``fp32``, or ``bf16`` for the stages that train the encoder (1 and 3): the encoder's forward
    passes run under bfloat16 autocast in channels-last layout, about 3 × faster on a CPU with AVX-512 BF16
    or AMX (and on a GPU) and much slower on one without. Weights, optimiser state, the frozen features of stage
    2 and every validation stay float32, so a bf16 run's scores are measured as the viewer computes them.

    ``slab_fraction``: the share of the encoder stage's slices replaced by the mean of 2 or 3 adjacent model
    slices around them, labelled a bleed slice when any of those is one, as a scanner's thick reconstruction
    would show it (thick slabs dilute a small bleed into its neighbours; :func:`slab_around`).

    ``tilt_fraction``: the share of them cut instead on a plane tilted about the left-right axis, as a tilted
    gantry cuts the head (:func:`tilted_slice`), by up to ``max_tilt_slices`` model slices from the top row to the
    bottom one (12: about 15° for a 220 mm field of view and 5 mm slices). Only slices whose tilted plane passes
    through bleed-free slices alone are tilted, since without a mask nothing tells where in the plane a bleed
    lies: they teach that an oblique cut through the skull is not a bleed.

    ``positives_per_series``: at most this many bleed slices of each series go into an encoder epoch, drawn afresh
    each epoch (0 takes them all), and the normal slices follow that smaller number. A large haematoma spans ten
    or twenty slices and a bleed of a few tenths of a millilitre one or two, so without a cap the easy large
    bleeds make up most of what the slice CNN learns a bleed to look like (:func:`capped_per_series`).
    """

    seed: int = 0
    encoder_epochs: int = 12
    sequence_epochs: int = 30
    finetune_epochs: int = 2
    batch_slices: int = 64
    negatives_per_positive: float = 2.0
    lr_encoder: float = 2e-3
    lr_sequence: float = 3e-3
    lr_finetune: float = 1e-4
    weight_decay: float = 1e-4
    max_shift_px: int = 8
    max_rotation_deg: float = 10.0
    hu_jitter: float = 5.0
    noise_hu: float = 6.0
    min_crop_slices: int = 16
    grad_clip: float = 5.0
    study_loss_weight: float = 1.0
    patience: int = 0
    precision: str = "fp32"
    slab_fraction: float = 0.0
    tilt_fraction: float = 0.0
    max_tilt_slices: float = 12.0
    positives_per_series: int = 0

    def __post_init__(self) -> None:
        if self.positives_per_series < 0:
            raise ValueError(
                f"positives_per_series must be 0 (all) or more, not {self.positives_per_series!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        for name in ("slab_fraction", "tilt_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], not {getattr(self, name)!r}")
        if self.slab_fraction + self.tilt_fraction > 1.0:
            raise ValueError("slab_fraction and tilt_fraction together must not exceed 1")

    def epochs(self, stage: str) -> int:
        return {
            "encoder": self.encoder_epochs,
            "sequence": self.sequence_epochs,
            "finetune": self.finetune_epochs,
        }[stage]

    def lr(self, stage: str) -> float:
        return {"encoder": self.lr_encoder, "sequence": self.lr_sequence, "finetune": self.lr_finetune}[stage]


@dataclass
class _BestEpoch:
    """The best epoch of the stage running, for early stopping: its index, score and weights."""

    epoch: int = -1
    score: float = float("nan")
    stale: int = 0
    state: dict[str, Tensor] | None = None


@dataclass
class EpochRecord:
    stage: str
    epoch: int
    train_loss: float
    val: dict[str, float]
    seconds: float


@dataclass
class TrainingResult:
    """The trained model (eval mode), its operating threshold and what happened on the way."""

    model: SliceGRUNet
    threshold: float
    history: list[EpochRecord] = field(default_factory=list)
    validation: dict[str, float] = field(default_factory=dict)


def _generator(seed: int, stage: str, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + STAGES.index(stage) * 1_009 + epoch)


def _cosine(base: float, epoch: int, epochs: int) -> float:
    """Learning rate of ``epoch`` on a cosine from ``base`` down to 5 % of it."""
    if epochs <= 1:
        return base
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / (epochs - 1))))


def begin_epoch(optimizer: torch.optim.Optimizer, settings: TrainSettings, stage: str, epoch: int) -> None:
    """Seed torch's global RNG (dropout) from ``(seed, stage, epoch)`` and set the epoch's cosine learning rate."""
    torch.manual_seed(int(_generator(settings.seed, stage, epoch).initial_seed()) + 7)
    for group in optimizer.param_groups:
        group["lr"] = _cosine(settings.lr(stage), epoch, settings.epochs(stage))


def clipped_step(optimizer: torch.optim.Optimizer, loss: Tensor, grad_clip: float) -> None:
    """Backward, clip the gradient norm of the optimiser's parameters at ``grad_clip``, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def capped_per_series(
    items: Sequence[tuple[int, int]], cap: int, gen: torch.Generator
) -> list[tuple[int, int]]:
    """At most ``cap`` of the ``(series, slice)`` pairs of each series, drawn at random; all of them when ``cap``
    is 0 (and then ``gen`` is not drawn from, so an uncapped run is what it was before the cap existed)."""
    if cap <= 0:
        return list(items)
    by_series: dict[int, list[tuple[int, int]]] = {}
    for item in items:
        by_series.setdefault(item[0], []).append(item)
    out: list[tuple[int, int]] = []
    for group in by_series.values():
        if len(group) > cap:
            picked = sorted(torch.randperm(len(group), generator=gen)[:cap].tolist())
            group = [group[i] for i in picked]
        out.extend(group)
    return out


def known_slice_labels(series: TrainingSeries) -> np.ndarray:
    """Slice labels, with a negative study's unknown labels filled in as 0."""
    labels = series.slice_labels.copy()
    if series.label == 0:
        labels[~np.isfinite(labels)] = 0.0
    return labels


def sequence_loss(
    slice_logits: Tensor, study_logit: Tensor, series: Sequence[TrainingSeries], study_loss_weight: float
) -> Tensor:
    """Slice loss on the known slice labels plus ``study_loss_weight`` × the study loss on the pooled logit."""
    labels = np.stack([known_slice_labels(s) for s in series])
    target = torch.as_tensor(labels, dtype=torch.float32, device=slice_logits.device)
    known = torch.isfinite(target)
    loss = slice_logits.new_zeros(())
    if known.any():
        loss = F.binary_cross_entropy_with_logits(slice_logits[known], target[known])
    study_target = torch.tensor([float(s.label) for s in series], device=slice_logits.device)
    return loss + study_loss_weight * F.binary_cross_entropy_with_logits(study_logit, study_target)


def length_batches(
    series: Sequence[TrainingSeries], gen: torch.Generator, max_batch: int = 16
) -> list[list[int]]:
    """Series indices grouped into batches of equal length (the GRU has no padding mask), shuffled."""
    by_len: dict[int, list[int]] = {}
    for k, one in enumerate(series):
        by_len.setdefault(one.n_slices, []).append(k)
    batches = []
    for members in by_len.values():
        perm = [members[int(i)] for i in torch.randperm(len(members), generator=gen)]
        batches += [perm[i : i + max_batch] for i in range(0, len(perm), max_batch)]
    return [batches[int(i)] for i in torch.randperm(len(batches), generator=gen)]


def sequence_optimizer(model: SliceGRUNet, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW on everything but the encoder, which is frozen (stage 2)."""
    params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    model.requires_grad_(True)
    model.encoder.requires_grad_(False)
    return torch.optim.AdamW(params, lr=settings.lr("sequence"), weight_decay=settings.weight_decay)


def sequence_epoch(
    model: SliceGRUNet,
    train: Sequence[TrainingSeries],
    bank: Sequence[Tensor],
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    epoch: int,
    on_batch: Callable[[int, int, float], None] | None = None,
) -> float:
    """One epoch of stage 2 on frozen features; returns the mean loss.

    ``bank[k]`` is ``(2, n, F)``: series ``k``'s features, plain and mirrored (one drawn per series and batch).
    Batches hold series of equal length; when every series in a batch has slice labels (or is negative), the batch
    is cut to one random run of at least ``min_crop_slices`` slices. ``on_batch(done, total, mean loss)`` is called
    after each batch (progress, cancelling).
    """
    gen = _generator(settings.seed, "sequence", epoch)
    batches = length_batches(train, gen)
    model.train()
    model.encoder.eval()
    total = 0.0
    for b, members in enumerate(batches):
        variant = torch.randint(0, 2, (len(members),), generator=gen)
        series = [train[m] for m in members]
        start, stop = 0, series[0].n_slices
        if all(s.has_slice_labels or s.label == 0 for s in series):
            start, stop = random_crop(stop, settings.min_crop_slices, gen)
            series = [_cropped(s, start, stop) for s in series]
        feats = torch.stack([bank[m][int(v), start:stop] for m, v in zip(members, variant, strict=True)])
        out = model.forward_features(feats)
        loss = sequence_loss(out.slice_logits, out.study_logit, series, settings.study_loss_weight)
        clipped_step(optimizer, loss, settings.grad_clip)
        total += loss.item()
        if on_batch is not None:
            on_batch(b + 1, len(batches), total / (b + 1))
    return total / max(1, len(batches))


@torch.no_grad()
def predict_features(model: SliceGRUNet, features: Iterable[Tensor]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Study probabilities and per-slice probabilities from each series' ``(n, F)`` features, in eval mode."""
    model.eval()
    studies, slices = [], []
    for feats in features:
        out = model.forward_features(feats.unsqueeze(0))
        studies.append(float(out.study_probability[0]))
        slices.append(out.slice_probabilities[0].cpu().numpy())
    return np.asarray(studies), slices


def augment(
    hu: Tensor,
    gen: torch.Generator,
    max_shift: int,
    max_rotation_deg: float = 0.0,
    hu_jitter: float = 0.0,
    noise_hu: float = 0.0,
    per_item: bool = True,
) -> Tensor:
    """Random mirror, rotation, shift, HU offset and noise of ``(N, S, S)`` HU slices.

    Left-right mirroring; a rotation of up to ``max_rotation_deg`` and a shift of up to ``max_shift`` px (one
    bilinear resampling, air outside); a HU offset of up to ``hu_jitter`` (scanner calibration differs); Gaussian
    noise of up to ``noise_hu`` standard deviation. ``per_item`` draws for each slice; otherwise one draw for all
    (the slices of one series move together), except the noise, which is always drawn per pixel.
    """
    n = hu.shape[0] if per_item else 1
    flips = torch.rand(n, generator=gen) < 0.5
    angles = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_rotation_deg)
    shifts = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift
    offsets = (torch.rand(n, generator=gen) * 2 - 1) * hu_jitter
    sigmas = torch.rand(n, generator=gen) * noise_hu
    if not per_item:
        flips, angles, shifts = (
            flips.expand(hu.shape[0]),
            angles.expand(hu.shape[0]),
            shifts.expand(hu.shape[0], 2),
        )
        offsets, sigmas = offsets.expand(hu.shape[0]), sigmas.expand(hu.shape[0])
    x = torch.where(flips.view(-1, 1, 1), hu.flip(-1), hu)
    if max_rotation_deg > 0 or max_shift > 0:
        size = hu.shape[-1]
        cos, sin = torch.cos(angles), torch.sin(angles)
        theta = torch.stack(
            [
                torch.stack([cos, -sin, shifts[:, 1] * 2 / size], dim=1),
                torch.stack([sin, cos, shifts[:, 0] * 2 / size], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, [x.shape[0], 1, *x.shape[-2:]], align_corners=False)
        air = AIR_HU
        x = F.grid_sample((x - air).unsqueeze(1), grid, align_corners=False, padding_mode="zeros")[:, 0] + air
    if hu_jitter > 0:
        x = x + offsets.view(-1, 1, 1)
    if noise_hu > 0:
        x = x + torch.randn(x.shape, generator=gen) * sigmas.view(-1, 1, 1)
    return x


SLAB_WIDTHS = (2, 3)


def slab_around(
    hu: np.ndarray, labels: np.ndarray, index: int, width: int, gen: torch.Generator
) -> tuple[np.ndarray, float]:
    """The mean of ``width`` adjacent slices of ``hu`` that hold slice ``index``, and its label.

    The slab's place around ``index`` is drawn from ``gen`` and kept inside the series (a series shorter than
    ``width`` gives all its slices). Its label is the largest of its slices' labels (NaNs ignored): a thick
    slice shows a bleed when any part of it holds one, as :func:`viewer.model.perturb.thicken` labels it.
    """
    n = hu.shape[0]
    width = min(width, n)
    lo = max(0, index - width + 1)
    hi = min(index, n - width)
    start = lo + int(torch.randint(0, hi - lo + 1, (1,), generator=gen))
    window = slice(start, start + width)
    return hu[window].astype(np.float32).mean(0), float(np.nanmax(labels[window]))


def tilted_slice(
    hu: np.ndarray, labels: np.ndarray, index: int, slope: float
) -> tuple[np.ndarray, float] | None:
    """Slice ``index`` of ``hu`` re-cut on a plane tilted about the left-right axis, or None when its label is unknown.

    Row ``y`` of the result is taken, by linear interpolation between slices, from position
    ``index + slope · ((y + ½) / rows − ½)`` along the series: ``slope`` slices from the top row to the bottom one.
    Rows beyond half a slice outside the series are air. The label is 0 when every slice the plane passes through
    is a bleed-free slice; otherwise the plane may or may not cut the bleed and None is returned.
    """
    n, rows, _ = hu.shape
    z = index + slope * ((np.arange(rows) + 0.5) / rows - 0.5)
    inside = (z >= -0.5) & (z <= n - 0.5)
    zc = np.clip(z, 0, n - 1)
    k0 = np.floor(zc).astype(np.int64)
    k1 = np.minimum(k0 + 1, n - 1)
    spanned = labels[k0[inside].min() : k1[inside].max() + 1]
    if not np.all(spanned == 0):
        return None
    w = (zc - k0)[:, None].astype(np.float32)
    r = np.arange(rows)
    out = (1 - w) * hu[k0, r].astype(np.float32) + w * hu[k1, r].astype(np.float32)
    out[~inside] = AIR_HU
    return out, 0.0


def random_crop(length: int, min_length: int, gen: torch.Generator) -> tuple[int, int]:
    """A random contiguous ``[start, stop)`` of at least ``min_length`` slices (the whole series when shorter)."""
    if length <= min_length:
        return 0, length
    size = int(torch.randint(min_length, length + 1, (1,), generator=gen))
    start = int(torch.randint(0, length - size + 1, (1,), generator=gen))
    return start, start + size


def _cropped(series: TrainingSeries, start: int, stop: int) -> TrainingSeries:
    """The slices ``start:stop`` of a series, its study label following the slice labels it keeps."""
    labels = series.slice_labels[start:stop]
    label = int(np.nanmax(labels) > 0.5) if series.has_slice_labels else series.label
    return TrainingSeries(series.series_uid, series.hu[start:stop], labels, label)


class Trainer:
    """Runs the stages on prepared series; see the module docstring.

    Parameters
    ----------
    config:
        Shape of the network (a fresh one is built from it, or loaded from ``init``).
    settings:
        Epochs, learning rates, seed.
    train, val:
        Prepared series (:func:`viewer.model.dataset.prepare_series`); ``val`` scores every epoch and picks the
        operating threshold.
    checkpoint:
        Where to keep the resumable state.
    init, init_sha256:
        Weights to start from instead of a fresh network (for more fine-tuning of a trained model), and
        the SHA-256 of their file (part of what makes a checkpoint belong to this run).
    feature_cache:
        A folder for the frozen encoder's features of the training series (plain and mirrored), keyed by the
        encoder's tensors: a sequence stage over an encoder seen before reads them instead of computing them.
    """

    def __init__(
        self,
        config: ModelConfig,
        settings: TrainSettings,
        train: Sequence[TrainingSeries],
        val: Sequence[TrainingSeries],
        checkpoint: Path,
        device: torch.device | None = None,
        progress: ProgressFn | None = None,
        log: LogFn | None = None,
        cancel: CancelFn | None = None,
        init: dict[str, Tensor] | None = None,
        init_sha256: str = "",
        feature_cache: Path | None = None,
    ) -> None:
        if not train:
            raise ViewerError("Cannot train", "there are no training series")
        if not val:
            raise ViewerError("Cannot train", "there are no validation series")
        self.config = config
        self.settings = settings
        self.train = list(train)
        self._train_labels = [known_slice_labels(s) for s in self.train]
        self.val = list(val)
        self.checkpoint = Path(checkpoint)
        self.device = device or torch.device("cpu")
        self.progress = progress
        self.log = log or (lambda _text: None)
        self.cancel = cancel
        self.window = WindowStack(config.windows)
        torch.manual_seed(settings.seed)
        self.model = SliceGRUNet(config).to(self.device)
        if init is not None:
            self.model.load_state_dict(init)
        self.init_sha256 = init_sha256
        self.slice_probe = nn.Linear(config.feature_size, 1).to(self.device)
        if settings.precision == "bf16":
            self.model.encoder.to(memory_format=torch.channels_last)
        self.history: list[EpochRecord] = []
        self._best = _BestEpoch()
        self.feature_cache = Path(feature_cache) if feature_cache is not None else None
        # Features by (id(series), mirrored), with the series itself, for the encoder whose digest is _memo_key.
        self._memo: dict[tuple[int, bool], tuple[TrainingSeries, Tensor]] = {}
        self._memo_key = ""

    # ----------------------------------------------------------------------------------------------------------
    # Inputs

    def _windows(self, hu: Tensor) -> Tensor:
        return self.window(hu.float()).to(self.device)  # type: ignore[return-value]

    def _autocast(self) -> torch.autocast:
        """bfloat16 autocast around a training forward pass when the settings ask for it (a no-op otherwise)."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.settings.precision == "bf16"
        )

    def _augment(self, hu: Tensor, gen: torch.Generator, per_item: bool) -> Tensor:
        st = self.settings
        return augment(hu, gen, st.max_shift_px, st.max_rotation_deg, st.hu_jitter, st.noise_hu, per_item)

    def _step(self, optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
        clipped_step(optimizer, loss, self.settings.grad_clip)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise CancelledError("Training cancelled; the last finished epoch is in the checkpoint")

    def _report(self, done: int, total: int, text: str) -> None:
        if self.progress is not None:
            self.progress(done, total, text)

    # ----------------------------------------------------------------------------------------------------------
    # Stage 1: the encoder on single slices

    def _slice_pool(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        pos, neg = [], []
        for s, labels in enumerate(self._train_labels):
            for j, v in enumerate(labels):
                if np.isfinite(v):
                    (pos if v > 0.5 else neg).append((s, j))
        if not pos or not neg:
            raise ViewerError(
                "Cannot train",
                "the slice labels hold no bleed slices or no normal slices for the encoder stage",
            )
        return pos, neg

    def _encoder_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> float:
        gen = _generator(self.settings.seed, "encoder", epoch)
        pos, neg = self._slice_pool()
        pos = capped_per_series(pos, self.settings.positives_per_series, gen)
        n_neg = min(len(neg), int(round(len(pos) * self.settings.negatives_per_positive)))
        chosen_neg = [neg[int(i)] for i in torch.randperm(len(neg), generator=gen)[:n_neg]]
        items = pos + chosen_neg
        order = torch.randperm(len(items), generator=gen).tolist()
        batch = self.settings.batch_slices
        n_batches = math.ceil(len(order) / batch)
        self.model.train()
        self.slice_probe.train()
        total = 0.0
        for b in range(n_batches):
            self._check_cancel()
            picked = [items[i] for i in order[b * batch : (b + 1) * batch]]
            slices, labels = zip(*(self._encoder_item(s, j, gen) for s, j in picked), strict=True)
            hu = self._augment(torch.from_numpy(np.stack(slices)), gen, per_item=True)
            target = torch.tensor(labels, dtype=torch.float32, device=self.device)
            with self._autocast():
                logits = self.slice_probe(self.model.encoder(self._windows(hu))).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits.float(), target)
            self._step(optimizer, loss)
            total += loss.item()
            self._report(b + 1, n_batches, f"encoder epoch {epoch + 1}: loss {total / (b + 1):.3f}")
        return total / n_batches

    def _encoder_item(self, s: int, j: int, gen: torch.Generator) -> tuple[np.ndarray, float]:
        """Slice ``j`` of training series ``s`` and its label; or a thick slab around it (``slab_fraction``), or
        the slice cut on a tilted plane (``tilt_fraction``, where its label is known)."""
        st = self.settings
        series, labels = self.train[s], self._train_labels[s]
        if st.slab_fraction > 0 or st.tilt_fraction > 0:
            u = float(torch.rand(1, generator=gen))
            if u < st.slab_fraction:
                width = SLAB_WIDTHS[int(torch.randint(0, len(SLAB_WIDTHS), (1,), generator=gen))]
                return slab_around(series.hu, labels, j, width, gen)
            if u < st.slab_fraction + st.tilt_fraction:
                slope = (float(torch.rand(1, generator=gen)) * 2 - 1) * st.max_tilt_slices
                tilted = tilted_slice(series.hu, labels, j, slope)
                if tilted is not None:
                    return tilted
        return series.hu[j].astype(np.float32), float(labels[j])

    # ----------------------------------------------------------------------------------------------------------
    # Stage 2: the GRU on frozen features

    def _frozen(self) -> dict[tuple[int, bool], tuple[TrainingSeries, Tensor]]:
        """The features computed with the encoder as it is now (emptied when its tensors have changed)."""
        key = encoder_digest(self.model)
        if key != self._memo_key:
            self._memo, self._memo_key = {}, key
        return self._memo

    def _features(
        self,
        series: TrainingSeries,
        mirrored: bool = False,
        memo: dict[tuple[int, bool], tuple[TrainingSeries, Tensor]] | None = None,
    ) -> Tensor:
        """The encoder's features of one series, from ``memo`` (:meth:`_frozen`) when it holds them."""
        if memo is None:
            return encode_series(self.model, self.window, series, mirrored)
        held = memo.get((id(series), mirrored))
        if held is not None and held[0] is series:
            return held[1]
        feats = encode_series(self.model, self.window, series, mirrored)
        memo[(id(series), mirrored)] = (series, feats)
        return feats

    def _feature_bank(self) -> list[Tensor]:
        """Per training series: ``(2, n, F)`` features (plain and mirrored), also kept for later uses."""
        memo = self._frozen()
        disk = FeatureCache(self.feature_cache, self.model, self._memo_key) if self.feature_cache else None
        bank = []
        for k, series in enumerate(self.train):
            self._check_cancel()
            if disk is not None:
                both = disk.features(series).to(self.device)
                for mirrored in (False, True):
                    memo[(id(series), mirrored)] = (series, both[int(mirrored)])
            else:
                both = torch.stack([self._features(series, m, memo) for m in (False, True)])
            bank.append(both)
            self._report(k + 1, len(self.train), "computing slice features")
        return bank

    def _sequence_loss(
        self, slice_logits: Tensor, study_logit: Tensor, series: Sequence[TrainingSeries]
    ) -> Tensor:
        return sequence_loss(slice_logits, study_logit, series, self.settings.study_loss_weight)

    def _sequence_epoch(self, epoch: int, optimizer: torch.optim.Optimizer, bank: list[Tensor]) -> float:
        def on_batch(done: int, total: int, loss: float) -> None:
            self._report(done, total, f"sequence epoch {epoch + 1}: loss {loss:.3f}")
            if done < total:
                self._check_cancel()

        self._check_cancel()
        return sequence_epoch(self.model, self.train, bank, optimizer, self.settings, epoch, on_batch)

    # ----------------------------------------------------------------------------------------------------------
    # Stage 3: everything, whole series

    def _finetune_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> float:
        gen = _generator(self.settings.seed, "finetune", epoch)
        order = torch.randperm(len(self.train), generator=gen).tolist()
        self.model.train()
        for m in self.model.encoder.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()  # one series is too small and too correlated a batch for BatchNorm statistics
        total = 0.0
        for b, k in enumerate(order):
            self._check_cancel()
            series = self.train[k]
            hu = augment(
                torch.from_numpy(series.hu.astype(np.float32)),
                gen,
                self.settings.max_shift_px,
                per_item=False,
            )
            with self._autocast():
                feats = self.model.encode(self._windows(hu))
            # The GRU runs in float32 whatever the precision.
            out = self.model.forward_features(feats.float().unsqueeze(0))
            loss = self._sequence_loss(out.slice_logits, out.study_logit, [series])
            self._step(optimizer, loss)
            total += loss.item()
            self._report(b + 1, len(order), f"fine-tune epoch {epoch + 1}: loss {total / (b + 1):.3f}")
        return total / len(order)

    # ----------------------------------------------------------------------------------------------------------
    # Validation

    def reference_features(self, normal: Sequence[TrainingSeries]) -> Tensor:
        """The reference series of the current encoder: mean slice features of ``normal`` by relative position.

        See :mod:`viewer.model.reference`; the series are read as they are (not mirrored, not augmented).
        """
        feats = []
        memo = self._frozen()
        for k, series in enumerate(normal):
            self._check_cancel()
            feats.append(self._features(series, memo=memo).cpu())
            self._report(k + 1, len(normal), "building the reference series")
        return build_reference(feats)

    def predict(self, series: Sequence[TrainingSeries]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Study probabilities and per-slice probabilities of prepared series, in eval mode."""
        memo = self._frozen()
        return predict_features(self.model, (self._features(s, memo=memo) for s in series))

    def _validate(self, stage: str) -> dict[str, float]:
        labels = [known_slice_labels(s) for s in self.val]
        flat_labels = np.concatenate(labels)
        if stage == "encoder":
            self.model.eval()
            self.slice_probe.eval()
            with torch.no_grad():
                scores = np.concatenate(
                    [self.slice_probe(self._features(s)).squeeze(-1).cpu().numpy() for s in self.val]
                )
            return {"slice_auroc": auroc(flat_labels, scores)}
        probs, slice_probs = self.predict(self.val)
        study_labels = np.asarray([s.label for s in self.val])
        return {
            "study_auroc": auroc(study_labels, probs),
            "slice_auroc": auroc(flat_labels, np.concatenate(slice_probs)),
        }

    # ----------------------------------------------------------------------------------------------------------
    # Early stopping

    def _weights(self) -> dict[str, Tensor]:
        """The trained tensors (network and encoder probe), copied to the CPU."""
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()
        }
        tensors |= {
            f"probe.{k}": v.detach().cpu().contiguous().clone()
            for k, v in self.slice_probe.state_dict().items()
        }
        return tensors

    def _load_weights(self, tensors: dict[str, Tensor]) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.slice_probe.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("probe.")})

    def _track_best(self, epoch: int, val: dict[str, float]) -> bool:
        """Remember this epoch's weights when its score is the stage's best; True when the stage should stop."""
        if self.settings.patience <= 0:
            return False
        score = val.get("study_auroc", val.get("slice_auroc", float("nan")))
        best = self._best
        if math.isfinite(score) and (best.state is None or score > best.score):
            self._best = _BestEpoch(epoch, score, 0, self._weights())
            return False
        best.stale += 1
        return best.stale >= self.settings.patience

    def _carried_best(self, stage: str) -> _BestEpoch:
        """Where the best of ``stage`` starts: from nothing, except that fine-tuning must beat the weights the
        sequence stage kept (scored alike, by study AUROC), else those stay. Without this a fine-tuning epoch
        that lowered validation (0.897 → 0.874 in two wide-family runs) was kept as the stage's best."""
        best = self._best
        carried = stage == "finetune" and self.settings.epochs("sequence") > 0
        if carried and best.state is not None and math.isfinite(best.score):
            return _BestEpoch(-1, best.score, 0, best.state)
        return _BestEpoch()

    def _restore_best(self, stage: str) -> None:
        best = self._best
        assert best.state is not None
        self._load_weights(best.state)
        if best.epoch < 0:
            self.log(
                f"{stage}: no epoch beat the previous stage's weights (validation {best.score:.4f}); keeping them"
            )
        else:
            self.log(f"{stage}: keeping epoch {best.epoch + 1} (validation {best.score:.4f})")

    # ----------------------------------------------------------------------------------------------------------
    # Checkpoints

    def _optimizer(self, stage: str) -> torch.optim.Optimizer:
        if stage == "encoder":
            params = [*self.model.encoder.parameters(), *self.slice_probe.parameters()]
        elif stage == "sequence":
            return sequence_optimizer(self.model, self.settings)
        else:
            params = list(self.model.parameters())
        self.model.requires_grad_(True)
        return torch.optim.AdamW(params, lr=self.settings.lr(stage), weight_decay=self.settings.weight_decay)

    def _fingerprint(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        # Settings added later leave the fingerprint when unused, so checkpoints from before them still resume.
        if settings["precision"] == "fp32":
            del settings["precision"]
        if settings["slab_fraction"] == 0.0:
            del settings["slab_fraction"]
        if settings["tilt_fraction"] == 0.0:
            del settings["tilt_fraction"], settings["max_tilt_slices"]
        if settings["positives_per_series"] == 0:
            del settings["positives_per_series"]
        return {
            "config": self.config.to_dict(),
            "settings": settings,
            "train": [s.series_uid for s in self.train],
            "val": [s.series_uid for s in self.val],
            "init": self.init_sha256,
        }

    def _save_checkpoint(self, stage: str, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        tensors = {k: v.contiguous() for k, v in self._weights().items()}
        if self._best.state is not None:
            tensors |= {f"best.{k}": v.contiguous() for k, v in self._best.state.items()}
        opt = optimizer.state_dict()
        for idx, state in opt["state"].items():
            for key, value in state.items():
                tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        meta = {
            "format": _CHECKPOINT_FORMAT,
            "fingerprint": self._fingerprint(),
            "stage": stage,
            "epoch": epoch,
            "param_groups": opt["param_groups"],
            "history": [asdict(r) for r in self.history],
            "best": {"epoch": self._best.epoch, "score": self._best.score, "stale": self._best.stale},
        }
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})
        tmp.replace(self.checkpoint)

    def _load_checkpoint(self) -> tuple[str, int, dict[str, Tensor], dict[str, Any]] | None:
        """``(stage, last finished epoch, optimiser tensors, metadata)`` of a checkpoint from the same run, or None."""
        if not self.checkpoint.is_file():
            return None
        try:
            tensors = load_file(str(self.checkpoint))
            with safe_open(str(self.checkpoint), "pt") as fh:
                meta = json.loads((fh.metadata() or {})["state"])
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise ViewerError(
                "Cannot resume training", f"the checkpoint is not readable ({exc})", self.checkpoint
            ) from exc
        if meta.get("format") != _CHECKPOINT_FORMAT or meta.get("fingerprint") != json.loads(
            json.dumps(self._fingerprint())
        ):
            self.log(
                f"checkpoint {self.checkpoint} is from a different run (data or settings); starting over"
            )
            return None
        self._load_weights(tensors)
        self.history = [EpochRecord(**r) for r in meta["history"]]
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        marks = meta.get("best") or {}
        self._best = _BestEpoch(
            int(marks.get("epoch", -1)),
            float(marks.get("score", float("nan"))),
            int(marks.get("stale", 0)),
            best or None,
        )
        optim = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
        return str(meta["stage"]), int(meta["epoch"]), optim, meta

    @staticmethod
    def _restore_optimizer(
        optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], param_groups: list[dict[str, Any]]
    ) -> None:
        state: dict[int, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": param_groups})

    # ----------------------------------------------------------------------------------------------------------

    def run(self) -> TrainingResult:
        """Train (or continue from the checkpoint) and return the model with its operating threshold."""
        resumed = self._load_checkpoint()
        start_stage, start_epoch = 0, 0
        saved_optim: tuple[dict[str, Tensor], list[dict[str, Any]]] | None = None
        if resumed is not None:
            stage, epoch, optim, meta = resumed
            start_stage, start_epoch = STAGES.index(stage), epoch + 1
            if start_epoch >= self.settings.epochs(stage):
                start_stage, start_epoch = start_stage + 1, 0
            else:
                saved_optim = (optim, meta["param_groups"])
            self.log(f"resuming after {stage} epoch {epoch + 1} from {self.checkpoint}")
        for si in range(start_stage, len(STAGES)):
            stage = STAGES[si]
            epochs = self.settings.epochs(stage)
            if epochs <= 0:
                continue
            optimizer = self._optimizer(stage)
            if saved_optim is not None and si == start_stage:
                self._restore_optimizer(optimizer, *saved_optim)
            first = start_epoch if si == start_stage else 0
            if first == 0:
                self._best = self._carried_best(stage)
            patience = self.settings.patience
            if patience > 0 and self._best.stale >= patience:
                first = epochs  # the checkpoint was written by the epoch that stopped this stage
            bank = self._feature_bank() if stage == "sequence" and first < epochs else None
            for epoch in range(first, epochs):
                begin_epoch(optimizer, self.settings, stage, epoch)
                started = time.perf_counter()
                if stage == "encoder":
                    loss = self._encoder_epoch(epoch, optimizer)
                elif stage == "sequence":
                    assert bank is not None
                    loss = self._sequence_epoch(epoch, optimizer, bank)
                else:
                    loss = self._finetune_epoch(epoch, optimizer)
                val = self._validate(stage)
                record = EpochRecord(stage, epoch, loss, val, time.perf_counter() - started)
                self.history.append(record)
                scores = ", ".join(f"{k} {v:.4f}" for k, v in val.items())
                self.log(
                    f"{stage} epoch {epoch + 1}/{epochs}: loss {loss:.4f}, validation {scores} "
                    f"({record.seconds:.0f} s)"
                )
                stop = self._track_best(epoch, val)
                self._save_checkpoint(stage, epoch, optimizer)
                if stop:
                    self.log(f"{stage}: no better validation score for {patience} epochs; stopping")
                    break
            if patience > 0 and self._best.state is not None:
                self._restore_best(stage)
                # Marks the stage done, with its best weights: a resumed run goes on to the next stage.
                self._save_checkpoint(stage, epochs - 1, optimizer)
        self.model.requires_grad_(True)
        probs, _ = self.predict(self.val)
        study_labels = np.asarray([s.label for s in self.val])
        threshold = youden_threshold(study_labels, probs)
        self.model.config = replace(self.model.config, operating_threshold=threshold)
        validation = self._validate("finetune")
        self.log(f"operating threshold {threshold:.3f} (Youden's J on the validation series)")
        return TrainingResult(self.model.eval(), threshold, list(self.history), validation)
