"""``gru-viewer train``, ``evaluate``, ``threshold`` and ``reference`` as plain functions: folders in, weights,
card and metrics out."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewer.errors import ViewerError
from viewer.model.card import ModelCard, card_path_for, current_card, write_card
from viewer.model.config import ModelConfig
from viewer.model.dataset import (
    LabelledStack,
    TrainingSeries,
    default_labels_path,
    find_labelled,
    iter_volumes,
    prepare_series,
    read_labels,
    recentred,
)
from viewer.model.device import describe_hardware
from viewer.model.evaluation import EvaluationReport, evaluate_series
from viewer.model.explanations import DEFAULT_PIXEL_METHOD, DEFAULT_PIXEL_TARGET
from viewer.model.hu_centring import reference_from
from viewer.model.network import SliceGRUNet
from viewer.model.operating_point import (
    ScoredSet,
    ThresholdChoice,
    choose_threshold,
    record_threshold,
    study_probabilities,
)
from viewer.model.preprocess import Preprocessor
from viewer.model.reference import build_reference
from viewer.model.training import STAGES, Trainer, TrainSettings
from viewer.model.training_history import DATA_JOIN, FURTHER_TRAINING
from viewer.model.weights import attach_reference, load_weights, save_weights
from viewer.progress import ProgressFn

LogFn = Callable[[str], None]

_RECIPE = (
    "Three stages (viewer/model/training.py): the slice CNN alone on balanced single slices; the bidirectional "
    "GRU and slice head on frozen CNN features of whole series and of random runs of at least 16 slices (slice "
    "loss + study loss); then everything at a low learning rate on whole series. Augmentation: left-right "
    "mirroring, rotations up to {s.max_rotation_deg:g}°, shifts up to {s.max_shift_px} px, HU offsets up to "
    "{s.hu_jitter:g} HU, added noise up to {s.noise_hu:g} HU; gradient norm clipped at {s.grad_clip:g}; AdamW with a cosine learning-rate decay per stage; fixed seeds. With a patience above 0 "
    "(settings), a stage stops after that many epochs without a better validation score and keeps its best "
    "epoch. The operating threshold maximises Youden's J on the validation series."
)


_SLABS = (
    " For {share:g} % of the slice CNN's training slices, the mean of 2 or 3 adjacent slices around them (a thick "
    "slab), labelled a bleed slice when any of those slices is one."
)


_TILTS = (
    " For {share:g} % of them, the slice re-cut on a plane tilted about the left-right axis by up to {slices:g} "
    "slices from top row to bottom (a tilted gantry), where that plane passes through bleed-free slices only "
    "(labelled normal)."
)


_CAP = (
    " Each encoder epoch takes at most {cap} bleed slices of a series, drawn afresh each epoch, so that large "
    "bleeds spanning many slices do not outnumber small ones."
)


def recipe(settings: TrainSettings) -> str:
    """The training recipe in words, with the augmentation ranges of ``settings``."""
    text = _RECIPE.format(s=settings)
    if settings.slab_fraction > 0:
        text += _SLABS.format(share=100 * settings.slab_fraction)
    if settings.tilt_fraction > 0:
        text += _TILTS.format(share=100 * settings.tilt_fraction, slices=settings.max_tilt_slices)
    if settings.positives_per_series > 0:
        text += _CAP.format(cap=settings.positives_per_series)
    return text


LIMITATIONS = (
    "Learned from synthetic phantoms only: real scans hold anatomy, artefacts (beam hardening, motion, metal) "
    "and bleed shapes the phantoms lack, so these numbers say nothing about patients. The phantoms' "
    "calcifications (choroid plexus, pineal, falx, basal ganglia) are simple bright blobs, and bright ones can "
    "still be called a bleed; contrast and post-operative changes were never seen. Slices are read at the "
    "model's input size, so bleeds a few millimetres across are the hardest to find. Pixel saliency shows where "
    "the gradient of the slice score is large, not proof of a finding; gate activations describe the network, "
    "not anatomy."
)


@dataclass
class Dataset:
    """Labelled series found in one folder, with a description for the model card."""

    folder: Path
    labels_path: Path
    items: list[LabelledStack]
    missing: list[str]
    description: str
    family: str = ""  # the phantom family (classic, wide, other); "" for other data


def _phantom_doc(labels_path: Path) -> dict[str, Any]:
    """The parsed labels file when it is the phantoms' (:mod:`viewer.synth`), else ``{}``."""
    try:
        doc = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and doc.get("format") == "gru-viewer-phantom-labels" else {}


