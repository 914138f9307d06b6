"""Model cards: what a set of weights is, what it is for and how well it did (JSON beside the weights).

A card is a JSON file next to the weights (``name.safetensors`` → ``name.card.json``) holding the name, version,
SHA-256 of the weights file, the :class:`~viewer.model.config.ModelConfig`, intended use, input requirements,
training data, metrics and the operating threshold, with a Markdown rendering beside it. Reading a card needs no
torch, so the window, the report and the about box can show it without loading the network
(:mod:`viewer.model.weights` loads the weights and checks them against the card).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewer.errors import ViewerError
from viewer.model.config import ModelConfig
from viewer.model.metrics import METRIC_LABELS, format_metric
from viewer.model.misses import GroupRate, rates_markdown
from viewer.model.robustness_table import markdown_table
from viewer.model.training_history import history_markdown_lines, training_runs, training_words
from viewer.resources import resource_path

CARD_SUFFIX = ".card.json"
DEFAULT_MODEL_NAME = "slice_gru_default"
DEFAULT_INTENDED_USE = (
    "Research and demonstration of an interpretable slice-GRU for non-contrast head CT. Not a medical device; "
    "not for diagnosis or triage."
)
DEFAULT_INPUT_REQUIREMENTS = (
    "One axial non-contrast head CT series in HU, slices sorted along the slice normal, any in-plane matrix; "
    "slices thinner than the target spacing are averaged into slabs, thicker ones are used as they are."
)


@dataclass
class ModelCard:
    """What a set of weights is, what it is for and how well it did; stored as JSON next to the weights."""

    name: str
    version: str
    sha256: str
    config: ModelConfig
    intended_use: str = DEFAULT_INTENDED_USE
    input_requirements: str = DEFAULT_INPUT_REQUIREMENTS
    training_data: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    operating_threshold: float = 0.5
    limitations: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    # Evaluations besides the main one (other data sets), each like ``evaluation`` plus its ``metrics``.
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    ablation: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, Any] = field(default_factory=dict)
    # Other models, each trained on one phantom family, scored on another (``evaluate --cross-generator-to``).
    cross_generator: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``evaluations``, ``robustness``, ``ablation`` and ``cross_generator`` only when there
        are some (a card without them is written as before)."""
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "config": self.config.to_dict(),
            "intended_use": self.intended_use,
            "input_requirements": self.input_requirements,
            "training_data": self.training_data,
            "metrics": dict(self.metrics),
            "operating_threshold": self.operating_threshold,
            "limitations": self.limitations,
            "training": dict(self.training),
            "evaluation": dict(self.evaluation),
            "reference": dict(self.reference),
        }
        if self.evaluations:
            data["evaluations"] = [dict(e) for e in self.evaluations]
        if self.robustness:
            data["robustness"] = dict(self.robustness)
        if self.ablation:
            data["ablation"] = dict(self.ablation)
        if self.cross_generator:
            data["cross_generator"] = [dict(r) for r in self.cross_generator]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build a card from parsed JSON; raises ``KeyError``/``ValueError``/``TypeError`` on a malformed one."""
        missing = [k for k in ("name", "version", "sha256", "config") if k not in data]
        if missing:
            raise KeyError(f"missing fields {missing}")
        sha = str(data["sha256"]).lower()
        if not _is_sha256(sha):
            raise ValueError("sha256 is not a 64-digit hex digest")
        config = ModelConfig.from_dict(dict(data["config"]))
        reference = dict(data.get("reference", {}))
        if reference and not _is_sha256(str(reference.get("sha256", ""))):
            raise ValueError("reference.sha256 is not a 64-digit hex digest")
        threshold = float(data.get("operating_threshold", config.operating_threshold))
        if not 0.0 < threshold < 1.0:
            raise ValueError("operating_threshold must lie in (0, 1)")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            sha256=sha,
            config=config,
            intended_use=str(data.get("intended_use", DEFAULT_INTENDED_USE)),
            input_requirements=str(data.get("input_requirements", DEFAULT_INPUT_REQUIREMENTS)),
            training_data=str(data.get("training_data", "")),
            metrics={str(k): float(v) for k, v in dict(data.get("metrics", {})).items()},
            operating_threshold=threshold,
            limitations=str(data.get("limitations", "")),
            training=dict(data.get("training", {})),
            evaluation=dict(data.get("evaluation", {})),
            reference=reference,
            evaluations=[dict(e) for e in data.get("evaluations", [])],
            ablation=dict(data.get("ablation", {})),
            robustness=dict(data.get("robustness", {})),
            cross_generator=[dict(r) for r in data.get("cross_generator", [])],
        )


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class ModelPaths:
    weights: Path
    card: Path


def card_path_for(weights: str | Path) -> Path:
    """``model.safetensors`` → ``model.card.json`` in the same folder."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + CARD_SUFFIX)


