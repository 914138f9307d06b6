"""Does the recurrence earn its place? The slice-GRU's sequence part against alternatives, on one shared encoder.

Training every variant end to end is out of reach on a CPU, so all of them share the slice encoder of one trained
model (``--model``) and learn only what comes after it, by stage 2 of :mod:`viewer.model.training` with its own
functions (:func:`~viewer.model.training.sequence_epoch` and friends): whole series and random runs of slices,
slice loss plus study loss, AdamW with a cosine decay, plain or mirrored features drawn per series. The frozen
features of every series (plain and mirrored) are computed once and cached on disk (safetensors, keyed by the
model's SHA-256 and the series' prepared pixels), and every variant × seed trains from the same cache.

Variants (:data:`VARIANTS`): ``pool`` (no recurrence: the slice head reads the CNN features, log-mean-exp study
score), ``bigru`` (the shipped architecture), ``bigru2`` (two stacked layers), ``bigru_attn`` (study logit from
attention-pooled GRU states) and ``bilstm`` (``torch.nn.LSTM``, for reference).

Each run is scored on the validation folder (and, only when asked, on a held-out folder) by
:mod:`viewer.model.ablation_report`: study AUROC, slice AUROC and an occlusion track's AUROC with bootstrap
intervals, parameter counts and the CPU time of the whole model per series. Each finished run is written to
``OUT/runs`` (numbers and sequence weights), so a new call with the same settings skips it.

The shared encoder was trained (and fine-tuned) together with the shipped BiGRU, which may favour ``bigru``
slightly; only the sequence parts are compared, none gets stage 3.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from viewer.errors import ViewerError
from viewer.model.ablation_report import card_section, summarise, to_markdown
from viewer.model.card import ModelCard, card_path_for, current_card, write_card
from viewer.model.config import DEFAULT_SEQUENCE, ModelConfig
from viewer.model.dataset import TrainingSeries
from viewer.model.explanations import DEFAULT_HIDDEN_METHOD, hidden_state_saliency
from viewer.model.feature_cache import FeatureCache
from viewer.model.metrics import auroc
from viewer.model.network import SliceGRUNet
from viewer.model.preprocess import Preprocessed, Preprocessor, SliceMapping, WindowStack
from viewer.model.training import (
    TrainSettings,
    begin_epoch,
    known_slice_labels,
    predict_features,
    sequence_epoch,
    sequence_optimizer,
)
from viewer.model.weights import load_weights
from viewer.model.workflow import Dataset, open_dataset, prepare_dataset
from viewer.progress import ProgressFn

LogFn = Callable[[str], None]

#: Variant name → the :class:`ModelConfig` fields it changes from the shipped architecture.
VARIANTS: dict[str, dict[str, Any]] = {
    "pool": {"sequence": "pool"},
    "bigru": {},
    "bigru2": {"num_layers": 2},
    "bigru_attn": {"sequence": "bigru_attn"},
    "bilstm": {"sequence": "bilstm"},
}
VARIANT_LABELS: dict[str, str] = {
    "pool": "slice CNN + log-mean-exp pooling, no recurrence",
    "bigru": "BiGRU, 1 layer (shipped architecture)",
    "bigru2": "BiGRU, 2 stacked layers",
    "bigru_attn": "BiGRU, attention pooling",
    "bilstm": "BiLSTM (torch.nn.LSTM), 1 layer",
}
_RUN_FORMAT = "gru-viewer-ablation-run-1"
TIMING_SERIES = 3  # validation series timed per run


def variant_config(base: ModelConfig, variant: str) -> ModelConfig:
    """``base`` (the encoder's model) with the sequence part of ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return replace(base, **{"sequence": DEFAULT_SEQUENCE, "num_layers": 1, **VARIANTS[variant]})


def parameter_counts(model: SliceGRUNet) -> dict[str, int]:
    """Parameters of the whole model, of its encoder and of the rest (the sequence part, heads included)."""
    total = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.encoder.parameters())
    return {"total": total, "encoder": encoder, "sequence": total - encoder}


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def normal_slice_feature(series: Sequence[TrainingSeries], bank: Sequence[Tensor]) -> Tensor:
    """``(F,)``: the mean plain feature of every slice known to be normal (the occlusion track's stand-in)."""
    picked = []
    for one, feats in zip(series, bank, strict=True):
        labels = known_slice_labels(one)
        normal = torch.from_numpy(np.isfinite(labels) & (labels < 0.5))
        if normal.any():
            picked.append(feats[0][normal.to(feats.device)])
    if not picked:
        raise ViewerError("Cannot run the ablation", "the training series hold no slice known to be normal")
    return torch.cat(picked).mean(0)


