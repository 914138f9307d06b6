"""A model's training as its card tells it: one entry per run of a chain of runs, oldest first.

Weights trained from other weights (``train --init``) keep the parent's training record nested under
``initialised_from`` and the parent's data in front of their own in ``training_data``, joined by
:data:`FURTHER_TRAINING`. Read back, that nesting is one run per level; the card lists the runs in order, each
with its data, recipe, epochs, validation, command and hardware, so a reader sees which run used what. Plain data
in, plain data out: the card's Markdown and the report both read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from viewer.model.metrics import METRIC_LABELS

#: How ``training_data`` joins the data of a chain of runs (each started from the weights before it), in order.
FURTHER_TRAINING = "; then further trained on "
#: How one run's data sets are joined in ``training_data``.
DATA_JOIN = "; "


@dataclass(frozen=True)
class TrainingRun:
    """One run of ``gru-viewer train``: the weights it made and the record it left."""

    number: int
    name: str
    version: str
    sha256: str
    input_size: int | None
    record: dict[str, Any]
    data: list[str] = field(default_factory=list)


def _own(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "initialised_from"}


def _data_per_run(training_data: str, records: list[dict[str, Any]]) -> list[list[str]] | None:
    """Each run's data sets, from the records when they list them, else from the card's joined text."""
    if all(isinstance(r.get("data"), list) for r in records):
        return [[str(d) for d in r["data"]] for r in records]
    parts = training_data.split(FURTHER_TRAINING) if training_data else []
    if len(parts) != len(records):
        return None
    return [[d for d in part.split(DATA_JOIN) if d.strip()] for part in parts]


def training_runs(
    name: str,
    version: str,
    sha256: str,
    input_size: int | None,
    training: Mapping[str, Any],
    training_data: str = "",
) -> list[TrainingRun]:
    """The chain of runs that made these weights, oldest first (one run for weights trained from scratch).

    A run's data are left empty when the card's text cannot be matched to its runs (a hand-written card).
    """
    chain: list[tuple[str, str, str, int | None, dict[str, Any]]] = []
    record: Mapping[str, Any] = training
    made = (name, version, sha256, input_size)
    while True:
        chain.append((*made, _own(record)))
        parent = record.get("initialised_from")
        if not isinstance(parent, Mapping):
            break
        made = (
            str(parent.get("name", "")),
            str(parent.get("version", "")),
            str(parent.get("sha256", "")),
            parent.get("input_size"),
        )
        record = parent.get("training") or {}
    chain.reverse()
    records = [entry[4] for entry in chain]
    data = _data_per_run(training_data, records) or [[] for _ in chain]
    return [
        TrainingRun(i + 1, n, v, s, size, rec, sets)
        for i, ((n, v, s, size, rec), sets) in enumerate(zip(chain, data, strict=True))
    ]


def _details(run: TrainingRun, earlier: list[TrainingRun]) -> list[str]:
    """A run's recipe (or which earlier run's it repeats), epochs, validation, precision, command, hardware."""
    rec = run.record
    lines: list[str] = []
    recipe = rec.get("recipe")
    if recipe:
        same = [r.number for r in earlier if r.record.get("recipe") == recipe]
        lines += [f"Recipe as in run {same[-1]}." if same else str(recipe), ""]
    epochs = rec.get("epochs")
    if isinstance(epochs, dict) and epochs:
        lines += ["Epochs: " + ", ".join(f"{stage} {n}" for stage, n in epochs.items()) + ".", ""]
    if rec.get("validation"):
        scores = ", ".join(f"{METRIC_LABELS.get(k, k)} {v:.4f}" for k, v in rec["validation"].items())
        lines += [f"Validation ({rec.get('validation_data', 'held back from training')}): {scores}.", ""]
    settings = rec.get("settings")
    if isinstance(settings, dict) and settings.get("precision", "fp32") != "fp32":
        lines += [f"Precision of the slice CNN's training passes: {settings['precision']}.", ""]
    if rec.get("command"):
        folders = (
            " (its --data folders are the data sets above, in order; --val is the validation set)"
            if run.data and "--data DIR" in str(rec["command"])
            else ""
        )
        lines += [f"Command{folders}:", "", f"    {rec['command']}", ""]
    if rec.get("hardware"):
        took = rec.get("epoch_seconds")
        spent = f", {float(took) / 60:.0f} minutes of epochs" if took else ""
        lines += [f"Hardware: {rec['hardware']}{spent}.", ""]
    return lines


def _heading(run: TrainingRun, before: TrainingRun | None) -> list[str]:
    title = f"### Run {run.number}: {run.name} {run.version}".rstrip()
    size = f"slices read at {run.input_size} px" if run.input_size else ""
    if before is None:
        start = size.capitalize() + "." if size else ""
    else:
        sha = f", sha256 {before.sha256[:12]}…" if before.sha256 else ""
        start = f"Started from run {before.number}'s weights ({before.version}{sha})" + (
            f"; {size}." if size else "."
        )
    return [title, "", *([start, ""] if start else [])]


def history_markdown_lines(runs: list[TrainingRun], training_data: str) -> list[str]:
    """The card's *Training data* section body: the data, then each run in order with what it did."""
    if len(runs) == 1:
        return [training_data or "Not stated.", "", *_details(runs[0], [])]
    lines = [
        f"In {len(runs)} runs, each continuing from the weights of the run before; these weights are the last "
        "run's.",
        "",
    ]
    if not any(run.data for run in runs):
        lines += [training_data or "Not stated.", ""]
    for i, run in enumerate(runs):
        lines += _heading(run, runs[i - 1] if i else None)
        lines += [f"- {d.strip()}" for d in run.data]
        lines += [""] if run.data else []
        lines += _details(run, runs[:i])
    return lines