def default_model_paths(name: str = DEFAULT_MODEL_NAME) -> ModelPaths:
    """Where the shipped weights and their card live: ``resources/models/<name>.safetensors`` and ``.card.json``."""
    weights = resource_path("models", f"{name}.safetensors")
    return ModelPaths(weights, card_path_for(weights))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(path: str | Path) -> ModelCard:
    """Read and validate a model card; :class:`ViewerError` if it is missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ViewerError("Cannot read the model card", "the file does not exist", path) from exc
    except OSError as exc:
        raise ViewerError("Cannot read the model card", exc.strerror or str(exc), path) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ViewerError("Cannot read the model card", f"it is not valid JSON ({exc})", path) from exc
    if not isinstance(data, dict):
        raise ViewerError("Cannot read the model card", "it is not a JSON object", path)
    try:
        return ModelCard.from_dict(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise ViewerError("Cannot read the model card", f"it is malformed: {exc}", path) from exc


def current_card(weights: str | Path, loaded: ModelCard) -> ModelCard:
    """The card of ``weights`` as it is on disk now, for a command that adds its own section to it.

    Evaluations run for many minutes and several may run at once, each adding its part (metrics, further
    evaluations, robustness, ablation): each re-reads the card just before writing so that it keeps what the others
    wrote meanwhile. Refused when the card now describes other weights than ``loaded`` did.
    """
    now = read_card(card_path_for(weights))
    if now.sha256 != loaded.sha256:
        raise ViewerError(
            "Cannot update the model card", "it now describes other weights than were evaluated", weights
        )
    return now


def write_card(card: ModelCard, path: str | Path) -> None:
    """Write the card as JSON at ``path`` and rendered as Markdown beside it (``name.card.md``)."""
    path = Path(path)
    path.write_text(json.dumps(card.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = path.with_name(path.name.removesuffix(".json") + ".md")
    markdown.write_text(card_to_markdown(card), encoding="utf-8")


HIDDEN_TRACK_NOTE = (
    "Hidden-state track: {method}, each slice's contribution to the study logit against the normal reference "
    "series, per direction (positive pushes towards a bleed), split into the direct part (the head reading the "
    "slice's state) and the carried part (later states passing it on). It is a one-step estimate, not an exact "
    "split: its sum over the slices overshoots the change in the study logit from the reference to the series "
    "(docs/model.md gives the measured size)."
)
_LOOK_LABELS = {
    "model": "the model's metrics",
    "hidden_track_state_difference": "the hidden-state track (state difference)",
    "hidden_track_sensitivity": "the hidden-state track (sensitivity, the earlier track)",
}


def card_to_markdown(card: ModelCard) -> str:
    """The card as Markdown, for the README, the about box and the report."""
    cfg = card.config
    windows = ", ".join(f"{c:g}/{w:g}" for c, w in cfg.windows)
    lines = [
        f"# Model card: {card.name} {card.version}",
        "",
        "## Intended use",
        card.intended_use,
        "",
        "## Input requirements",
        card.input_requirements,
        "",
        f"- In-plane size: {cfg.input_size} × {cfg.input_size} px (aspect kept by padding)",
        f"- Windows (center/width HU): {windows}",
        f"- Slab thickness: {cfg.target_spacing_mm:g} mm (thinner slices are averaged)",
        *_centring_lines(cfg),
        "",
        "## Architecture",
        f"- Slice encoder: CNN, channels {', '.join(str(c) for c in cfg.encoder_channels)}, global mean and max "
        "pooling",
        *_sequence_lines(cfg),
        "",
        "## Training data",
        *history_markdown_lines(
            training_runs(
                card.name,
                card.version,
                card.sha256,
                card.config.input_size,
                card.training,
                card.training_data,
            ),
            card.training_data,
        ),
        "## Metrics",
    ]
    if card.metrics:
        where = card.evaluation.get("data")
        if where:
            lines += [f"Measured by `gru-viewer evaluate` on {where}.", ""]
        lines += ["| Metric | Value |", "| --- | --- |"]
        lines += [f"| {METRIC_LABELS.get(k, k)} | {format_metric(k, v)} |" for k, v in card.metrics.items()]
        if card.evaluation.get("pixel_method"):
            target = card.evaluation.get("pixel_target", "study")
            lines += ["", f"Pixel saliency: {card.evaluation['pixel_method']} of the {target} logit."]
        if card.evaluation.get("hidden_method"):
            lines += ["", HIDDEN_TRACK_NOTE.format(method=card.evaluation["hidden_method"])]
        if card.evaluation.get("command"):
            lines += ["", f"Command: `{card.evaluation['command']}`"]
        lines += _looks_line(card.evaluation.get("looks"))
        lines += _group_lines(card.evaluation.get("by_group"))
    else:
        lines.append("None recorded.")
    if card.evaluations:
        lines += ["", "## Further evaluations"]
        for ev in card.evaluations:
            lines += _further_lines(ev)
    lines += _robustness_lines(card.robustness)
    lines += [
        "",
        "## Operating threshold",
        f"Study probability ≥ {card.operating_threshold:g} is reported as positive.",
        *_operating_point_lines(card.training.get("operating_point")),
    ]
    if card.ablation:
        lines += ["", *_ablation_lines(card.ablation)]
    if card.cross_generator:
        lines += ["", *_cross_generator_lines(card.cross_generator)]
    if card.limitations:
        lines += ["", "## Limitations", card.limitations]
    lines += ["", "## Integrity", f"SHA-256 of the weights file: `{card.sha256}`"]
    if card.reference:
        ref = card.reference
        lines += [
            "",
            f"Reference series of the hidden-state track: `{ref.get('file')}`, mean slice features at "
            f"{ref.get('positions')} relative positions of {ref.get('data') or 'normal series'}; "
            f"SHA-256 `{ref.get('sha256')}` (checked at load, like the weights).",
        ]
    lines.append("")
    return "\n".join(lines)


_FURTHER_METRICS = (
    "study_auroc",
    "threshold",
    "sensitivity",
    "specificity",
    "slice_auroc",
    "hidden_saliency_auroc",
    "calibration_error",
)


def _operating_point_lines(point: Any) -> list[str]:
    """How ``gru-viewer threshold`` chose the threshold: the rule, each validation set at it and at the one it
    replaced (numbers measured before then, elsewhere on the card, name the threshold they were measured at)."""
    if not isinstance(point, dict) or not point.get("sets"):
        return []
    previous = float(point.get("previous", 0.5))
    lines = [
        "",
        f"Chosen by `gru-viewer threshold` on validation series only: {point.get('rule', 'unstated rule')}. It "
        f"replaced {previous:.3f} (version {point.get('previous_version', 'unstated')}); the weights did not change.",
        "",
        f"| validation set | studies | study AUROC | sensitivity / specificity at {previous:.3f} | at "
        f"{float(point.get('threshold', 0.5)):.3f} |",
        "| --- | --- | --- | --- | --- |",
    ]
    before = {str(r.get("data")): r for r in point.get("sets_at_previous", [])}
    for row in point["sets"]:
        old = before.get(str(row.get("data")), {})
        old_text = f"{old['sensitivity']:.2f} / {old['specificity']:.2f}" if old else "–"
        lines.append(
            f"| {row.get('data')} | {row.get('studies')} | {float(row.get('study_auroc', float('nan'))):.3f} | "
            f"{old_text} | {float(row['sensitivity']):.2f} / {float(row['specificity']):.2f} |"
        )
    if point.get("command"):
        lines += ["", f"Command: `{point['command']}`"]
    return lines


def _group_lines(rows: Any) -> list[str]:
    if not rows:
        return []
    return [
        "",
        "What it misses: sensitivity at the threshold by bleed kind, by the volume and contrast of the series' "
        "largest and most conspicuous bleed, and by slice thickness; specificity by slice thickness (Wilson 95% "
        "intervals; a series with two kinds counts under both).",
        "",
        *rates_markdown([GroupRate(**r) for r in rows]),
    ]


def _looks_line(looks: Any) -> list[str]:
    if not isinstance(looks, dict) or not looks:
        return []
    counts = "; ".join(f"{_LOOK_LABELS.get(k, k)}: {int(v)}" for k, v in looks.items())
    return ["", f"Times this evaluation data has been looked at (this evaluation included): {counts}."]


def _further_lines(ev: dict[str, Any]) -> list[str]:
    metrics = dict(ev.get("metrics", {}))
    lines = ["", f"### {ev.get('title') or 'Evaluation'}", "", f"On {ev.get('data', 'unstated data')}.", ""]
    lines += ["| Metric | Value |", "| --- | --- |"]
    lines += [
        f"| {METRIC_LABELS.get(k, k)} | {format_metric(k, float(metrics[k]))} |"
        for k in _FURTHER_METRICS
        if k in metrics
    ]
    lines += _group_lines(ev.get("by_group"))
    if ev.get("command"):
        lines += ["", f"Command: `{ev['command']}`"]
    return lines + _looks_line(ev.get("looks"))


def _ablation_lines(ablation: dict[str, Any]) -> list[str]:
    """The card's "Ablation" section: what was compared, on what, the table and its notes."""
    lines = ["## Ablation"]
    if ablation.get("description"):
        lines += [str(ablation["description"]), ""]
    columns = [str(c) for c in ablation.get("columns", [])]
    rows = [[str(v) for v in row] for row in ablation.get("rows", [])]
    if columns and rows:
        lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    for note in ablation.get("notes", []):
        lines += ["", str(note)]
    if ablation.get("command"):
        lines += ["", f"Command: `{ablation['command']}`"]
    return lines