@torch.no_grad()
def occlusion_track(model: SliceGRUNet, features: Tensor, normal: Tensor) -> np.ndarray:
    """Per slice: study logit minus the study logit with that slice's feature replaced by ``normal``.

    Defined the same way for every variant (it reads nothing but the study logit), unlike the product's
    hidden-state track, which needs the GRU's states.
    """
    model.eval()
    n = features.shape[0]
    occluded = features.unsqueeze(0).repeat(n, 1, 1)
    occluded[torch.arange(n), torch.arange(n)] = normal.to(features)
    full = model.forward_features(features.unsqueeze(0)).study_logit[0]
    return (full - model.forward_features(occluded).study_logit).cpu().numpy().astype(np.float64)


def state_difference_track(model: SliceGRUNet, features: Tensor) -> np.ndarray:
    """The product's hidden-state track (state difference against the model's reference series), both directions.

    Only for the variants with a gated GRU; it reads only the features and the slice count of the series.
    """
    n = features.shape[0]
    mapping = SliceMapping(n, np.arange(n), np.arange(n) + 1, 5.0, 5.0)
    inputs = Preprocessed(
        torch.empty(0),
        mapping,
        np.empty((0, 0, 0), np.float32),
        (5.0, 1.0, 1.0),
        Preprocessor.from_config(model.config),
    )
    model.eval()
    with torch.no_grad():
        output = model.forward_features(features.unsqueeze(0))
    expl = hidden_state_saliency(model, inputs, output=output, method=DEFAULT_HIDDEN_METHOD)
    return np.asarray(expl.slice_values["combined"], dtype=np.float64)


def _json_labels(labels: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in labels]


def score_series(
    model: SliceGRUNet, series: Sequence[TrainingSeries], features: Sequence[Tensor], normal: Tensor
) -> list[dict[str, Any]]:
    """Per series: label, study and slice probabilities, slice labels and the tracks (JSON-ready)."""
    studies, slices = predict_features(model, features)
    out = []
    for k, (one, feats) in enumerate(zip(series, features, strict=True)):
        entry: dict[str, Any] = {
            "series_uid": one.series_uid,
            "label": int(one.label),
            "study_probability": float(studies[k]),
            "slice_probabilities": [float(v) for v in slices[k]],
            "slice_labels": _json_labels(known_slice_labels(one)),
        }
        if one.label == 1:
            entry["occlusion"] = occlusion_track(model, feats, normal).tolist()
            if model.config.has_gated_gru:
                entry["state_difference"] = state_difference_track(model, feats).tolist()
        out.append(entry)
    return out


def cpu_seconds_per_series(model: SliceGRUNet, inputs: Sequence[Tensor]) -> dict[str, float]:
    """CPU seconds per series of the whole model (encoder included) and of its sequence part, on one thread.

    A CPU copy of the model in eval mode runs each windowed series ``(n, C, S, S)`` once after a warm-up; the
    sequence part (which takes milliseconds) is timed over ten repeats. Threads are pinned to one so the variants
    compare alike on any machine, and restored afterwards.
    """
    if not inputs:
        return {"model": float("nan"), "sequence": float("nan")}
    cpu = copy.deepcopy(model).to("cpu").eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            cpu(inputs[0])
            started = time.process_time()
            feats = [cpu.encode(x).unsqueeze(0) for x in inputs]
            for f in feats:
                cpu.forward_features(f)
            whole = (time.process_time() - started) / len(inputs)
            repeats = 10
            started = time.process_time()
            for _ in range(repeats):
                for f in feats:
                    cpu.forward_features(f)
            sequence = (time.process_time() - started) / (repeats * len(inputs))
    finally:
        torch.set_num_threads(threads)
    return {"model": whole, "sequence": sequence}