def training_words(training_data: str, card: str = "the model card") -> str:
    """The card's training data in a sentence (report, about box): each data set once, without the commands.

    A card of weights trained in a chain of runs lists every run's data in turn, and a later run often reuses an
    earlier run's sets, so the card's text grows with each run (the model card keeps it whole, with the commands).
    ``card`` names where each run's data is listed (another model's card when the words describe that model).
    """
    words = re.sub(r"\s*\(`[^`]*`\)", "", training_data).strip()
    if not words:
        return "not stated on the model card"
    runs = words.split(FURTHER_TRAINING)
    sets = list(dict.fromkeys(part.strip() for run in runs for part in run.split(DATA_JOIN) if part.strip()))
    text = _phantom_sets(sets) or "; ".join(sets)
    if len(runs) > 1:
        text += f" (in {len(runs)} runs, each continuing the one before; {card} lists each run's data)"
    return text


# One phantom set as :func:`viewer.model.workflow.describe` words it, its rebuild command removed.
_PHANTOM_SET = re.compile(
    r"(?P<n>\d+) series \((?P<bleed>\d+) with a bleed\), synthetic head-CT phantoms"
    r"(?: of the (?P<family>\w+) family)?, seed (?P<seed>\d+), (?P<m>\d+)×(?P=m) matrix"
    r"(?:, (?P<mm>[\d.]+) mm slices)?"
)


def _phantom_sets(sets: list[str]) -> str:
    """Several phantom sets grouped by family, each as ``600 series at 256² (seed 101)``: the same facts in half
    the words. ``""`` for one set, or unless every set is a phantom set (other data keeps its own words).
    """
    found = [m for s in sets if (m := _PHANTOM_SET.fullmatch(s)) is not None]
    if len(sets) < 2 or len(found) < len(sets):
        return ""
    half = all(2 * int(m["bleed"]) == int(m["n"]) for m in found)
    groups: dict[tuple[str, str], list[str]] = {}
    for m in found:
        bleeds = "" if half else f", {m['bleed']} with a bleed"
        groups.setdefault((m["family"] or "classic", m["mm"] or ""), []).append(
            f"{m['n']} series at {m['m']}² (seed {m['seed']}{bleeds})"
        )
    parts = [
        f"{family} family{f' ({mm} mm slices)' if mm else ''}: {', '.join(items)}"
        for (family, mm), items in groups.items()
    ]
    return (
        "synthetic head-CT phantoms, "
        + "; ".join(parts)
        + ("; half of each set with a bleed" if half else "")
    )