def phantom_family(doc: dict[str, Any]) -> str:
    """The phantom family of a parsed phantom labels file (``classic`` when it predates families), or ``""``."""
    return str(doc.get("family", "classic")) if doc else ""


def describe(labels_path: Path, n_series: int, n_bleed: int, doc: dict[str, Any] | None = None) -> str:
    """One line saying what a dataset is; phantom sets name the command that rebuilds them.

    ``doc`` is the labels file already parsed by :func:`_phantom_doc` (a phantom set's file runs to megabytes).
    """
    doc = _phantom_doc(labels_path) if doc is None else doc
    base = f"{n_series} series ({n_bleed} with a bleed)"
    if doc:
        seed, matrix = doc.get("seed"), doc.get("matrix")
        family = phantom_family(doc)
        if family == "classic":
            return (
                f"{base}, synthetic head-CT phantoms, seed {seed}, {matrix}×{matrix} matrix, 5 mm slices "
                f"(`gru-viewer demo-data DIR --studies {n_series} --seed {seed} --matrix {matrix}`)"
            )
        slices, option = "", ""
        if doc.get("slice_mm") is not None:
            slices, option = f", {doc['slice_mm']:g} mm slices", f" --slice-mm {doc['slice_mm']:g}"
        return (
            f"{base}, synthetic head-CT phantoms of the {family} family, seed {seed}, {matrix}×{matrix} matrix"
            f"{slices} (`gru-viewer demo-data DIR --family {family} --studies {n_series} --seed {seed} "
            f"--matrix {matrix}{option}`)"
        )
    return f"{base} from {labels_path.parent.name}"


def open_dataset(
    folder: str | Path, labels: str | Path | None = None, progress: ProgressFn | None = None
) -> Dataset:
    """Read the labels (``folder/labels.json`` by default) and find their series under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ViewerError("Cannot open the dataset", "the folder does not exist", folder)
    labels_path = Path(labels) if labels is not None else default_labels_path(folder)
    found, missing = find_labelled(folder, read_labels(labels_path), progress=progress)
    if not found:
        raise ViewerError("Cannot open the dataset", "none of the labelled series was found in it", folder)
    n_bleed = sum(item.label.label for item in found)
    doc = _phantom_doc(labels_path)
    return Dataset(
        folder,
        labels_path,
        found,
        missing,
        describe(labels_path, len(found), n_bleed, doc),
        phantom_family(doc),
    )


def prepare_dataset(
    dataset: Dataset,
    config: ModelConfig,
    cache: Path | None = None,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> list[TrainingSeries]:
    """The readable series of ``dataset`` prepared for a model of ``config`` (re-centred in HU when the model
    is); the rest are logged as skipped."""
    log = log or (lambda _text: None)
    for message in dataset.missing:
        log(f"skipped: {message}")
    series, failed = prepare_series(
        dataset.items, Preprocessor.from_config(config), config.input_size, cache, progress
    )
    for message in failed:
        log(f"skipped: {message}")
    return recentred(series, config.centring) if config.centring is not None else series


def default_checkpoint(out: str | Path) -> Path:
    """Where a training run writing ``out`` keeps its resumable state: ``OUT.checkpoint.safetensors``."""
    return Path(out).with_suffix(".checkpoint.safetensors")


def split_validation(
    series: Sequence[TrainingSeries], fraction: float, seed: int
) -> tuple[list[TrainingSeries], list[TrainingSeries]]:
    """A seeded split by series, stratified by study label, with at least one series of each label held back."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("the validation fraction lies in (0, 1)")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in (0, 1):
        members = [s for s in series if s.label == label]
        order = rng.permutation(len(members))
        n_val = max(1, int(round(fraction * len(members)))) if len(members) > 1 else 0
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return train, val