@dataclass
class AblationData:
    """What every run shares: the encoder, the prepared series, their cached features and the timing inputs."""

    encoder: SliceGRUNet
    card: ModelCard
    train: list[TrainingSeries]
    train_bank: list[Tensor]
    val: list[TrainingSeries]
    val_features: list[Tensor]
    normal: Tensor
    timing_inputs: list[Tensor]
    descriptions: dict[str, str]
    held_out: list[TrainingSeries] | None = None
    held_out_features: list[Tensor] | None = None

    def fingerprint(self, variant: str, seed: int, settings: TrainSettings) -> dict[str, Any]:
        return {
            "format": _RUN_FORMAT,
            "encoder_sha256": self.card.sha256,
            "variant": variant,
            "config": variant_config(self.card.config, variant).to_dict(),
            "settings": asdict(replace(settings, seed=seed)),
            "train": _digest([s.series_uid for s in self.train]),
            "val": _digest([s.series_uid for s in self.val]),
        }


def prepare_ablation(
    model_path: str | Path,
    data: Sequence[str | Path],
    val: str | Path,
    cache_folder: Path,
    *,
    held_out: str | Path | None = None,
    device: torch.device | None = None,
    series_cache: Path | None = None,
    timing_series: int = TIMING_SERIES,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> AblationData:
    """Load the encoder's model, prepare the series of every folder and compute (or read) their features."""
    log = log or (lambda _text: None)
    device = device or torch.device("cpu")
    encoder, card = load_weights(model_path, device=device)
    config = card.config

    def prepared(folder: str | Path) -> tuple[Dataset, list[TrainingSeries]]:
        dataset = open_dataset(folder, progress=progress)
        return dataset, prepare_dataset(dataset, config, series_cache, progress, log)

    train_sets = [prepared(folder) for folder in data]
    train = [s for _ds, series in train_sets for s in series]
    val_set, val_series = prepared(val)
    if not train or not val_series:
        raise ViewerError("Cannot run the ablation", "no readable training or validation series")
    cache = FeatureCache(cache_folder, encoder, card.sha256)
    started = time.perf_counter()
    train_bank = [f.to(device) for f in cache.bank(train, progress)]
    val_features = [f[0].to(device) for f in cache.bank(val_series, progress)]
    log(
        f"features of {len(train)} training and {len(val_series)} validation series ready "
        f"({time.perf_counter() - started:.0f} s; cache {cache.folder})"
    )
    window = WindowStack(config.windows)
    timing = [window(torch.from_numpy(s.hu.astype(np.float32))) for s in val_series[:timing_series]]
    result = AblationData(
        encoder=encoder,
        card=card,
        train=train,
        train_bank=train_bank,
        val=val_series,
        val_features=val_features,
        normal=normal_slice_feature(train, train_bank),
        timing_inputs=[t for t in timing if isinstance(t, Tensor)],
        descriptions={
            "train": "; ".join(ds.description for ds, _s in train_sets),
            "val": val_set.description,
        },
    )
    if held_out is not None:
        held_set, held_series = prepared(held_out)
        if not held_series:
            raise ViewerError("Cannot run the ablation", "no readable held-out series", Path(held_out))
        shared = {s.series_uid for s in held_series} & {s.series_uid for s in [*train, *val_series]}
        if shared:
            log(f"warning: {len(shared)} held-out series are also training or validation series")
        result.held_out = held_series
        result.held_out_features = [f[0].to(device) for f in cache.bank(held_series, progress)]
        result.descriptions["held_out"] = held_set.description
    return result


def _run_paths(out: Path, variant: str, seed: int) -> tuple[Path, Path]:
    stem = out / "runs" / f"{variant}-seed{seed}"
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def _build(data: AblationData, variant: str, seed: int) -> SliceGRUNet:
    """The variant's network, initialised as :class:`~viewer.model.training.Trainer` does, with the shared encoder."""
    torch.manual_seed(seed)
    model = SliceGRUNet(variant_config(data.card.config, variant))
    model.encoder.load_state_dict(data.encoder.encoder.state_dict())
    model.reference_features = data.encoder.reference_features.detach().clone()
    return model.to(next(data.encoder.parameters()).device)


def _sequence_state(model: SliceGRUNet) -> dict[str, Tensor]:
    return {
        k: v.detach().to("cpu").contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("encoder.")
    }


def train_run(
    data: AblationData,
    variant: str,
    seed: int,
    settings: TrainSettings,
    log: LogFn | None = None,
) -> tuple[SliceGRUNet, dict[str, Any]]:
    """Stage 2 of the training recipe for one variant and seed; returns the model and the run's record."""
    log = log or (lambda _text: None)
    settings = replace(settings, seed=seed)
    model = _build(data, variant, seed)
    optimizer = sequence_optimizer(model, settings)
    history = []
    wall, cpu = time.perf_counter(), time.process_time()
    for epoch in range(settings.sequence_epochs):
        started = time.perf_counter()
        begin_epoch(optimizer, settings, "sequence", epoch)
        loss = sequence_epoch(model, data.train, data.train_bank, optimizer, settings, epoch)
        probs, _slices = predict_features(model, data.val_features)
        val_auroc = auroc(np.asarray([s.label for s in data.val]), probs)
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "loss": loss, "val_study_auroc": val_auroc, "seconds": seconds})
        log(
            f"{variant} seed {seed} epoch {epoch + 1}/{settings.sequence_epochs}: loss {loss:.4f}, "
            f"validation study AUROC {val_auroc:.4f} ({seconds:.1f} s)"
        )
    model.eval()
    record: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "label": VARIANT_LABELS[variant],
        "fingerprint": data.fingerprint(variant, seed, settings),
        "parameters": parameter_counts(model),
        "history": history,
        "train_seconds": time.perf_counter() - wall,
        "train_cpu_seconds": time.process_time() - cpu,
        "cpu_seconds_per_series": cpu_seconds_per_series(model, data.timing_inputs),
        "val": {
            "data": data.descriptions["val"],
            "series": score_series(model, data.val, data.val_features, data.normal),
        },
    }
    return model, record