CROSS_GENERATOR_NOTE = (
    "Models trained on one phantom family and scored on the validation set of another, by "
    "`gru-viewer evaluate --cross-generator-to`: how far what a model learns from one generator carries to "
    "another. They are not these weights; each row names its model, what it was trained on, whether it "
    "started from scratch, and the family of the validation set that chose its epochs and threshold (a row whose "
    "epochs were chosen on the family it is scored on is the optimistic one)."
)


def _cross_generator_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The card's "Cross-generator validation" section: a table of the rows, then each row's data in full."""
    lines = ["## Cross-generator validation", CROSS_GENERATOR_NOTE, ""]
    lines += [
        "| Model | Started from | Trained on | Epochs chosen on | Scored on | Study AUROC | Slice AUROC | "
        "Sensitivity / specificity |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        m = dict(r.get("metrics", {}))

        def num(key: str, m: dict[str, Any] = m) -> str:
            return format_metric(key, float(m[key])) if key in m else "–"

        lines.append(
            f"| {r.get('model', '?')} | {r.get('started_from', '?')} | {r.get('trained_family', '?')} | "
            f"{r.get('selected_on', '?')} | {r.get('scored_family', '?')} | {num('study_auroc')} | {num('slice_auroc')} | "
            f"{num('sensitivity')} / {num('specificity')} |"
        )
    for r in rows:
        lines += [
            "",
            f"- {r.get('model', '?')}: trained on {training_words(str(r.get('trained_on') or ''), 'its own card')}; "
            "scored on "
            f"{r.get('data', 'unstated data')} at its own threshold {float(r.get('threshold', 0.5)):.3f}.",
        ]
        if r.get("command"):
            lines += [f"  Command: `{r['command']}`"]
    return lines


def _sequence_lines(cfg: ModelConfig) -> list[str]:
    """The card's architecture lines after the encoder: the sequence part and the study score."""
    lse = f"- Study score: log-mean-exp of the slice logits (sharpness {cfg.lse_sharpness:g})"
    units = f"{cfg.num_layers} layer(s), {cfg.hidden_size} units per direction"
    if cfg.sequence == "pool":
        return ["- No recurrence: the slice head reads each slice's CNN features", lse]
    if cfg.sequence == "bilstm":
        return [f"- Bidirectional LSTM (torch.nn.LSTM): {units}", lse]
    gru = (
        f"- Bidirectional GRU: {units} (PyTorch gate convention: update gate z = 1 keeps the previous state)"
    )
    if cfg.sequence == "bigru_attn":
        return [gru, "- Study score: attention-weighted mean of the GRU states, read by a linear head"]
    return [gru, lse]