def train_from_folders(
    data: Sequence[str | Path],
    out: str | Path,
    *,
    labels: Sequence[str | Path | None] | None = None,
    val_data: str | Path | Sequence[str | Path] | None = None,
    val_labels: str | Path | Sequence[str | Path | None] | None = None,
    val_fraction: float = 0.15,
    settings: TrainSettings | None = None,
    config: ModelConfig | None = None,
    name: str = "slice_gru",
    version: str = "0.1.0",
    device: torch.device | None = None,
    checkpoint: str | Path | None = None,
    cache: str | Path | None = None,
    init: str | Path | None = None,
    hu_tolerance: float | None = None,
    command: str = "",
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> ModelCard:
    """Train on the labelled series under ``data`` and write ``out`` (safetensors) with its card.

    The card records ``command`` (the portable command line, :func:`portable_command`), the hardware and the
    seconds the epochs took, so a reader knows how the weights were made and what it cost.

    ``hu_tolerance`` turns on per-series HU re-centring (:mod:`viewer.model.hu_centring`) with the reference
    taken from the training series; a model initialised from one that has it keeps its reference, and training
    reads every series re-centred as the viewer will.

    ``val_data`` may name several folders (e.g. one per phantom family): their series are pooled, for the
    validation scores that pick each stage's best epoch and for the operating threshold.

    ``init`` starts from trained weights (checked against their card) instead of a fresh network; their
    architecture wins over ``config`` except for the input size, and the new card keeps their training history.
    The encoder is convolutional with global pooling, so its weights read a slice of any size: training them
    on at a larger ``config.input_size`` gives the model finer detail without starting over.
    """
    settings = settings or TrainSettings()
    init_model, init_card = load_weights(init) if init is not None else (None, None)
    if init_card is not None:
        size = config.input_size if config is not None else init_card.config.input_size
        config = replace(init_card.config, input_size=size)
    config = config or ModelConfig()
    if hu_tolerance is not None:
        config = replace(config, hu_reference=None)  # a new reference from this run's series, set below
    log = log or (lambda _text: None)
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ViewerError("Cannot train", "the output file must end in .safetensors", out)
    labels = list(labels) if labels is not None else [None] * len(data)
    if len(labels) != len(data):
        raise ViewerError("Cannot train", "give one labels file per data folder, or none")
    cache_dir = Path(cache) if cache is not None else None

    def prepared(ds: Dataset) -> list[TrainingSeries]:
        return prepare_dataset(ds, config, cache_dir, progress, log)

    train_sets = [open_dataset(folder, lab, progress) for folder, lab in zip(data, labels, strict=True)]
    train_series = [s for ds in train_sets for s in prepared(ds)]
    if val_data is not None:
        val_folders = [val_data] if isinstance(val_data, str | Path) else list(val_data)
        if val_labels is None or isinstance(val_labels, str | Path):
            val_label_files = [val_labels] + [None] * (len(val_folders) - 1)
        else:
            val_label_files = list(val_labels)
        if len(val_label_files) != len(val_folders):
            raise ViewerError("Cannot train", "give one labels file per validation folder, or none")
        val_sets = [
            open_dataset(f, lab, progress) for f, lab in zip(val_folders, val_label_files, strict=True)
        ]
        val_series = [s for ds in val_sets for s in prepared(ds)]
        val_text = "; ".join(ds.description for ds in val_sets)
    else:
        train_series, val_series = split_validation(train_series, val_fraction, settings.seed)
        val_text = f"{len(val_series)} series drawn from the training folders (seed {settings.seed})"
    if hu_tolerance is not None:
        reference = reference_from(s.hu for s in train_series)
        config = replace(config, hu_reference=reference, hu_tolerance=hu_tolerance)
        train_series = recentred(train_series, config.centring)  # type: ignore[arg-type]
        val_series = recentred(val_series, config.centring)  # type: ignore[arg-type]
    if config.centring is not None:
        left = config.centring.tolerance
        log(
            f"HU re-centring: soft-tissue median to {config.centring.reference:.1f} HU"
            + (f", offsets under {left:g} HU left alone" if left else " in every series")
        )
    log(f"training on {len(train_series)} series, validating on {len(val_series)}")
    trainer = Trainer(
        config,
        settings,
        train_series,
        val_series,
        Path(checkpoint) if checkpoint is not None else default_checkpoint(out),
        device=device,
        progress=progress,
        log=log,
        init=init_model.state_dict() if init_model is not None else None,
        init_sha256=init_card.sha256 if init_card is not None else "",
        feature_cache=cache_dir / "features" if cache_dir is not None else None,
    )
    result = trainer.run()
    normal = [s for s in train_series if s.label == 0]
    reference = trainer.reference_features(normal) if normal else None
    if reference is None:
        log(
            "no training series without a bleed: no reference series (the hidden-state track uses each series' mean)"
        )
    run_data = [ds.description for ds in train_sets]
    if val_data is None:
        run_data[-1] += f" (less the {len(val_series)} validation series)"
    training_text = DATA_JOIN.join(run_data)
    history: dict[str, object] = {}
    if init_card is not None:
        training_text = f"{init_card.training_data}{FURTHER_TRAINING}{training_text}"
        history = {
            "initialised_from": {
                "name": init_card.name,
                "version": init_card.version,
                "sha256": init_card.sha256,
                "input_size": init_card.config.input_size,
                "training": init_card.training,
            }
        }
    card = save_weights(
        result.model.cpu(),
        out,
        name=name,
        version=version,
        training_data=training_text,
        operating_threshold=result.threshold,
        limitations=LIMITATIONS,
        training={
            "recipe": recipe(settings),
            "settings": asdict(settings),
            "epochs": {stage: settings.epochs(stage) for stage in STAGES},
            "validation_data": val_text,
            "validation": result.validation,
            "device": str(device or "cpu"),
            "hardware": describe_hardware(device or torch.device("cpu")),
            "families": sorted({ds.family or "unlabelled" for ds in train_sets}),
            "data": run_data,
            "epoch_seconds": round(sum(r.seconds for r in result.history), 1),
            **({"command": command} if command else {}),
            **history,
        },
        reference=reference,
        reference_data=f"the {len(normal)} series without a bleed among the training series",
    )
    written = ", ".join(filter(None, [card_path_for(out).name, card.reference.get("file")]))
    log(f"wrote {out} and {written} (sha256 {card.sha256[:12]}…)")
    return card


def evaluate_folder(
    model_path: str | Path,
    data: str | Path,
    *,
    labels: str | Path | None = None,
    pixel_method: str = DEFAULT_PIXEL_METHOD,
    pixel_target: str = DEFAULT_PIXEL_TARGET,
    device: torch.device | None = None,
    update_card: bool = False,
    add_to_card: str | None = None,
    cross_generator_to: str | Path | None = None,
    command: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[EvaluationReport, ModelCard, Dataset]:
    """Score the weights at ``model_path`` on a labelled folder; with ``update_card`` the card takes the numbers.

    The card then also records the command (paths made portable, :func:`portable_command`) and how many times the
    same data has been looked at (``evaluation['looks']``: by the model's metrics, and by the hidden-state track
    of each method), counting on from what the card said when it was evaluated on the same data before.
    ``add_to_card`` (a title) records the numbers as a further evaluation instead, replacing an earlier one of the
    same data and counting its looks on. ``cross_generator_to`` (other weights) records the numbers as a row of
    *that* card's cross-generator table (:func:`add_cross_generator_row`), leaving this model's card alone.
    """
    target = load_weights(cross_generator_to, device="cpu")[1] if cross_generator_to is not None else None
    model, card = load_weights(model_path, device=device or "cpu")
    dataset = open_dataset(data, labels, progress)
    report = evaluate_series(
        model,
        dataset.items,
        threshold=card.operating_threshold,
        pixel_method=pixel_method,
        pixel_target=pixel_target,
        progress=progress,
    )
    if update_card or add_to_card:
        card = current_card(model_path, card)
        if update_card:
            previous = card.evaluation
        else:
            previous = next((e for e in card.evaluations if e.get("data") == dataset.description), {})
        same_data = previous.get("data") == dataset.description
        looks = {str(k): int(v) for k, v in dict(previous.get("looks", {})).items()} if same_data else {}
        for key in ("model", f"hidden_track_{report.hidden_method}"):
            looks[key] = looks.get(key, 0) + 1
        entry = {
            "data": dataset.description,
            "pixel_method": pixel_method,
            "pixel_target": pixel_target,
            "hidden_method": report.hidden_method,
            "command": portable_command(command) if command else "",
            "looks": looks,
            "failed": list(report.failed),
            "by_group": [r.to_dict() for r in report.by_group],
        }
        if update_card:
            card.metrics = dict(report.metrics)
            card.evaluation = entry
        else:
            entry = {"title": add_to_card, **entry, "metrics": dict(report.metrics)}
            card.evaluations = [e for e in card.evaluations if e.get("data") != dataset.description] + [entry]
        write_card(card, card_path_for(model_path))
    if cross_generator_to is not None and target is not None:
        add_cross_generator_row(cross_generator_to, target, card, dataset, report, command)
    return report, card, dataset


def threshold_from_folders(
    model_path: str | Path,
    folders: Sequence[str | Path],
    *,
    labels: Sequence[str | Path | None] | None = None,
    device: torch.device | None = None,
    update_card: bool = False,
    version: str | None = None,
    command: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[ThresholdChoice, ModelCard, list[str]]:
    """Choose the operating threshold of the weights at ``model_path`` on validation folders (one per family).

    See :mod:`viewer.model.operating_point`. Returns the choice, the card (rewritten with the threshold when
    ``update_card``, and then given ``version`` when one is given) and the labelled series that were not found
    or could not be scored.
    """
    labels = list(labels) if labels is not None else [None] * len(folders)
    if len(labels) != len(folders):
        raise ViewerError("Cannot choose a threshold", "give one labels file per validation folder, or none")
    if version and not update_card:
        raise ViewerError(
            "Cannot choose a threshold", "a new model version is written only with --update-card"
        )
    model, card = load_weights(model_path, device=device or "cpu")
    sets: list[ScoredSet] = []
    failed: list[str] = []
    for folder, lab in zip(folders, labels, strict=True):
        dataset = open_dataset(folder, lab, progress)
        y, p, bad = study_probabilities(model, dataset.items, progress=progress)
        sets.append(ScoredSet(dataset.description, y, p))
        failed += [*dataset.missing, *bad]
    choice = choose_threshold(sets, card.operating_threshold)
    if update_card:
        card = record_threshold(
            model_path,
            card,
            choice,
            version=version,
            command=portable_command(command) if command else "",
        )
    return choice, card, failed


def _families_in(training_data: str) -> list[str]:
    """The phantom families a card's training-data text names (cards from before ``training['families']``):
    the text is :func:`describe`'s, so a family is "of the NAME family" and the classic one has no name."""
    found = set(re.findall(r"phantoms of the (\w+) family", training_data))
    if "synthetic head-CT phantoms, seed" in training_data:
        found.add("classic")
    return sorted(found) or ["unstated"]


def add_cross_generator_row(
    weights: str | Path,
    target: ModelCard,
    scored: ModelCard,
    dataset: Dataset,
    report: EvaluationReport,
    command: Sequence[str] | None = None,
) -> ModelCard:
    """Add (or replace) the row of model ``scored`` on ``dataset`` in the cross-generator table of ``weights``'
    card (``target``, as loaded before the evaluation), and write that card.

    A row says which families the scored model was trained on and whether it started from scratch (from its own
    card), which family it was scored on, and the numbers at the scored model's own operating threshold.
    """
    card = current_card(weights, target)
    parent = scored.training.get("initialised_from")
    started = f"{parent.get('name')} {parent.get('version')}" if isinstance(parent, dict) else "scratch"
    metrics = report.metrics
    row = {
        "model": f"{scored.name} {scored.version}",
        "sha256": scored.sha256,
        "started_from": started,
        "trained_family": ", ".join(scored.training.get("families") or _families_in(scored.training_data)),
        "trained_on": scored.training_data,
        "selected_on": ", ".join(_families_in(str(scored.training.get("validation_data", "")))),
        "scored_family": dataset.family or "unlabelled",
        "data": dataset.description,
        "threshold": scored.operating_threshold,
        "metrics": {
            k: float(metrics[k])
            for k in ("study_auroc", "slice_auroc", "sensitivity", "specificity")
            if k in metrics
        },
        "command": portable_command(command) if command else "",
    }
    card.cross_generator = [
        r for r in card.cross_generator if (r.get("sha256"), r.get("data")) != (row["sha256"], row["data"])
    ] + [row]
    write_card(card, card_path_for(weights))
    return card


def reference_from_folders(
    model_path: str | Path,
    data: Sequence[str | Path],
    *,
    labels: Sequence[str | Path | None] | None = None,
    device: torch.device | None = None,
    progress: ProgressFn | None = None,
) -> ModelCard:
    """Rebuild the reference series of the weights at ``model_path`` from the normal series under ``data``.

    Every series labelled without a bleed goes through the viewer's path (loader → :class:`Preprocessor` →
    encoder); the mean of their slice features by relative position is written beside the weights and recorded,
    with its SHA-256, on the card (:func:`~viewer.model.weights.attach_reference`). The weights do not change.
    A missing or stale reference does not stop this (it is what the command repairs).
    """
    model, card = load_weights(model_path, device=device or "cpu", with_reference=False)
    labels = list(labels) if labels is not None else [None] * len(data)
    if len(labels) != len(data):
        raise ViewerError(
            "Cannot build the reference series", "give one labels file per data folder, or none"
        )
    sets = [open_dataset(folder, lab, progress) for folder, lab in zip(data, labels, strict=True)]
    normal = [item for ds in sets for item in ds.items if item.label.label == 0]
    if not normal:
        raise ViewerError("Cannot build the reference series", "the data holds no series without a bleed")
    feats = series_features(model, normal, progress)
    if not feats:
        raise ViewerError("Cannot build the reference series", "none of the normal series could be read")
    where = "; ".join(ds.description for ds in sets)
    return attach_reference(
        model_path, build_reference(feats), f"the {len(feats)} series without a bleed of {where}"
    )


def series_features(
    model: SliceGRUNet, items: Sequence[LabelledStack], progress: ProgressFn | None = None
) -> list[torch.Tensor]:
    """Slice features ``(n_model, F)`` of each readable series, as the viewer computes them (on the CPU)."""
    prep = Preprocessor.from_config(model.config)
    device = next(model.parameters()).device
    feats = []
    for k, (_item, volume, _reason) in enumerate(iter_volumes(items)):
        if progress is not None:
            progress(k, len(items), "Reading normal series")
        if volume is None:
            continue
        inputs = prep(volume.array, volume.spacing)
        with torch.no_grad():
            feats.append(model.encode(inputs.tensor.to(device)).cpu())
    return feats


#: Options of ``gru-viewer`` commands that take a path, and the placeholder a card shows for one outside the project.
PATH_OPTIONS: dict[str, str] = {
    "--model": "FILE",
    "--data": "DIR",
    "--labels": "FILE",
    "--json": "FILE",
    "--val": "DIR",
    "--out": "FILE",
    "--init": "FILE",
    "--cross-generator-to": "FILE",
}


def portable_command(
    command: Sequence[str], root: str | Path | None = None, placeholders: dict[str, str] | None = None
) -> str:
    """A command line for a card: paths relative to ``root`` (default: the working folder), or placeholders.

    A path given to one of :data:`PATH_OPTIONS` is written relative to ``root`` when it lies inside it, and as the
    option's placeholder (``--data DIR``) otherwise, so no machine's folders end up on the card. ``placeholders``
    adds options or overrides their placeholder for one command.
    """
    options = {**PATH_OPTIONS, **(placeholders or {})}
    base = Path(root if root is not None else Path.cwd()).resolve()
    out: list[str] = []
    pending: str | None = None
    for arg in command:
        option, eq, value = arg.partition("=")
        if pending is not None:
            out.append(_portable_path(arg, base, pending))
            pending = None
        elif option in options and eq:
            out.append(f"{option}={_portable_path(value, base, options[option])}")
        else:
            out.append(arg)
            pending = options.get(arg)
    return shlex.join(out)


def _portable_path(value: str, base: Path, placeholder: str) -> str:
    path = Path(value)
    resolved = (path if path.is_absolute() else base / path).resolve()
    if resolved.is_relative_to(base):
        return resolved.relative_to(base).as_posix()
    return placeholder