def _load_run(path: Path, weights: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file() or not weights.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return None
    return record


def _restore(data: AblationData, variant: str, seed: int, weights: Path) -> SliceGRUNet:
    model = _build(data, variant, seed)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ViewerError(
            "Cannot resume the ablation", f"the run's weights are unreadable ({exc})", weights
        ) from exc
    model.load_state_dict(
        {**model.state_dict(), **{k: v.to(model.slice_head.weight.device) for k, v in tensors.items()}}
    )
    return model.eval()


def _write_run(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_all(
    data: AblationData,
    out: Path,
    variants: Sequence[str],
    seeds: Sequence[int],
    settings: TrainSettings,
    log: LogFn | None = None,
) -> list[dict[str, Any]]:
    """Every variant × seed, skipping those already in ``out/runs`` with the same fingerprint."""
    log = log or (lambda _text: None)
    records = []
    for variant in variants:
        variant_config(data.card.config, variant)  # refuses unknown names before any training
    for variant in variants:
        for seed in seeds:
            path, weights = _run_paths(out, variant, seed)
            fingerprint = data.fingerprint(variant, seed, settings)
            record = _load_run(path, weights, fingerprint)
            model: SliceGRUNet | None = None
            if record is not None:
                log(f"{variant} seed {seed}: done before ({path.name}), skipped")
            else:
                model, record = train_run(data, variant, seed, settings, log)
                path.parent.mkdir(parents=True, exist_ok=True)
                save_file(
                    _sequence_state(model), str(weights), metadata={"variant": variant, "seed": str(seed)}
                )
                _write_run(record, path)
            if data.held_out is not None and data.held_out_features is not None:
                where = data.descriptions["held_out"]
                held = record.get("held_out") or {}
                if held.get("data") != where or held.get("series_uids") != _digest(
                    [s.series_uid for s in data.held_out]
                ):
                    model = model or _restore(data, variant, seed, weights)
                    record["held_out"] = {
                        "data": where,
                        "series_uids": _digest([s.series_uid for s in data.held_out]),
                        "series": score_series(model, data.held_out, data.held_out_features, data.normal),
                    }
                    _write_run(record, path)
            records.append(record)
    return records


@dataclass
class AblationOutput:
    """Where the ablation wrote its results, and the report itself (``setup``, ``val``, ``held_out``)."""

    report: dict[str, Any]
    json_path: Path
    markdown_path: Path


def run_ablation(
    model_path: str | Path,
    data: Sequence[str | Path],
    val: str | Path,
    out: str | Path,
    *,
    held_out: str | Path | None = None,
    variants: Sequence[str] = tuple(VARIANTS),
    seeds: Sequence[int] = (0, 1),
    settings: TrainSettings | None = None,
    rounds: int = 1000,
    device: torch.device | None = None,
    series_cache: Path | None = None,
    update_card: bool = False,
    command: str = "",
    timing_series: int = TIMING_SERIES,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> AblationOutput:
    """Train and score every variant × seed (resuming from ``out``) and write ``out/ablation.json`` and ``.md``.

    ``held_out`` is scored only when given, and reported apart. ``update_card`` writes the validation table into
    the card of ``model_path`` (its weights do not change). ``timing_series``: how many validation series the
    CPU time per series is measured on.
    """
    settings = settings or TrainSettings()
    if not variants or not seeds:
        raise ViewerError("Cannot run the ablation", "give at least one variant and one seed")
    for variant in variants:
        if variant not in VARIANTS:
            raise ViewerError(
                "Cannot run the ablation", f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shared = prepare_ablation(
        model_path,
        data,
        val,
        out / "features",
        held_out=held_out,
        device=device,
        series_cache=series_cache,
        timing_series=timing_series,
        progress=progress,
        log=log,
    )
    records = run_all(shared, out, variants, seeds, settings, log)
    card = shared.card
    setup = {
        "description": (
            f"Encoder: {card.name} {card.version} (sha256 {card.sha256[:12]}…), shared and frozen. Each variant's "
            f"sequence part trained by stage 2 of the training recipe on its cached features: "
            f"{settings.sequence_epochs} epoch(s), seeds {', '.join(str(s) for s in seeds)}, no fine-tuning stage "
            f"(the encoder was fine-tuned with the shipped BiGRU, which may favour bigru)."
        ),
        "train": shared.descriptions["train"],
        "timing": (
            f"CPU time: one thread, the whole model (encoder included) on {len(shared.timing_inputs)} validation "
            f"series at {card.config.input_size} px after a warm-up; the sequence part alone over ten repeats."
        ),
        "encoder_sha256": card.sha256,
        "settings": asdict(settings),
        "variants": list(variants),
        "seeds": list(seeds),
        "command": command,
    }
    report: dict[str, Any] = {"setup": setup, "val": summarise(records, "val", rounds=rounds)}
    if held_out is not None:
        report["held_out"] = summarise(records, "held_out", rounds=rounds)
    json_path, markdown_path = out / "ablation.json", out / "ablation.md"
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    markdown_path.write_text(to_markdown(report), encoding="utf-8")
    if update_card:
        card = current_card(model_path, card)
        card.ablation = card_section(report)
        write_card(card, card_path_for(model_path))
    return AblationOutput(report, json_path, markdown_path)