def _robustness_lines(robustness: dict[str, Any]) -> list[str]:
    """The card's robustness table (``gru-viewer evaluate --robustness --update-card``), when it has one."""
    rows = robustness.get("rows")
    if not isinstance(rows, list) or not rows:
        return []
    lines = ["", "## Robustness"]
    where = robustness.get("data")
    source = robustness.get("source")
    intro = "Measured by `gru-viewer evaluate --robustness`"
    intro += f" on {where}" if where else ""
    intro += f" (source series: {source})" if source else ""
    lines += [
        intro + ". Each condition is applied to every series; Δ is the change of the study AUROC from the "
        "unperturbed series, sensitivity and specificity are at the operating threshold"
        + (
            f" it was measured at, {float(robustness['threshold']):.3f}."
            if "threshold" in robustness
            else "."
        ),
        "",
    ]
    if robustness.get("goal"):
        lines += [f"Goal: {robustness['goal']}.", ""]
    lines += markdown_table(rows)
    if robustness.get("command"):
        lines += ["", f"Command: `{robustness['command']}`"]
    thin = robustness.get("thin_source")
    if isinstance(thin, dict) and thin.get("rows"):
        lines += [
            "",
            "### Slice thickness from a thin source",
            "",
            f"The thickness rows need slices thinner than 2.5 mm, so they are measured again on {thin.get('data', '')} "
            f"(source series: {thin.get('source', '')}), each slab average against that folder's own unperturbed "
            "series. This folder is of another phantom family than the table above, so compare the Δ, not the "
            "AUROC, between the two tables.",
            "",
            *markdown_table(thin["rows"]),
        ]
        if thin.get("command"):
            lines += ["", f"Command: `{thin['command']}`"]
    return lines


def _centring_lines(cfg: ModelConfig) -> list[str]:
    centring = cfg.centring
    if centring is None:
        return ["- HU: read as they are (no per-series re-centring)"]
    moved = f"- HU re-centring: each series' soft-tissue median (−20 to 100 HU) is moved to {centring.reference:.1f} HU"
    if centring.tolerance == 0:
        return [f"{moved}, the training series' mean"]
    return [
        f"{moved}, the training series' mean, when it is more than {centring.tolerance:g} HU off (by the excess)"
    ]
